"""Configuration, read once from the environment into a typed, immutable object.

Every service builds one ``Settings`` at start-up (``Settings.from_env()``) and passes it down; nothing else
reads ``os.environ`` for configuration. The README's "Configuration" table lists the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_DATABASE_PATH = Path("var") / "cronwork.sqlite3"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot start with."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _log_level(env: dict[str, str]) -> str:
    level = (env.get("LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
    return level


# RabbitMQ closes a channel that holds a delivery unacked for consumer_timeout (30 min by default), dropping
# the worker's delayed ticks with it: no delay we publish, and no handler run, may come near it.
LONGEST_UNACKED_S = 1500
# The pump runs every minute; a horizon shorter than that (plus margin) leaves slots unpublished until late.
SHORTEST_HORIZON_S = 90
# Every tick process may hold twice the whole budget of delayed ticks (see ``tick_delay_prefetch``), and
# Dramatiq caps a consumer's prefetch at 65535.
LARGEST_TICK_BUDGET = 65535 // 2


def normalise_database_url(url: str) -> str:
    """Accept the plain ``postgresql://`` form and route it to psycopg 3 (SQLAlchemy's default is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    """Everything the services read from the environment.

    Parameters (environment variable, default):
      database_url (``DATABASE_URL``, unset): PostgreSQL in production; unset means the embedded SQLite file.
      broker_url (``BROKER_URL``, unset): RabbitMQ (``amqp://...``); unset means Dramatiq's in-process broker.
      port (``PORT``, 8000): where the API listens.
      auth_mode (``AUTH_MODE``, ``dev``): ``dev`` takes the user from ``MOCK_USER_EMAIL``; ``header`` trusts
        the header named by ``AUTH_HEADER`` (set by the authenticating proxy in front of the API).
      tick_horizon_s (``TICK_HORIZON_S``, 300): ticks are published only for slots at most this far ahead (H).
      pump_grace_s (``PUMP_GRACE_S``, 60): a tick overdue by more than this is published again by the pump.
      tick_budget (``TICK_BUDGET``, 10000): the most tick messages the broker holds, fleet-wide; slots beyond
        it wait, earliest first, for the budget to free up.
      tick_bucket_ms (``TICK_BUCKET_MS``, 10): slots due within the same bucket of this many milliseconds
        share one tick message (delivered at the bucket's latest slot; 0: one tick per slot).
      simulated_work_ms (``SIMULATED_WORK_MS``, 1000): how long the demo task types pretend to work.
      retry_base_delay_ms (``RETRY_BASE_DELAY_MS``, 5000): backoff before the 2nd attempt; doubles after.
      task_time_limit_s (``TASK_TIME_LIMIT_S``, 300): the longest one attempt of a handler may run.
      run_lease_margin_s (``RUN_LEASE_MARGIN_S``, 30): a running run whose worker is silent this long past
        its time limit is marked abandoned by the pump.
      history_retention_days (``HISTORY_RETENTION_DAYS``, 90): finished runs older than this are deleted.
    """

    database_url: str = ""
    broker_url: str = ""
    port: int = 8000
    auth_mode: str = "dev"
    mock_user_email: str = "dev@localhost"
    auth_header: str = "X-Forwarded-Email"
    tick_horizon_s: int = 300
    pump_grace_s: int = 60
    tick_budget: int = 10000
    tick_bucket_ms: int = 10
    simulated_work_ms: int = 1000
    retry_base_delay_ms: int = 5000
    history_retention_days: int = 90
    worker_processes: int = 2
    worker_threads: int = 4
    tick_threads: int = 16
    worker_timeout_ms: int = 100
    task_time_limit_s: int = 300
    run_lease_margin_s: int = 30
    gunicorn_workers: int = 2
    heartbeat_dir: str = "/tmp"
    log_level: str = "INFO"

    @property
    def is_embedded(self) -> bool:
        """True when neither a database nor a broker is configured: one process, SQLite, in-memory broker."""
        return not self.database_url and not self.broker_url

    @property
    def tick_delay_prefetch(self) -> int:
        """Delayed ticks one tick process holds: twice the fleet's budget, so that however RabbitMQ spreads
        the ticks over processes, a due tick never waits behind ones that are not due (invariant 6)."""
        return 2 * self.tick_budget

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{EMBEDDED_DATABASE_PATH}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        auth_mode = env.get("AUTH_MODE", "dev") or "dev"
        if auth_mode not in ("dev", "header"):
            raise SettingsError(f"AUTH_MODE must be 'dev' or 'header', got {auth_mode!r}")
        database_url = env.get("DATABASE_URL", "")
        broker_url = env.get("BROKER_URL", "")
        if bool(database_url) != bool(broker_url):
            raise SettingsError(
                "set both DATABASE_URL and BROKER_URL (separate services) or neither (embedded mode)"
            )
        return cls(
            database_url=database_url,
            broker_url=broker_url,
            port=_int(env, "PORT", 8000, minimum=1),
            auth_mode=auth_mode,
            mock_user_email=env.get("MOCK_USER_EMAIL", "dev@localhost") or "dev@localhost",
            auth_header=env.get("AUTH_HEADER", "X-Forwarded-Email") or "X-Forwarded-Email",
            tick_horizon_s=_int(
                env, "TICK_HORIZON_S", 300, minimum=SHORTEST_HORIZON_S, maximum=LONGEST_UNACKED_S
            ),
            pump_grace_s=_int(env, "PUMP_GRACE_S", 60, minimum=5),
            tick_budget=_int(env, "TICK_BUDGET", 10000, minimum=100, maximum=LARGEST_TICK_BUDGET),
            tick_bucket_ms=_int(env, "TICK_BUCKET_MS", 10, maximum=1000),
            simulated_work_ms=_int(env, "SIMULATED_WORK_MS", 1000),
            retry_base_delay_ms=_int(env, "RETRY_BASE_DELAY_MS", 5000),
            history_retention_days=_int(env, "HISTORY_RETENTION_DAYS", 90, minimum=1),
            worker_processes=_int(env, "WORKER_PROCESSES", 2, minimum=1),
            worker_threads=_int(env, "WORKER_THREADS", 4, minimum=1),
            tick_threads=_int(env, "TICK_THREADS", 16, minimum=1),
            worker_timeout_ms=_int(env, "WORKER_TIMEOUT_MS", 100, minimum=10),
            task_time_limit_s=_int(env, "TASK_TIME_LIMIT_S", 300, minimum=1, maximum=LONGEST_UNACKED_S),
            run_lease_margin_s=_int(env, "RUN_LEASE_MARGIN_S", 30, minimum=1),
            gunicorn_workers=_int(env, "GUNICORN_WORKERS", 2, minimum=1),
            heartbeat_dir=env.get("HEARTBEAT_DIR", "/tmp") or "/tmp",
            log_level=_log_level(env),
        )
