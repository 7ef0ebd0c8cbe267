"""The API service: the Flask app factory, health and metrics endpoints, and the operator's page."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, Response, request, send_from_directory
from flask_smorest import Api
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from services.api.auth import Identifier, token_lookup
from services.api.metrics import SchedulerCollector, instrument
from services.api.request_ids import REQUEST_ID_DOC, REQUEST_ID_HEADER, request_id
from services.api.routes import TaskIdConverter, blp
from services.api.schemas import ENUMS, ErrorSchema, enum_reference
from shared.messaging import broker_is_reachable
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
IDENTITY_SCHEME = "identityHeader"
BEARER_SCHEME = "bearer"
logger = logging.getLogger("cronwork.api")

# Sent with every answer (``secure_every_answer``): the page and the API load nothing from elsewhere, run no
# inline script or style (theme-init.js is a file for that reason; styles set from JS go through the CSSOM, which
# the policy allows), and are never framed, sniffed or named in another site's Referer.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def content_security_policy(response: Response) -> str:
    """The policy of this answer: ``CONTENT_SECURITY_POLICY``, except for Swagger UI's page (flask-smorest's
    template), whose inline start-up script is allowed by its hash and whose stylesheet draws its icons from
    ``data:`` images."""
    policy = dict(CONTENT_SECURITY_POLICY)
    if request.endpoint == SWAGGER_UI_ENDPOINT and not response.direct_passthrough:
        hashes = [
            f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
            for script in INLINE_SCRIPT.findall(response.get_data(as_text=True))
        ]
        policy["script-src"] = " ".join([policy["script-src"], *hashes])
        policy["img-src"] = f"{policy['img-src']} data:"
    return "; ".join(f"{directive} {sources}" for directive, sources in policy.items())


class RequestIdHeader(BasePlugin):
    """apispec plugin: documents ``X-Request-ID`` on every response, each operation's own and the shared ones
    (``default``, the 422 of parsed arguments) that operations refer to."""

    def init_spec(self, spec: APISpec) -> None:
        spec.components.header("REQUEST_ID", REQUEST_ID_DOC, lazy=True)

    def response_helper(self, response: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        return {"headers": {**response.get("headers", {}), REQUEST_ID_HEADER: "REQUEST_ID"}}

    def operation_helper(
        self, path: str | None = None, operations: dict[Any, Any] | None = None, **_kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            for response in operation.get("responses", {}).values():
                # A name or a $ref is a shared response, which response_helper documents.
                if isinstance(response, dict) and "$ref" not in response:
                    response.setdefault("headers", {})[REQUEST_ID_HEADER] = "REQUEST_ID"


class SchedulerApi(Api):
    """flask-smorest's Api without its ``X-Pagination`` header component, whose object schema says the header
    is an object (the blueprint documents it as the JSON string it is); whose errors carry the request's id."""

    ERROR_SCHEMA = ErrorSchema

    def _register_pagination_header(self) -> None:
        pass

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, Any]:
        payload, status, headers = super().handle_http_exception(error)
        # Werkzeug's own headers of the error, which flask-smorest drops: a 405's Allow (RFC 9110 15.5.6).
        own = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        headers = {**own, **(headers or {})}
        if isinstance(error, RequestEntityTooLarge) and "message" not in payload:
            limit = f"{request.max_content_length:,} bytes (MAX_REQUEST_BYTES)"
            payload["message"] = f"the body is larger than {limit}: refused, nothing done"
        return {**payload, "requestId": request_id()}, status, headers


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the API. ``runtime`` lets the embedded mode share one database and broker with its worker."""
    settings = settings or (runtime.settings if runtime else Settings.from_env())
    runtime = runtime or build_runtime(settings)
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config.update(
        API_TITLE="cronwork",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Served from the swagger-ui-bundle package, so the docs work where the cluster reaches no CDN.
        OPENAPI_SWAGGER_UI_URL="/api/docs/assets/",
        JSON_SORT_KEYS=False,
        # A larger body is a 413 (SchedulerApi's JSON error) as soon as a view reads it.
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
    )
    app.extensions["cronwork"] = runtime
    app.url_map.converters["task_id"] = TaskIdConverter
    api = SchedulerApi(
        app,
        spec_kwargs={
            "info": {"description": "Schedules that run exactly once per slot."},
            "security": [{IDENTITY_SCHEME: []}, {BEARER_SCHEME: []}],
            "extra_plugins": [RequestIdHeader()],
        },
    )
    api.spec.components.security_scheme(IDENTITY_SCHEME, identity_scheme(settings))
    api.spec.components.security_scheme(BEARER_SCHEME, BEARER_DOC)
    app.extensions["cronwork.identifier"] = Identifier(settings, token_lookup(runtime.sessions))
    for name, values in ENUMS.items():
        api.spec.components.schema(name, {"type": "string", "enum": values})
    api.ma_plugin.converter.add_attribute_function(enum_reference)
    api.register_blueprint(blp)

    metrics = CollectorRegistry()
    metrics.register(SchedulerCollector(runtime))
    instrument(app, metrics)

    @app.after_request
    def tell_the_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = request_id()
        return response

    @app.after_request
    def secure_every_answer(response: Response) -> Response:
        """The security headers, on every answer: the API's, the page's, static files and errors alike."""
        response.headers["Content-Security-Policy"] = content_security_policy(response)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[dict[str, Any], int, Any]:
        """Any exception but an HTTP error (flask-smorest's handler answers those): logged with the request's
        id, and answered with that id and no word of the exception."""
        logger.error(
            "unexpected error on %s %s, request %s",
            request.method,
            request.path,
            request_id(),
            exc_info=error,
        )
        payload, status, headers = api.handle_http_exception(InternalServerError())
        message = "an unexpected error; the API's log has it under this requestId"
        return {**payload, "message": message}, status, headers

    @app.get("/")
    def operator_page() -> Response:
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/api/docs/assets/<path:filename>")
    def swagger_ui_assets(filename: str) -> Response:
        return send_from_directory(swagger_ui_path, filename)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is alive (no dependency is checked: a database outage must not restart the API)."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, object], int]:
        """Ready to serve: the database answers and the broker accepts connections."""
        checks = {"database": _database_answers(runtime), "broker": broker_is_reachable(settings)}
        return {"ready": all(checks.values()), "checks": checks}, 200 if all(checks.values()) else 503

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics), mimetype=CONTENT_TYPE_LATEST)

    return app


BEARER_DOC = {
    "type": "http",
    "scheme": "bearer",
    "description": (
        "An API token (cw_..., made by an admin at /api/scheduler/tokens) in any AUTH_MODE, or in AUTH_MODE=oidc "
        "a JWT from the identity provider (signature, issuer, audience and expiry are checked)"
    ),
}


def identity_scheme(settings: Settings) -> dict[str, str]:
    """How a caller is identified in header mode: the authenticating proxy sets a header to its e-mail (and
    another to its groups, which give its role)."""
    return {
        "type": "apiKey",
        "in": "header",
        "name": settings.auth_header,
        "description": (
            f"The caller's e-mail, set by the authenticating proxy (AUTH_HEADER, here {settings.auth_header}), "
            f"and its groups in {settings.auth_groups_header} (AUTH_GROUPS_HEADER), which give its role; "
            "without it an AUTH_MODE=header API answers 401. AUTH_MODE=dev ignores it."
        ),
    }


def _database_answers(runtime: Runtime) -> bool:
    try:
        with runtime.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
