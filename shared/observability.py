"""What the services tell operators: the run metrics (Prometheus) and the log format, one definition each.

The metrics are counted in the process where the event happens, after its transaction committed, so a rolled
back claim or an outcome that was not recorded counts nothing. The worker's Dramatiq processes write them to
prometheus_client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, set by ``cronwork worker`` before
any of them starts), which the worker's supervisor serves on Dramatiq's port (``dramatiq_prom_port``, 9191);
the embedded mode's API serves them from its own registry. Labels are bounded: task types, triggers and outcomes, never a schedule.
``docs/observability.md`` lists every metric and log field.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from shared.settings import Settings

# --- Metrics -------------------------------------------------------------------------------------------------

# Not registered anywhere: the multiprocess collector reads their values from the shared directory, and a
# process without one (the embedded mode) registers them with the registry it serves (``RUN_METRICS``).
RUNS_STARTED = Counter(
    "cronwork_runs_started_total",
    "Runs (attempts) started, by task type and trigger",
    ["task_type", "trigger"],
    registry=None,
)
RUNS_FINISHED = Counter(
    "cronwork_runs_finished_total",
    "Runs (attempts) finished, by task type, trigger and outcome (success, failed, abandoned); a failed attempt "
    "that is retried counts as failed",
    ["task_type", "trigger", "outcome"],
    registry=None,
)
SLOT_LATENESS = Histogram(
    "cronwork_slot_lateness_seconds",
    "How late first attempts start: a scheduled run after its slot plus its jitter, a backfilled run after it "
    "was queued",
    ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
    registry=None,
)
SLOTS_MISSED = Counter(
    "cronwork_slots_missed_total",
    "Slots a claim recorded missed (the misfire policy did not run them), counted in slots, not ranges",
    registry=None,
)
SLOTS_SKIPPED = Counter(
    "cronwork_slots_skipped_total",
    "Slots a claim recorded skipped (the overlap policy: a run of the schedule was still queued or running)",
    registry=None,
)
PUMP_REARMED = Counter(
    "cronwork_pump_rearmed_total",
    "Chains the pump reopened: their tick was overdue past the grace period, so it is published again",
    registry=None,
)
PUMP_PUBLISHED = Counter(
    "cronwork_pump_published_total",
    "What the pump published: tick slots entering the horizon (kind=slot) and stuck runs re-dispatched "
    "(kind=run)",
    ["kind"],
    registry=None,
)
RUN_METRICS = (
    RUNS_STARTED,
    RUNS_FINISHED,
    SLOT_LATENESS,
    SLOTS_MISSED,
    SLOTS_SKIPPED,
    PUMP_REARMED,
    PUMP_PUBLISHED,
)


# --- Logs ----------------------------------------------------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What every LogRecord has; anything else on a record came from ``extra=`` and is a field of its JSON line.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Fields added to every line logged in the current context (the API sets the request's id).
log_context: ContextVar[dict[str, Any] | None] = ContextVar("cronwork_log_context", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ``Z``), ``level``, ``logger``, ``message``, then the record's
    ``extra=`` fields and the context's (``log_context``), and ``exception`` with its traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        """``record`` as one line of JSON."""
        instant = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(log_context.get() or {})
        line.update({key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES})
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


def log_formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT``: ``json`` or ``text``. (A ``logging.config`` factory: gunicorn's too.)"""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings) -> None:
    """Format every line this process logs as ``LOG_FORMAT`` says, from ``LOG_LEVEL`` up: the root logger's
    handlers (Dramatiq's and periodiq's, which write to their parent's pipe, keep their streams), or one on
    stderr when it has none. The one place each service's log format is set (gunicorn's: ``gunicorn_config``)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter = log_formatter(settings.log_format)
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(settings.log_level)
