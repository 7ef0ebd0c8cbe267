"""gunicorn's configuration for ``cronwork api`` (``--config python:services.api.gunicorn_config``): its logs in
``LOG_FORMAT`` like every other service's, its access log included; the multiprocess metrics of a worker that
exited retired, so that /metrics sums the live workers' and the dead ones' counts without double counting a live
gauge; and SIGINT left to ``cronwork api``'s supervisor, whose process group gunicorn shares."""

from __future__ import annotations

import signal
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


# gunicorn takes SIGINT as "quit now" in its master and its workers alike, and Ctrl-C sends it to the whole
# process group. The supervisor turns the first into a graceful stop (SIGTERM) and a second into a quick one
# (SIGQUIT), as it does for every process it runs; gunicorn ignores SIGINT itself.


def when_ready(_server: Any) -> None:
    """The master's signals are set up: leave SIGINT to the supervisor."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def post_worker_init(_worker: Any) -> None:
    """A worker's signals are set up: leave SIGINT to the supervisor."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
