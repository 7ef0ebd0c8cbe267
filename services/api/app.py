"""The API service: the Flask app factory, health and metrics endpoints, and the operator's page."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, send_from_directory
from flask_smorest import Api
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from services.api.metrics import SchedulerCollector
from services.api.routes import blp
from services.api.schemas import ENUMS, enum_reference
from shared.messaging import broker_is_reachable
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
IDENTITY_SCHEME = "identityHeader"


class SchedulerApi(Api):
    """flask-smorest's Api without its ``X-Pagination`` header component, whose object schema says the header
    is an object: the blueprint documents it as the JSON string it is."""

    def _register_pagination_header(self) -> None:
        pass


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
    )
    app.extensions["cronwork"] = runtime
    api = SchedulerApi(
        app,
        spec_kwargs={
            "info": {"description": "Schedules that run exactly once per slot."},
            "security": [{IDENTITY_SCHEME: []}],
        },
    )
    api.spec.components.security_scheme(IDENTITY_SCHEME, identity_scheme(settings))
    for name, values in ENUMS.items():
        api.spec.components.schema(name, {"type": "string", "enum": values})
    api.ma_plugin.converter.add_attribute_function(enum_reference)
    api.register_blueprint(blp)

    metrics = CollectorRegistry()
    metrics.register(SchedulerCollector(runtime))

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


def identity_scheme(settings: Settings) -> dict[str, str]:
    """How a caller is identified: the authenticating proxy in front of the API sets a header to its e-mail."""
    return {
        "type": "apiKey",
        "in": "header",
        "name": settings.auth_header,
        "description": (
            f"The caller's e-mail, set by the authenticating proxy (AUTH_HEADER, here {settings.auth_header}); "
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
