"""Configuration, read once from the environment into a typed, immutable object.

Every service builds one ``Settings`` at start-up (``Settings.from_env()``) and passes it down; nothing else
reads ``os.environ`` for configuration. Each setting is declared once, as a field of ``Settings`` made by
``setting()``: its environment variable, default, accepted values and meaning. ``from_env`` parses and checks
the environment from those declarations, the class docstring is written from them, and so is the README's
"Configuration" table (``python -m shared.settings`` prints it; a test holds the README to it).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

EMBEDDED_DATABASE_PATH = Path("var") / "cronwork.sqlite3"

# RabbitMQ closes a channel that holds a delivery unacked for consumer_timeout (30 min by default), dropping
# the worker's delayed ticks with it: no delay we publish, and no handler run, may come near it.
LONGEST_UNACKED_S = 1500
# The pump runs every minute; a horizon shorter than that (plus margin) leaves slots unpublished until late.
SHORTEST_HORIZON_S = 90
# Every tick process may hold twice the whole budget of delayed ticks (see ``tick_delay_prefetch``), and
# Dramatiq caps a consumer's prefetch at 65535.
LARGEST_TICK_BUDGET = 65535 // 2

# One backfill is one insert and one broker commit: this many runs at most, whatever a deployment allows.
MOST_BACKFILL_SLOTS = 10_000

# A request body must be able to carry a schedule whose config is as large as it may be (64 KiB:
# shared.schedules.MAX_CONFIG_BYTES), with room for its other fields.
SMALLEST_REQUEST_LIMIT = 131_072

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot start with."""


def _one_of(choices: Iterable[str]) -> str:
    """``a, b or c``: the choices as a sentence says them."""
    *rest, last = choices
    return f"{', '.join(rest)} or {last}" if rest else last


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, its default, the values it accepts and what it means.

    Parameters:
      env: the variable's name.
      default: the value when the variable is unset or empty; its type (``int``, ``float`` or ``str``) is the
        setting's: a ``float`` default lets the variable hold a fraction (``0.5``).
      doc: one line for the README's table and the ``Settings`` docstring (Markdown: `code` in backticks).
      minimum, maximum: the bounds of a number setting (inclusive; None: unbounded).
      above: the value a fractional setting must exceed (an exclusive bound: any fraction above it, not it).
      choices: the only values a text setting accepts (empty: any text).
      any_case: a text setting's value is upper-cased before it is checked (``LOG_LEVEL=debug``).
      sensitive: a credential: deployments pass it from a Secret, never in plain configuration.
    """

    env: str
    default: int | float | str
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    any_case: bool = False
    sensitive: bool = False

    @property
    def is_whole_number(self) -> bool:
        """Whether the setting holds an integer."""
        return isinstance(self.default, int)

    @property
    def is_fractional(self) -> bool:
        """Whether the setting holds a number that may be a fraction."""
        return isinstance(self.default, float)

    def parse(self, environ: Mapping[str, str]) -> int | float | str:
        """This setting's value in ``environ``, or SettingsError naming the variable and the reason."""
        raw = environ.get(self.env) or ""
        if raw == "":
            return self.default
        if self.is_whole_number:
            return self._whole_number(raw)
        if self.is_fractional:
            return self._fraction(raw)
        return self._text(raw)

    def _whole_number(self, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{self.env} must be a whole number, got {raw!r}") from None
        if self.minimum is not None and value < self.minimum:
            raise SettingsError(f"{self.env} must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise SettingsError(f"{self.env} must be at most {self.maximum}, got {value}")
        return value

    def _fraction(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise SettingsError(f"{self.env} must be a number, got {raw!r}")
        if self.above is not None and value <= self.above:
            raise SettingsError(f"{self.env} must be more than {self.above:g}, got {value:g}")
        return value

    def _text(self, raw: str) -> str:
        value = raw.upper() if self.any_case else raw
        if self.choices and value not in self.choices:
            raise SettingsError(f"{self.env} must be {_one_of(self.choices)}, got {value!r}")
        return value

    @property
    def shown_default(self) -> str:
        """The default as the README shows it: ``unset`` for an empty text."""
        if isinstance(self.default, float):
            return f"`{self.default:g}`"
        return f"`{self.default}`" if self.default != "" else "unset"

    @property
    def accepts(self) -> str:
        """The values this setting accepts, in words: ``90 to 1500``, ``1 or more``, `` `dev` or `header` ``."""
        if self.choices:
            either = _one_of(f"`{choice}`" for choice in self.choices)
            return f"{either} (any case)" if self.any_case else either
        if self.is_fractional:
            return f"more than {self.above:g}" if self.above is not None else "a number"
        if not self.is_whole_number:
            return "text"
        if self.minimum is not None and self.maximum is not None:
            return f"{self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"{self.minimum} or more"
        if self.maximum is not None:
            return f"at most {self.maximum}"
        return "a whole number"


SettingT = TypeVar("SettingT", int, float, str)


def setting(
    env: str,
    default: SettingT,
    doc: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    above: float | None = None,
    choices: tuple[str, ...] = (),
    any_case: bool = False,
    sensitive: bool = False,
) -> SettingT:
    """A field of ``Settings`` read from ``env``: the one declaration of that setting (see ``Setting``)."""
    declaration = Setting(env, default, doc, minimum, maximum, above, choices, any_case, sensitive)
    return field(default=default, metadata={"setting": declaration})


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a comma-separated list of CIDRs (a bare address is a /32 or /128); ``ValueError``
    naming the first item that is not one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"HTTP_ALLOWED_NETWORKS: {item!r} is not a network (e.g. 10.20.0.0/16)"
            ) from None
    return tuple(networks)


def normalise_database_url(url: str) -> str:
    """Accept the plain ``postgresql://`` form and route it to psycopg 3 (SQLAlchemy's default is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    """Everything the services read from the environment.

    The parameters below are written from the declarations (``SETTINGS``) when this module is imported.
    """

    database_url: str = setting(
        "DATABASE_URL",
        "",
        "PostgreSQL (`postgresql://user:pass@host:5432/db`, served by psycopg 3); unset, with `BROKER_URL` "
        "unset too: the embedded SQLite file `var/cronwork.sqlite3`",
        sensitive=True,
    )
    broker_url: str = setting(
        "BROKER_URL",
        "",
        "RabbitMQ (`amqp://user:pass@host:5672/%2F`); unset: Dramatiq's in-process broker (embedded mode "
        "only: set both URLs or neither)",
        sensitive=True,
    )
    port: int = setting("PORT", 8000, "where the API listens", minimum=1, maximum=65535)
    auth_mode: str = setting(
        "AUTH_MODE",
        "dev",
        "`dev`: every caller is `MOCK_USER_EMAIL`; `header`: trust `AUTH_HEADER` and `AUTH_GROUPS_HEADER`, set "
        "by the authenticating proxy in front of the API (no header: 401); `oidc`: a bearer JWT verified against "
        "the issuer's keys. API tokens (`Authorization: Bearer cw_...`) work in every mode",
        choices=("dev", "header", "oidc"),
    )
    mock_user_email: str = setting("MOCK_USER_EMAIL", "dev@localhost", "the user in `dev` mode")
    mock_user_role: str = setting(
        "MOCK_USER_ROLE", "admin", "the user's role in `dev` mode", choices=("viewer", "operator", "admin")
    )
    auth_header: str = setting(
        "AUTH_HEADER",
        "X-Forwarded-Email",
        "the identity header in `header` mode (`X-MS-CLIENT-PRINCIPAL-NAME` behind Azure AD)",
    )
    auth_groups_header: str = setting(
        "AUTH_GROUPS_HEADER",
        "X-Forwarded-Groups",
        "the header in `header` mode that lists the caller's groups, comma-separated (oauth2-proxy's)",
    )
    auth_admin_groups: str = setting(
        "AUTH_ADMIN_GROUPS",
        "",
        "groups (comma-separated) whose members are admins: the groups header in `header` mode, the "
        "`OIDC_GROUPS_CLAIM` in `oidc` mode",
    )
    auth_operator_groups: str = setting(
        "AUTH_OPERATOR_GROUPS", "", "groups (comma-separated) whose members are operators"
    )
    auth_viewer_groups: str = setting(
        "AUTH_VIEWER_GROUPS", "", "groups (comma-separated) whose members are viewers"
    )
    auth_default_role: str = setting(
        "AUTH_DEFAULT_ROLE",
        "viewer",
        "the role of an identified caller in none of those groups (`none`: no role, every call but "
        "`/me` is a 403)",
        choices=("none", "viewer", "operator", "admin"),
    )
    oidc_issuer: str = setting(
        "OIDC_ISSUER",
        "",
        "`oidc` mode: the issuer a token must name (`iss`), e.g. `https://login.example.com`",
    )
    oidc_audience: str = setting("OIDC_AUDIENCE", "", "`oidc` mode: the audience a token must name (`aud`)")
    oidc_jwks_url: str = setting(
        "OIDC_JWKS_URL",
        "",
        "`oidc` mode: where the issuer publishes its signing keys; unset: read from the issuer's "
        "`/.well-known/openid-configuration`",
    )
    oidc_username_claim: str = setting(
        "OIDC_USERNAME_CLAIM",
        "email",
        "`oidc` mode: the claim that names the caller (`sub` when it is absent)",
    )
    oidc_groups_claim: str = setting(
        "OIDC_GROUPS_CLAIM", "groups", "`oidc` mode: the claim listing the caller's groups (or roles)"
    )
    tick_horizon_s: int = setting(
        "TICK_HORIZON_S",
        300,
        "H: ticks are published for slots at most this many seconds ahead (longer than the pump's minute, "
        "shorter than RabbitMQ's 30-minute `consumer_timeout`)",
        minimum=SHORTEST_HORIZON_S,
        maximum=LONGEST_UNACKED_S,
    )
    pump_grace_s: int = setting(
        "PUMP_GRACE_S",
        60,
        "a slot (or a queued run never sent) overdue by more than this many seconds is re-armed "
        "(re-dispatched) by the pump",
        minimum=5,
    )
    misfire_grace_s: int = setting(
        "MISFIRE_GRACE_S",
        60,
        "a slot claimed at most this many seconds late is on time; later, its schedule's misfire policy decides "
        "whether it runs",
        minimum=1,
    )
    tick_budget: int = setting(
        "TICK_BUDGET",
        10000,
        "the most tick messages in flight, fleet-wide; slots beyond it wait, earliest first (each tick "
        "process prefetches twice the budget, and Dramatiq caps a prefetch at 65535)",
        minimum=100,
        maximum=LARGEST_TICK_BUDGET,
    )
    tick_bucket_ms: int = setting(
        "TICK_BUCKET_MS",
        10,
        "slots due within the same bucket of this many milliseconds share one tick, delivered at the "
        "bucket's latest slot (0: one tick per slot)",
        minimum=0,
        maximum=1000,
    )
    secret_keys: str = setting(
        "SECRET_KEYS",
        "",
        "Fernet keys (comma-separated) that encrypt secret config fields: the first encrypts, every one "
        "decrypts (rotation: see `shared/secrets.py`); unset: secrets only by reference",
        sensitive=True,
    )
    http_allowed_networks: str = setting(
        "HTTP_ALLOWED_NETWORKS",
        "",
        "networks (comma-separated CIDRs) the HTTP task may call although they are private, loopback or "
        "link-local, which it refuses by default (e.g. `10.20.0.0/16`)",
    )
    smtp_host: str = setting(
        "SMTP_HOST", "", "the mail server `send_email` sends through; unset: it fails, saying so"
    )
    smtp_port: int = setting("SMTP_PORT", 587, "the mail server's port", minimum=1, maximum=65535)
    smtp_security: str = setting(
        "SMTP_SECURITY",
        "starttls",
        "`starttls` (upgrade after connecting), `tls` (TLS from the start, port 465) or `none` (a trusted relay)",
        choices=("starttls", "tls", "none"),
    )
    smtp_username: str = setting("SMTP_USERNAME", "", "the mail server's user; unset: no login")
    smtp_password: str = setting(
        "SMTP_PASSWORD", "", "the mail server user's password (from a Secret)", sensitive=True
    )
    smtp_from: str = setting("SMTP_FROM", "cronwork@localhost", "the sender of `send_email`'s mail")
    demo_task_types: str = setting(
        "DEMO_TASK_TYPES",
        "false",
        "`true` offers the proof of concept's simulated task types and its sample system cron (`make run` "
        "turns them on); installed plugins are offered either way",
        choices=("true", "false"),
    )
    simulated_work_ms: int = setting(
        "SIMULATED_WORK_MS", 1000, "how long the demo task types work, in milliseconds", minimum=0
    )
    retry_base_delay_ms: int = setting(
        "RETRY_BASE_DELAY_MS",
        5000,
        "backoff before a failed run's second attempt, in milliseconds; it doubles after each failure "
        "(capped at 5 min)",
        minimum=0,
    )
    history_retention_days: float = setting(
        "HISTORY_RETENTION_DAYS",
        90.0,
        "finished runs older than this many days are deleted (hourly, at minute 17 UTC, in bounded batches); a "
        "fraction is a shorter window (`0.01`: about 14 minutes)",
        above=0,
    )
    backfill_max_slots: int = setting(
        "BACKFILL_MAX_SLOTS",
        1000,
        "the most slots one backfill (`POST /api/scheduler/tasks/{id}/backfill`) may cover; a wider window is "
        "refused, naming where the first this many end",
        minimum=1,
        maximum=MOST_BACKFILL_SLOTS,
    )
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES",
        1_048_576,
        "the largest request body the API reads, in bytes (1 MiB); a larger one is refused with a 413 (a "
        "schedule's config is bounded apart, at 64 KiB)",
        minimum=SMALLEST_REQUEST_LIMIT,
    )
    worker_processes: int = setting(
        "WORKER_PROCESSES",
        2,
        "Dramatiq processes per worker pod that run task handlers (the `cronwork.runs` queue)",
        minimum=1,
    )
    worker_threads: int = setting("WORKER_THREADS", 4, "threads of each of those processes", minimum=1)
    tick_threads: int = setting(
        "TICK_THREADS",
        16,
        "threads of each pod's tick process: ticks taken by many threads are claimed together, in one "
        "transaction",
        minimum=1,
    )
    worker_timeout_ms: int = setting(
        "WORKER_TIMEOUT_MS",
        100,
        "how often, in milliseconds, workers look for due delayed messages (the lateness floor)",
        minimum=10,
    )
    task_time_limit_s: int = setting(
        "TASK_TIME_LIMIT_S",
        300,
        "the longest one handler attempt may run, in seconds (shorter than RabbitMQ's `consumer_timeout`); "
        "a stopping worker drains its running tasks for as long, plus a few seconds",
        minimum=1,
        maximum=LONGEST_UNACKED_S,
    )
    run_lease_margin_s: int = setting(
        "RUN_LEASE_MARGIN_S",
        30,
        "a running run silent this many seconds past its time limit is marked abandoned by the pump",
        minimum=1,
    )
    gunicorn_workers: int = setting("GUNICORN_WORKERS", 2, "API processes (gunicorn workers)", minimum=1)
    heartbeat_dir: str = setting(
        "HEARTBEAT_DIR", "/tmp", "where worker and beat keep the heartbeat that `cronwork probe` checks"
    )
    log_level: str = setting(
        "LOG_LEVEL", "INFO", "the least severe log records printed", choices=LOG_LEVELS, any_case=True
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        "`json`: one JSON object per line (time, level, logger, message and fields: what a log pipeline "
        "reads; the image and compose set it); `text`: a line for a terminal (`make run`)",
        choices=("text", "json"),
    )
    beat_metrics_port: int = setting(
        "BEAT_METRICS_PORT",
        9192,
        "where the beat serves `cronwork_beat_heartbeat_timestamp_seconds`",
        minimum=1,
        maximum=65535,
    )

    @property
    def is_embedded(self) -> bool:
        """True when neither a database nor a broker is configured: one process, SQLite, in-memory broker."""
        return not self.database_url and not self.broker_url

    @property
    def offers_demo_task_types(self) -> bool:
        """Whether the simulated demo task types (and the sample system cron) are offered."""
        return self.demo_task_types == "true"

    @property
    def tick_delay_prefetch(self) -> int:
        """Delayed ticks one tick process holds: twice the fleet's budget, so that however RabbitMQ spreads
        the ticks over processes, a due tick never waits behind ones that are not due (invariant 6)."""
        return 2 * self.tick_budget

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL for SQLAlchemy: ``DATABASE_URL`` with the psycopg 3 driver, or the embedded SQLite
        file."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{EMBEDDED_DATABASE_PATH}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every setting from ``environ`` (default: ``os.environ``); SettingsError names the first variable
        the services cannot start with, and why."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {f.name: declaration(f.name).parse(env) for f in fields(cls)}
        try:
            parse_networks(values["http_allowed_networks"])
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if values["auth_mode"] == "oidc" and not (values["oidc_issuer"] and values["oidc_audience"]):
            raise SettingsError("AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_AUDIENCE")
        if bool(values["database_url"]) != bool(values["broker_url"]):
            raise SettingsError(
                "set both DATABASE_URL and BROKER_URL (separate services) or neither (embedded mode)"
            )
        return cls(**values)


def declaration(attribute: str) -> Setting:
    """The declaration of the ``Settings`` attribute named ``attribute``."""
    found = _FIELDS[attribute].metadata.get("setting")
    if not isinstance(found, Setting):
        raise TypeError(f"Settings.{attribute} must be declared with setting()")
    return found


_FIELDS = {f.name: f for f in fields(Settings)}
# Every setting, in the order of the ``Settings`` fields (and of the README's table); building it refuses a
# field declared without setting() as soon as this module is imported.
SETTINGS: tuple[Setting, ...] = tuple(declaration(name) for name in _FIELDS)


def _parameters_doc() -> str:
    lines = ["Parameters (environment variable, default; accepted values):"]
    for name, declared in zip(_FIELDS, SETTINGS, strict=True):
        lines.append(
            f"  {name} ({declared.env}, {declared.shown_default}; {declared.accepts}): {declared.doc}."
        )
    return "\n".join(f"    {line}" for line in lines)


Settings.__doc__ = f"{Settings.__doc__.rstrip()}\n\n{_parameters_doc()}\n" if Settings.__doc__ else None


def configuration_table() -> str:
    """The README's "Configuration" table (Markdown), one row per setting."""
    rows = ["| variable | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{s.env}` | {s.shown_default} | {s.accepts} | {s.doc} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(configuration_table(), end="")
