"""gunicorn's configuration for ``cronwork api`` (``--config python:services.api.gunicorn_config``): its logs in
``LOG_FORMAT`` like every other service's, its access log included, and the multiprocess metrics of a worker
that exited retired, so that /metrics sums the live workers' and the dead ones' counts without double counting
a live gauge."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

from shared.settings import Settings

_settings = Settings.from_env()


def _handler(stream: str) -> dict[str, str]:
    return {"class": "logging.StreamHandler", "formatter": "cronwork", "stream": f"ext://sys.{stream}"}


# gunicorn lays this over its own logging configuration (dictConfig): the app's loggers (root), its error log
# and its access log, each line in the format every service writes.
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "cronwork": {"()": "shared.observability.log_formatter", "log_format": _settings.log_format}
    },
    "handlers": {"stderr": _handler("stderr"), "stdout": _handler("stdout")},
    "root": {"level": _settings.log_level, "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}


def child_exit(_server: Any, worker: Any) -> None:
    """A gunicorn worker exited: its live gauges leave the sums (its counters stay counted)."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
