"""Each request's id: the proxy's when it sent a sane one, else one made up. It goes into every answer's
``X-Request-ID``, every error body, the log line of an unexpected error, and the audit events a request makes."""

from __future__ import annotations

import re
import uuid

from flask import g, request

REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy's request id may be to be taken as this request's: an HTTP token (RFC 9110) of sane length, so
# that it can go into a log line or a JSON body as it is.
SENT_REQUEST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
REQUEST_ID_DOC = {
    "description": (
        "This request's id: the X-Request-ID the caller (its proxy) sent, when that is 1 to 128 characters of "
        "an HTTP token (letters, digits and !#$%&'*+-.^_`|~), else one made up. An error's body carries it as "
        "requestId, and the API logs an unexpected error with it"
    ),
    "schema": {"type": "string"},
}


def request_id() -> str:
    """This request's id (``REQUEST_ID_DOC``), chosen on first use."""
    if "request_id" not in g:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = sent if SENT_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
    chosen: str = g.request_id
    return chosen
