"""The HTTP task: call a URL; an answer outside the accepted statuses, or no answer in time, fails the run.

Each attempt sends one request (method, URL, headers, a body whose placeholders name the slot and the run,
a bearer token or basic auth from secret fields) and follows redirects itself, each hop re-resolved and
checked by ``shared.tasks.http_guard`` before anything connects. The result kept on the run is
``HTTP <status>: <excerpt>``. Proxy variables (``HTTP_PROXY`` ...) are not honoured: a proxy would resolve
the name itself, out of the guard's sight.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from shared.secrets import MASK, SHORTEST_MASKED
from shared.task_types import ConfigField, FieldType, Option, RunContext, TaskFailed, TaskType
from shared.tasks.http_guard import IPNetwork, Refused, allowed_networks, checked_connection

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
METHODS_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_TIMEOUT_S = 10
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_ACCEPTED_STATUS = "200-299"
EXCERPT_CHARS = 200  # of the answer's body, whitespace collapsed, in the result or the error
EXCERPT_READ_BYTES = 4096  # read of the body at most; the rest is never downloaded
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
PLACEHOLDERS = ("scheduledFor", "runId", "attempt", "scheduleId")
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110's token
HEADERS_SET_BY_CRONWORK = frozenset({"host", "content-length", "transfer-encoding", "connection"})
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})
MAX_HEADERS = 50
STATUS_ITEM = re.compile(r"([1-5])xx|(\d{3})(?:-(\d{3}))?", re.IGNORECASE)
USER_AGENT = "cronwork"


# --- What to send -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One hop: ``headers`` are the schedule's own (credentials are added per hop, by origin)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None


def origin_of(url: str) -> tuple[str, str, int]:
    """Scheme, host and port: what a redirect must keep for credentials to follow it."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(parts.scheme, 0)


def shown_url(url: str) -> str:
    """``url`` as a message shows it: no user info, no query, no fragment (they may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # a port out of range, in a redirect's Location
        netloc = host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def wire_time(instant: datetime | None) -> str:
    """An instant as the API writes it (ISO 8601 UTC, milliseconds, ``Z``); empty for None."""
    if instant is None:
        return ""
    if instant.tzinfo is None:  # stored as naive UTC on SQLite
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def filled_body(body: str, context: RunContext) -> str:
    """``body`` with each placeholder replaced by this run's value."""
    values = {
        "scheduledFor": wire_time(context.scheduled_for),
        "runId": str(context.run_id),
        "attempt": str(context.attempt),
        "scheduleId": "" if context.schedule_id is None else str(context.schedule_id),
    }
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), body)


def first_request(context: RunContext) -> Request:
    """The request the schedule's config describes, for this run."""
    config = context.config
    method = config.get("method") or "GET"
    headers = dict(config.get("headers") or {})
    names = {name.lower() for name in headers}
    if "user-agent" not in names:
        headers["User-Agent"] = USER_AGENT
    body = None
    if config.get("body") and method in METHODS_WITH_BODY:
        text = filled_body(str(config["body"]), context)
        body = text.encode()
        if "content-type" not in names:
            headers["Content-Type"] = _content_type(text)
    return Request(method, _request_url(str(config["url"])), headers, body)


def _content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def _request_url(url: str) -> str:
    """``url`` without user info or fragment, its path and query quoted where they hold what a request line
    cannot carry (spaces, non-ASCII)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").encode("idna").decode()
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return urlunsplit((parts.scheme, netloc, path, query, ""))


# --- Credentials --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The ``Authorization`` header the config's secret fields make, and every form in which they could
    show up in a message (the token, the password, basic auth's encoded pair), to mask."""

    authorization: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def hide(self, text: str, cut: bool = False) -> str:
        """``text`` with every credential masked; when ``text`` was ``cut`` off, a credential's beginning
        left at its end is masked too."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        if cut:
            for secret in self.secrets:
                for length in range(len(secret) - 1, SHORTEST_MASKED - 1, -1):
                    if text.endswith(secret[:length]):
                        text = text[:-length] + MASK
                        break
        return text


def credentials_of(config: Mapping[str, Any]) -> Credentials:
    """The credentials of a config whose secrets are revealed; ``TaskFailed`` (never naming the value) when
    one cannot travel in a header."""
    token = config.get("bearerToken")
    if token:
        _check_header_value("bearerToken", str(token))
        return Credentials(f"Bearer {token}", _long_enough(str(token)))
    username = config.get("basicUsername")
    if username:
        password = str(config.get("basicPassword") or "")
        pair = f"{username}:{password}"
        encoded = base64.b64encode(pair.encode()).decode()
        return Credentials(f"Basic {encoded}", _long_enough(encoded, pair, password))
    return Credentials()


def _check_header_value(key: str, value: str) -> None:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise TaskFailed(f"secret {key} holds a character an HTTP header cannot carry") from None
    if any(char in value for char in "\r\n\0"):
        raise TaskFailed(f"secret {key} holds a line break, which an HTTP header cannot carry")


def _long_enough(*values: str) -> tuple[str, ...]:
    # Longest first, so a password inside the encoded pair never leaves half of it; short values would mask
    # ordinary words of a message (as in shared.secrets).
    return tuple(sorted((v for v in set(values) if len(v) >= SHORTEST_MASKED), key=len, reverse=True))


# --- Accepted statuses --------------------------------------------------------------------------------------


def accepted_statuses(text: str) -> frozenset[int]:
    """The statuses ``text`` names ("200-299,304", "2xx"); ``ValueError`` saying what is wrong."""
    statuses: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        match = STATUS_ITEM.fullmatch(item.replace(" ", ""))
        if not match:
            raise ValueError(f"{item!r} is not a status or a range: write e.g. 200-299,304 or 2xx")
        hundreds, low, high = match.groups()
        first, last = (
            (int(hundreds) * 100, int(hundreds) * 100 + 99) if hundreds else (int(low), int(high or low))
        )
        if not 100 <= first <= last <= 599:
            raise ValueError(f"{item!r} is not within 100-599, lowest first")
        statuses.update(range(first, last + 1))
    return frozenset(statuses)


# --- Sending ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one hop brought back."""

    url: str
    status: int
    location: str | None
    excerpt: str


@dataclass
class Deadline:
    """The attempt's timeout, shared by every hop: connects, sends and reads each get what is left."""

    timeout_s: float
    started: float = field(default_factory=time.monotonic)

    def remaining_s(self, url: str) -> float:
        """The seconds left; ``TaskFailed`` (the timeout, naming ``url``) when none are."""
        left = self.timeout_s - (time.monotonic() - self.started)
        if left <= 0:
            raise self.expired(url)
        return left

    def expired(self, url: str) -> TaskFailed:
        """The failure of a request to ``url`` that ran out of time."""
        return TaskFailed(f"no answer from {shown_url(url)} within {self.timeout_s:g} s")


def send(
    request: Request,
    authorization: str | None,
    allowed: Sequence[IPNetwork],
    deadline: Deadline,
    hide: Callable[[str, bool], str],
) -> Answer:
    """Send one hop to the address the guard checked; a redirect's body is never read, any other's only up to
    an excerpt."""
    parts = urlsplit(request.url)
    host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]
    connection = checked_connection(parts.scheme, host, port, allowed, deadline.remaining_s(request.url))
    headers = dict(request.headers)
    if authorization:
        headers["Authorization"] = authorization
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        connection.request(request.method, target, body=request.body, headers=headers)
        _set_timeout(connection, deadline.remaining_s(request.url))
        response = connection.getresponse()
        if response.status in REDIRECT_STATUSES and response.getheader("Location"):
            return Answer(request.url, response.status, response.getheader("Location"), "")
        _set_timeout(connection, deadline.remaining_s(request.url))
        raw = response.read(EXCERPT_READ_BYTES)
        text = raw.decode(_charset(response), "replace")
        return Answer(request.url, response.status, None, excerpt(hide(text, len(raw) == EXCERPT_READ_BYTES)))
    except TimeoutError:
        raise deadline.expired(request.url) from None
    except ssl.SSLCertVerificationError as exc:
        raise TaskFailed(f"TLS with {host} failed: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise TaskFailed(f"TLS with {host} failed: {exc.reason or exc}") from None
    except http.client.RemoteDisconnected:
        raise TaskFailed(f"{shown_url(request.url)} closed the connection without answering") from None
    except http.client.HTTPException as exc:
        raise TaskFailed(
            f"{shown_url(request.url)} answered something that is not HTTP ({type(exc).__name__})"
        ) from None
    except OSError as exc:
        raise TaskFailed(f"request to {shown_url(request.url)} failed: {exc.strerror or exc}") from None
    finally:
        connection.close()


def _set_timeout(connection: http.client.HTTPConnection, timeout_s: float) -> None:
    if connection.sock is not None:
        connection.sock.settimeout(timeout_s)


def _charset(response: http.client.HTTPResponse) -> str:
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def excerpt(text: str) -> str:
    """``text`` on one line, whitespace collapsed, at most ``EXCERPT_CHARS`` characters."""
    line = "".join(char if char.isprintable() else " " for char in text)
    line = " ".join(line.split())
    return line if len(line) <= EXCERPT_CHARS else line[: EXCERPT_CHARS - 1] + "…"


def redirected(request: Request, answer: Answer) -> Request:
    """The next hop of a redirect: 303 (and 301/302 after a POST) turn into a GET without the body, as
    every client does; 307 and 308 repeat the request. ``Refused`` for a redirect from https to http."""
    assert answer.location is not None
    url = urljoin(request.url, answer.location.strip())
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise TaskFailed(
            f"HTTP {answer.status} redirects to {shown_url(url)}, not an http:// or https:// URL"
        )
    if urlsplit(request.url).scheme == "https" and parts.scheme == "http":
        raise Refused(f"HTTP {answer.status} redirects from https to http ({shown_url(url)})", hint="")
    try:
        next_url = _request_url(url)
    except (ValueError, UnicodeError):  # a port out of range, a host name IDNA cannot encode
        raise TaskFailed(f"HTTP {answer.status} redirects to {shown_url(url)}, not a valid URL") from None
    as_get = answer.status == 303 or (answer.status in (301, 302) and request.method == "POST")
    if not as_get:
        return replace(request, url=next_url)
    headers = {name: value for name, value in request.headers.items() if name.lower() != "content-type"}
    method = "HEAD" if request.method == "HEAD" else "GET"
    return Request(method, next_url, headers, None)


@dataclass(frozen=True)
class Outcome:
    """The last hop's answer, and how many redirects led to it."""

    answer: Answer
    redirects: int


def follow(
    first: Request,
    credentials: Credentials,
    allowed: Sequence[IPNetwork],
    deadline: Deadline,
    max_redirects: int,
) -> Outcome:
    """Send ``first`` and follow its redirects, up to ``max_redirects``; each hop is checked by the guard, and
    credentials go only to the first request's origin. A redirect past the limit is the last answer."""
    request, origin = first, origin_of(first.url)
    for redirects in range(max_redirects + 1):
        authorization = credentials.authorization if origin_of(request.url) == origin else None
        try:
            answer = send(request, authorization, allowed, deadline, credentials.hide)
        except Refused as exc:
            if redirects == 0:
                raise
            raise Refused(f"redirect to {shown_url(request.url)}: {exc.reason}", exc.hint) from None
        if answer.location is None or redirects == max_redirects:
            return Outcome(answer, redirects)
        request = redirected(request, answer)
    raise AssertionError("unreachable: the loop returns at the limit")


# --- The handler --------------------------------------------------------------------------------------------


def http_request(context: RunContext) -> str:
    """Send the configured request; the answer's status and an excerpt of its body are the result."""
    config = context.config
    credentials = credentials_of(config)
    accepted_text = config.get("acceptedStatus") or DEFAULT_ACCEPTED_STATUS
    max_redirects = config.get("maxRedirects")
    try:
        outcome = follow(
            first_request(context),
            credentials,
            allowed_networks(context.settings.http_allowed_networks),
            Deadline(min(float(config.get("timeoutS") or DEFAULT_TIMEOUT_S), context.time_limit_s)),
            DEFAULT_MAX_REDIRECTS if max_redirects is None else int(max_redirects),
        )
    except TaskFailed as exc:
        raise TaskFailed(credentials.hide(str(exc)), retry=exc.retry) from None
    answer = outcome.answer
    summary = f"HTTP {answer.status}: {answer.excerpt}" if answer.excerpt else f"HTTP {answer.status}"
    if answer.status in accepted_statuses(accepted_text):
        return summary
    if answer.location is not None:
        raise TaskFailed(
            credentials.hide(
                f"HTTP {answer.status}: stopped after {outcome.redirects} redirects (maxRedirects); the next "
                f"went to {shown_url(urljoin(answer.url, answer.location))}"
            )
        )
    after = f" after {outcome.redirects} redirects, from {shown_url(answer.url)}" if outcome.redirects else ""
    detail = f": {answer.excerpt}" if answer.excerpt else ""
    raise TaskFailed(credentials.hide(f"HTTP {answer.status}, not accepted ({accepted_text}){after}{detail}"))


# --- Checking a schedule's config ---------------------------------------------------------------------------


def _is_set(config: Mapping[str, Any], key: str) -> bool:
    return config.get(key) not in (None, "")


def check_http_config(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Rules across the HTTP task's fields, and within the fields a form type cannot check; reasons by key."""
    reasons = {
        "url": _url_reason(str(config["url"])),
        "headers": _headers_reason(config.get("headers")),
        "body": _body_reason(config),
        "bearerToken": (
            "use a bearer token or basic auth, not both"
            if _is_set(config, "bearerToken")
            and (_is_set(config, "basicUsername") or _is_set(config, "basicPassword"))
            else None
        ),
        "basicUsername": _username_reason(config),
        "acceptedStatus": _accepted_reason(config.get("acceptedStatus")),
        "maxRedirects": (
            "must be a whole number"
            if _is_set(config, "maxRedirects") and config["maxRedirects"] != int(config["maxRedirects"])
            else None
        ),
    }
    return {key: [reason] for key, reason in reasons.items() if reason}


def _url_reason(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials: use basicUsername and basicPassword (a secret) instead"
    if not parts.hostname:
        return "must name a host"
    try:
        parts.port  # noqa: B018 (urlsplit checks the port when it is read)
        parts.hostname.encode("idna")
    except (ValueError, UnicodeError):
        return "has a port or a host name that is not valid"
    return None


def _headers_reason(headers: Any) -> str | None:
    if headers is None:
        return None
    if not isinstance(headers, dict):
        return 'must be an object of text values, e.g. {"Accept": "application/json"}'
    if len(headers) > MAX_HEADERS:
        return f"at most {MAX_HEADERS} headers"
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name):
            return f"{name!r} is not a header name"
        if name.lower() in CREDENTIAL_HEADERS:
            return f"{name} would be shown to anyone who reads the schedule: use bearerToken or basic auth (secret fields)"
        if name.lower() in HEADERS_SET_BY_CRONWORK:
            return f"{name} is set by cronwork"
        if not isinstance(value, str):
            return f"{name} must be text"
        if any(char in value for char in "\r\n\0"):
            return f"{name} must be one line"
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return f"{name} holds characters a header cannot carry (Latin-1 only)"
    return None


def _body_reason(config: Mapping[str, Any]) -> str | None:
    body = config.get("body")
    if not body:
        return None
    if not isinstance(body, str):
        return "must be text"
    if (config.get("method") or "GET") not in METHODS_WITH_BODY:
        return f"is sent only with {', '.join(METHODS_WITH_BODY)}"
    unknown = sorted({name for name in PLACEHOLDER.findall(body) if name not in PLACEHOLDERS})
    if unknown:
        known = ", ".join(f"{{{{{name}}}}}" for name in PLACEHOLDERS)
        return f"unknown placeholder {{{{{unknown[0]}}}}}: the placeholders are {known}"
    return None


def _username_reason(config: Mapping[str, Any]) -> str | None:
    username = config.get("basicUsername")
    if not username:
        return "is required with basicPassword" if _is_set(config, "basicPassword") else None
    if ":" in username or not username.isprintable():
        return "must not hold ':' or control characters"
    return None


def _accepted_reason(text: Any) -> str | None:
    if not text:
        return None
    try:
        accepted_statuses(text)
    except ValueError as exc:
        return str(exc)
    return None


HTTP_REQUEST = TaskType(
    id="http_request",
    label="HTTP Request",
    description="Calls a URL; fails on a status it does not accept (2xx by default) or a network error",
    handler=http_request,
    check_config=check_http_config,
    config_fields=(
        ConfigField(
            "url",
            "URL",
            FieldType.URL,
            required=True,
            help="Loopback, link-local, private and internal addresses are refused unless HTTP_ALLOWED_NETWORKS "
            "opens them",
        ),
        ConfigField(
            "method",
            "Method",
            FieldType.SELECT,
            options=tuple(Option(method, method) for method in METHODS),
            help="GET unless set",
        ),
        ConfigField(
            "headers",
            "Headers",
            FieldType.JSON,
            help='An object of text values, e.g. {"Accept": "application/json"}; shown to readers of the '
            "schedule: credentials go in the secret fields",
        ),
        ConfigField(
            "body",
            "Body",
            FieldType.TEXT,
            help="Sent with POST, PUT, PATCH or DELETE, as JSON when it parses, else as text; {{scheduledFor}}, "
            "{{runId}}, {{attempt}} and {{scheduleId}} are filled in at run time",
        ),
        ConfigField(
            "bearerToken",
            "Bearer token",
            FieldType.TEXT,
            secret=True,
            help="Sent as Authorization: Bearer …, only to the URL's own origin",
        ),
        ConfigField("basicUsername", "Basic auth user", FieldType.TEXT),
        ConfigField(
            "basicPassword",
            "Basic auth password",
            FieldType.TEXT,
            secret=True,
            help="With the user, sent as Authorization: Basic …, only to the URL's own origin",
        ),
        ConfigField(
            "acceptedStatus",
            "Accepted statuses",
            FieldType.TEXT,
            help="Statuses and ranges that mean success, e.g. 200-299,304 (2xx unless set)",
        ),
        ConfigField(
            "timeoutS",
            "Timeout (seconds)",
            FieldType.NUMBER,
            minimum=1,
            maximum=120,
            help="For the whole request, redirects included; 10 unless set, never more than the run's time limit",
        ),
        ConfigField(
            "maxRedirects",
            "Redirects followed",
            FieldType.NUMBER,
            minimum=0,
            maximum=10,
            help="5 unless set; a redirect past the limit is the answer",
        ),
    ),
)
