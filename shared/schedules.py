"""User schedules: validation, create, edit, delete, Run Now and the queries the API serves.

Values come in as a ``ScheduleInput`` keyed by the model's attribute names, and errors go out keyed the same
way; the API's schema maps both to and from its wire names. Validation lives here, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, Select, and_, delete, func, literal, select, text
from sqlalchemy.orm import Session, with_expression

from shared.audit import PROCESS, Actor, field_changes, record
from shared.cron import load_timezone
from shared.db import is_postgresql, utcnow
from shared.messaging import TickSlot
from shared.models import (
    AuditAction,
    DstPolicy,
    MisfirePolicy,
    OverlapPolicy,
    RunStatus,
    ScheduleHealth,
    TaskRunHistory,
    TaskSchedule,
)
from shared.protocol import (
    RETRY_MAX_DELAY,
    ArmedRow,
    ClaimRequest,
    arm,
    claim_locked_slots,
    dispatch_runs,
    lock_schedule,
    publish_outboxes,
    publish_tick,
    queue_manual_run,
    record_unclaimed_slots,
    undispatched_runs_of,
)
from shared.runtime import Runtime
from shared.secrets import SecretError, stored_secret
from shared.timing import (
    BOUND_FIELDS,
    EARLIEST_INSTANT,
    INSTANT_RANGE_REASON,
    LATEST_INSTANT,
    TIMINGS,
    InvalidTiming,
    TimingFields,
    parse_timing,
    timing_of,
)


class ScheduleInput(TypedDict, total=False):
    """A schedule's editable values, by attribute. Complete when creating; an update carries what changes."""

    name: str
    task_type: str
    schedule_type: str
    cron_expression: str | None
    interval_ms: int | None
    timezone: str
    enabled: bool
    config: dict[str, Any] | None
    max_attempts: int | None
    retry_base_delay_ms: int | None
    time_limit_s: int | None
    owner: str | None
    labels: dict[str, str]
    start_at: datetime | None
    end_at: datetime | None
    misfire_policy: str
    catch_up_max: int | None
    catch_up_window_s: int | None
    overlap_policy: str
    jitter_s: int
    dst_policy: str


EDITABLE_FIELDS = tuple(ScheduleInput.__annotations__)
# What decides when a schedule of any kind runs, besides the fields its kind's slots depend on (``depends_on``).
ALWAYS_TIMING_FIELDS = ("schedule_type", "enabled")
# The inputs a timing is parsed from (``enabled`` aside).
TIMING_INPUT_FIELDS = (
    "schedule_type",
    "cron_expression",
    "interval_ms",
    "timezone",
    "dst_policy",
    *BOUND_FIELDS,
)
# The attribute each schedule type uses alone (cron_expression, interval_ms): sent for another type, an error.
OWN_FIELDS = {kind.own_field: schedule_type for schedule_type, kind in TIMINGS.items() if kind.own_field}
DEFAULTS = ScheduleInput(
    timezone="UTC",
    enabled=True,
    config={},
    cron_expression=None,
    interval_ms=None,
    max_attempts=None,
    retry_base_delay_ms=None,
    time_limit_s=None,
    owner=None,
    labels={},
    start_at=None,
    end_at=None,
    misfire_policy=MisfirePolicy.COALESCE,
    catch_up_max=None,
    catch_up_window_s=None,
    overlap_policy=OverlapPolicy.ALLOW,
    jitter_s=0,
    dst_policy=DstPolicy.ONCE,
)
NAME_MAX_CHARS = 100
OWNER_MAX_CHARS = 255
MAX_ATTEMPTS = 10
MAX_RETRY_BASE_DELAY_MS = 3_600_000
MAX_LABELS = 20
LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?")
LABEL_VALUE_MAX_CHARS = 63
MAX_CATCH_UP = 1000
MAX_CATCH_UP_WINDOW_S = 366 * 24 * 3600
# A run's delay is published with it: jitter stays well under RabbitMQ's consumer_timeout, like every delay.
MAX_JITTER_S = int(RETRY_MAX_DELAY.total_seconds())
# The largest config a schedule keeps, or a Run Now override carries, as compact JSON in UTF-8: every run
# carries its config through the broker, and every read of the schedule through the API.
MAX_CONFIG_BYTES = 64 * 1024


class VersionConflict(Exception):
    """An edit or delete made against versions of a schedule it is no longer at: someone changed it since the
    caller read it (optimistic concurrency). ``current_version`` is the version stored now."""

    def __init__(self, schedule_id: int, current_version: int):
        super().__init__(f"schedule {schedule_id} is at version {current_version}")
        self.schedule_id = schedule_id
        self.current_version = current_version


def _check_version(schedule: TaskSchedule, expected_versions: Collection[int] | None) -> None:
    """``VersionConflict`` unless ``schedule`` (locked by the caller, so that no other edit passes the same check
    before this one's write) is at one of ``expected_versions``; None expects any version."""
    if expected_versions is not None and schedule.version not in expected_versions:
        raise VersionConflict(schedule.id, schedule.version)


class ValidationFailed(ValueError):
    """Input that cannot be stored; ``errors`` maps each attribute (``config.<key>`` inside the config) to its
    reasons."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def schedule_errors(
    runtime: Runtime, values: Mapping[str, Any], sent: Mapping[str, Any], allow_seconds: bool = False
) -> dict[str, list[str]]:
    """Every problem with a schedule's complete ``values``, secrets already in their stored form (see
    ``_store_secrets``); ``sent`` is what the caller sent this time.

    ``allow_seconds`` admits a sixth (seconds) cron field: tests and demos use it, the API never does.
    """
    errors: dict[str, list[str]] = {}
    name = values.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["must not be blank"]
    elif len(name.strip()) > NAME_MAX_CHARS:
        errors["name"] = [f"must be at most {NAME_MAX_CHARS} characters"]

    task_type = runtime.task_types.get(values.get("task_type") or "")
    too_large = config_size_reason(values.get("config")) if "config" in sent else None
    if task_type is None:
        errors["task_type"] = [f"unknown task type {values.get('task_type')!r}"]
    if too_large:
        errors["config"] = [too_large]
    elif task_type is not None:
        for key, reasons in task_type.config_errors(values.get("config")).items():
            errors["config" if key == "_schema" else f"config.{key}"] = reasons

    for field, schedule_type in OWN_FIELDS.items():
        if schedule_type != values.get("schedule_type") and sent.get(field) is not None:
            errors[field] = [f"belongs to the {str(schedule_type)!r} schedule type; omit it or send null"]
    try:
        parse_timing(_timing_fields(values), allow_seconds)
    except InvalidTiming as exc:
        errors.setdefault(exc.field, [exc.reason])
    try:
        load_timezone(values.get("timezone"))  # type: ignore[arg-type]
    except ValueError as exc:
        errors["timezone"] = [str(exc)]
    if not isinstance(values.get("enabled"), bool):
        errors["enabled"] = ["must be true or false"]
    bounds = {
        "max_attempts": (1, MAX_ATTEMPTS),
        "retry_base_delay_ms": (0, MAX_RETRY_BASE_DELAY_MS),
        "time_limit_s": (1, runtime.settings.task_time_limit_s),  # the lease is made of the worker-wide limit
    }
    for field, (low, high) in bounds.items():
        reason = _bounds_reason(values.get(field), low, high)
        if reason:
            errors[field] = [reason]
    owner = values.get("owner")
    if owner is not None and (not isinstance(owner, str) or len(owner) > OWNER_MAX_CHARS):
        errors["owner"] = [f"must be text of at most {OWNER_MAX_CHARS} characters"]
    errors.update(label_errors(values.get("labels")))
    errors.update(bound_errors(values.get("start_at"), values.get("end_at")))
    errors.update(policy_errors(values))
    return errors


def config_size_reason(config: Any) -> str | None:
    """Why ``config`` is too large to keep (past ``MAX_CONFIG_BYTES`` as compact JSON), or None."""
    try:
        size = len(json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError, UnicodeEncodeError):
        return None  # not JSON it could keep at all: the config's own checks say why
    if size > MAX_CONFIG_BYTES:
        bound = f"{MAX_CONFIG_BYTES // 1024} KiB ({MAX_CONFIG_BYTES:,} bytes)"
        return f"must be at most {bound} as JSON, not {size:,} bytes"
    return None


def policy_errors(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Problems with a schedule's policies: known choices, a catch-up's cap and window (given exactly when the
    policy is ``catchUp``), jitter within its bounds."""
    errors: dict[str, list[str]] = {}
    for field, choices in (
        ("misfire_policy", tuple(MisfirePolicy)),
        ("overlap_policy", tuple(OverlapPolicy)),
        ("dst_policy", tuple(DstPolicy)),
    ):
        if values.get(field) not in choices:
            errors[field] = [f"must be one of {', '.join(choices)}"]
    catching_up = values.get("misfire_policy") == MisfirePolicy.CATCH_UP
    for field, high in (("catch_up_max", MAX_CATCH_UP), ("catch_up_window_s", MAX_CATCH_UP_WINDOW_S)):
        value = values.get(field)
        if catching_up and value is None:
            errors[field] = ["is required when the misfire policy is catchUp"]
        elif not catching_up and value is not None:
            errors[field] = ["applies to the catchUp misfire policy only; omit it or send null"]
        elif reason := _bounds_reason(value, 1, high):
            errors[field] = [reason]
    if reason := _bounds_reason(values.get("jitter_s"), 0, MAX_JITTER_S):
        errors["jitter_s"] = [reason]
    elif values.get("jitter_s") is None:
        errors["jitter_s"] = ["must be a whole number of seconds"]
    return errors


def _bounds_reason(value: Any, low: int, high: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a whole number"
    if not low <= value <= high:
        return f"must be from {low} to {high}"
    return None


def bound_errors(start_at: Any, end_at: Any) -> dict[str, list[str]]:
    """Problems with a schedule's bounds: instants with a zone, the end after the start. An end already past is
    allowed: the schedule is stored with no next run, and says so (``next_run_note``)."""
    errors = {}
    for field, value in (("start_at", start_at), ("end_at", end_at)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            errors[field] = ["must be a date and time with its zone (ISO 8601)"]
        elif value is not None and not EARLIEST_INSTANT <= value <= LATEST_INSTANT:
            errors[field] = [INSTANT_RANGE_REASON]
    if not errors and start_at is not None and end_at is not None and end_at <= start_at:
        errors["end_at"] = ["must be after the start"]
    return errors


def label_errors(labels: Any) -> dict[str, list[str]]:
    """Problems with a schedule's labels (``key: value`` text, as Kubernetes labels are written)."""
    if not isinstance(labels, dict):
        return {"labels": ["must be an object of text values"]}
    if len(labels) > MAX_LABELS:
        return {"labels": [f"at most {MAX_LABELS} labels"]}
    errors: dict[str, list[str]] = {}
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            errors[f"labels.{key}"] = [
                "a key is 1 to 63 letters, digits, '-', '_', '.' or '/', starting and ending alphanumeric"
            ]
        elif not isinstance(value, str) or len(value) > LABEL_VALUE_MAX_CHARS:
            errors[f"labels.{key}"] = [f"must be text of at most {LABEL_VALUE_MAX_CHARS} characters"]
    return errors


def _store_secrets(
    runtime: Runtime, values: dict[str, Any], sent: Mapping[str, Any], stored_config: Mapping[str, Any]
) -> dict[str, list[str]]:
    """Turn the secret fields of a config just sent into their stored form (encrypted, or a reference), in
    ``values``; errors by ``config.<key>``. A config not sent keeps its stored secrets as they are."""
    task_type = runtime.task_types.get(values.get("task_type") or "")
    config = values.get("config")
    if "config" not in sent or task_type is None or not isinstance(config, dict):
        return {}
    errors: dict[str, list[str]] = {}
    stored = dict(config)
    for key in task_type.secret_keys & set(config):
        if config[key] in (None, ""):
            continue
        try:
            stored[key] = stored_secret(runtime.settings, config[key], stored_config.get(key))
        except SecretError as exc:
            errors[f"config.{key}"] = [str(exc)]
    values["config"] = stored
    return errors


def _timing_fields(values: Mapping[str, Any]) -> TimingFields:
    return TimingFields(
        values.get("schedule_type") or "",
        values.get("cron_expression"),
        values.get("interval_ms"),
        values.get("timezone") or "",
        values.get("start_at"),
        values.get("end_at"),
        values.get("dst_policy") or DstPolicy.ONCE,
    )


def _values_of(schedule: TaskSchedule) -> dict[str, Any]:
    return {field: getattr(schedule, field) for field in EDITABLE_FIELDS}


def _merge(current: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**current, **sent}
    for field, schedule_type in OWN_FIELDS.items():
        if merged.get("schedule_type") != schedule_type and field not in sent:
            merged[field] = None  # switching type drops the old type's timing field
    if isinstance(merged.get("name"), str):
        merged["name"] = merged["name"].strip()
    if isinstance(merged.get("cron_expression"), str):
        merged["cron_expression"] = " ".join(merged["cron_expression"].split())
    for bound in BOUND_FIELDS:  # to the wire's precision, so that a bound sent back as shown changes nothing
        if isinstance(merged.get(bound), datetime):
            merged[bound] = merged[bound].replace(microsecond=merged[bound].microsecond // 1000 * 1000)
    return merged


def with_defaults(sent: Mapping[str, Any]) -> dict[str, Any]:
    """A new schedule's complete values: what was sent, tidied, over the defaults."""
    return _merge(DEFAULTS, sent)


def checked_values(
    runtime: Runtime,
    current: Mapping[str, Any],
    sent: Mapping[str, Any],
    stored_config: Mapping[str, Any],
    allow_seconds: bool = False,
    tolerated: Collection[str] = (),
) -> dict[str, Any]:
    """``sent`` merged over ``current`` (the defaults, for a new schedule), its secret fields in their stored
    form (``stored_config``: what a secret sent back as ``{"set": true}`` keeps); ``ValidationFailed`` naming
    every problem but those of the ``tolerated`` fields. Stores nothing: what create and update check, and what
    ``cronwork apply`` checks of every entry before it applies any."""
    values = _merge(current, sent)
    errors = _store_secrets(runtime, values, sent, stored_config) or schedule_errors(
        runtime, values, sent, allow_seconds
    )
    errors = {field: reasons for field, reasons in errors.items() if field not in tolerated}
    if errors:
        raise ValidationFailed(errors)
    return values


def _apply(schedule: TaskSchedule, values: Mapping[str, Any]) -> None:
    for field in EDITABLE_FIELDS:
        setattr(schedule, field, values[field])


def create_schedule(
    runtime: Runtime,
    session: Session,
    sent: ScheduleInput,
    actor: Actor = PROCESS,
    allow_seconds: bool = False,
    source: tuple[str, str] | None = None,
) -> TaskSchedule:
    """Validate, store and arm a new schedule in ``session``, created by ``actor`` (audited); its first tick is
    published after the commit. ``source``: the (source, key) of a schedule kept as code (``cronwork apply``)."""
    values = checked_values(runtime, DEFAULTS, sent, {}, allow_seconds)
    now = utcnow()
    with session.begin():
        schedule = TaskSchedule(created_by=actor.name, created_at=now, updated_at=now, version=1)
        schedule.source, schedule.source_key = source or (None, None)
        _apply(schedule, values)
        arm(schedule, now)
        session.add(schedule)
        session.flush()  # its id, for the audit event
        changes = field_changes(dict.fromkeys(EDITABLE_FIELDS), values, _secret_keys(runtime, schedule))
        record(session, actor, AuditAction.CREATE, schedule, changes)
    publish_tick(runtime, schedule.id)
    return schedule


def update_schedule(
    runtime: Runtime,
    session: Session,
    schedule_id: int,
    sent: ScheduleInput,
    allow_seconds: bool = False,
    expected_versions: Collection[int] | None = None,
    actor: Actor = PROCESS,
) -> TaskSchedule | None:
    """Apply a partial update in ``session``. A timing change (see ``_changes_timing``) re-arms the schedule with
    a new key and publishes its tick after the commit; any other edit leaves the armed tick as it is. Returns the
    schedule, or None when it does not exist.

    ``expected_versions``: the edit applies only to a schedule at one of these versions (as its editor read it),
    checked under the row lock, so of two edits made against the same version exactly one applies; the other,
    like any edit against an older version, is a ``VersionConflict`` that changes nothing. None: any version.

    Audited as ``actor``'s: an enable or a disable when that is all it changes, else an update with each field
    it changed; an edit that changes nothing leaves no event.
    """
    now = utcnow()
    with session.begin():
        schedule = lock_schedule(session, schedule_id)
        if schedule is None:
            return None
        _check_version(schedule, expected_versions)
        # A broken schedule (its stored timing refused by the libraries installed now) may still be paused, renamed
        # or deleted; only enabling it again, or editing its timing, asks for a timing that works.
        keep_broken_timing = (
            broken_reason(schedule) is not None
            and not set(sent) & set(TIMING_INPUT_FIELDS)
            and not (sent.get("enabled") and not schedule.enabled)
        )
        values = checked_values(
            runtime,
            _values_of(schedule),
            sent,
            schedule.config,
            allow_seconds,
            tolerated=TIMING_INPUT_FIELDS if keep_broken_timing else (),
        )
        changes = field_changes(_values_of(schedule), values, _secret_keys(runtime, schedule))
        if changes:
            record(session, actor, _update_action(changes), schedule, changes)
        timing_changed = _changes_timing(schedule, values)
        only_toggled = timing_changed and not _changes_timing(
            schedule, {**values, "enabled": schedule.enabled}
        )
        claimed_due_slot = (
            timing_changed and schedule.enabled and values["enabled"] and _is_due(schedule, now)
        )
        resume_from = None
        if claimed_due_slot:
            # A slot already due under the old timing, its tick still on the way: it runs, rather than being
            # replaced unrecorded. The edit takes effect from the next slot.
            _claim_due_slot(runtime, session, schedule, now)
        elif schedule.enabled and not values["enabled"]:
            # Paused: its due slot, if any, is recorded skipped; a resume goes on from the chain's next slot.
            following = record_unclaimed_slots(session, schedule, now, "disabled")
            schedule.paused_slot = following if only_toggled else None
        elif not schedule.enabled and values["enabled"] and only_toggled:
            resume_from = schedule.paused_slot
        elif timing_changed:
            schedule.paused_slot = None  # a new timing's chain starts afresh when it is enabled
        _apply(schedule, values)
        schedule.updated_at = now
        schedule.version += 1
        if timing_changed:
            arm(schedule, now, resume_from)
        # An edit that leaves the timing alone leaves the chain's tick alone too: it is still current.
    if claimed_due_slot:
        publish_outboxes(
            runtime,
            f"schedule {schedule_id}: due slot and next tick",
            run_candidates=undispatched_runs_of([schedule_id]),
            tick_schedule_ids=[schedule_id],
        )
    elif timing_changed:
        publish_tick(runtime, schedule_id)
    return schedule


def _secret_keys(runtime: Runtime, schedule: TaskSchedule) -> frozenset[str]:
    task_type = runtime.task_types.get(schedule.task_type)
    return frozenset(task_type.secret_keys) if task_type else frozenset()


def _update_action(changes: Mapping[str, Any]) -> AuditAction:
    if set(changes) == {"enabled"}:
        return AuditAction.ENABLE if changes["enabled"]["after"] else AuditAction.DISABLE
    return AuditAction.UPDATE


def _changes_timing(schedule: TaskSchedule, values: Mapping[str, Any]) -> bool:
    """Whether ``values`` change when ``schedule`` runs: its type, whether it is enabled, or a field its kind's
    slots depend on (a cron's timezone does; an interval's does not, so editing it keeps the interval's anchor)."""
    fields = (*ALWAYS_TIMING_FIELDS, *TIMINGS[values["schedule_type"]].depends_on)
    return any(values[field] != getattr(schedule, field) for field in fields)


def _claim_due_slot(runtime: Runtime, session: Session, schedule: TaskSchedule, now: datetime) -> None:
    """Claim the schedule's due slot as its tick would have (the caller holds the row lock)."""
    assert schedule.next_run_at is not None and schedule.dedupe_key is not None
    slot = TickSlot(schedule.id, schedule.next_run_at, schedule.dedupe_key)
    rows = {schedule.id: ArmedRow.of(schedule)}
    claim_locked_slots(session, rows, [ClaimRequest(0, slot)], now, runtime.misfire_grace)
    session.refresh(schedule)


def _check_override(runtime: Runtime, schedule: TaskSchedule, override: dict[str, Any]) -> None:
    task_type = runtime.task_types.get(schedule.task_type)
    if task_type is None:
        raise ValidationFailed({"config": [f"task type {schedule.task_type!r} is not installed"]})
    too_large = config_size_reason(override)
    if too_large:
        raise ValidationFailed({"config": [too_large]})
    errors = {
        f"config.{key}": ["is a secret: set it on the schedule, not for one run"]
        for key in task_type.secret_keys & set(override)
    }
    if not errors:
        merged = {**schedule.config, **override}
        errors = {
            "config" if key == "_schema" else f"config.{key}": reasons
            for key, reasons in task_type.config_errors(merged).items()
        }
    if errors:
        raise ValidationFailed(errors)


def _is_due(schedule: TaskSchedule, now: datetime) -> bool:
    return schedule.next_run_at is not None and schedule.next_run_at <= now


# Overdue: enabled, and its armed slot older than the pump's grace period (``Runtime.grace``), past which the pump
# assumes the slot's tick was lost and re-sends it. Still overdue after that, nothing is running it: the workers
# or the beat are down. One rule, in both forms: for one schedule (the API's ``overdue``) and as SQL (the
# ``cronwork_schedules_overdue`` gauge), each from the same cutoff.


def overdue_cutoff(now: datetime, grace: timedelta) -> datetime:
    """A schedule whose armed slot is before this instant is overdue (if enabled)."""
    return now - grace


def is_overdue(schedule: TaskSchedule, now: datetime, grace: timedelta) -> bool:
    """Whether ``schedule`` is overdue (see ``overdue_cutoff``)."""
    return (
        schedule.enabled
        and schedule.next_run_at is not None
        and schedule.next_run_at < overdue_cutoff(now, grace)
    )


def overdue_clause(now: datetime, grace: timedelta) -> ColumnElement[bool]:
    """``is_overdue`` as a condition on ``TaskSchedule`` rows (a NULL next_run_at compares as not overdue)."""
    return and_(TaskSchedule.enabled, TaskSchedule.next_run_at < overdue_cutoff(now, grace))


def next_run_note(schedule: TaskSchedule, now: datetime) -> str | None:
    """Why a schedule has no next run, in words; None when it has one. Its timing's reason comes first (a manual
    schedule runs only when asked, and one past its end never runs again, enabled or not), then being disabled."""
    if schedule.next_run_at is not None:
        return None
    broken = broken_reason(schedule)
    if broken is not None:
        return f"broken: {broken}"
    reason = timing_of(schedule).why_no_slot(now)
    if reason is not None:
        return reason
    if not schedule.enabled:
        return "disabled: starts no scheduled run until it is enabled"
    return "no slot armed"


def broken_reason(schedule: TaskSchedule) -> str | None:
    """Why a stored schedule's timing gives no slots (its cron or timezone refused by the libraries installed
    now): as its claim recorded it, or as its timing says when asked; None when it works."""
    if schedule.broken_reason is not None:
        return schedule.broken_reason
    try:
        timing_of(schedule)
    except (InvalidTiming, ValueError) as exc:
        return f"its timing no longer gives slots ({exc}): edit its timing to resume it"
    return None


def delete_schedule(
    session: Session,
    schedule_id: int,
    expected_versions: Collection[int] | None = None,
    actor: Actor = PROCESS,
) -> bool:
    """Delete a schedule, its row locked as a claim locks it (so the two never deadlock); its history stays,
    keeping its id and name, and any tick in flight finds no row. A slot that fell due unclaimed is recorded.
    ``expected_versions`` as for ``update_schedule``: at another version, ``VersionConflict`` and nothing is
    deleted. Audited as ``actor``'s, with the version deleted."""
    with session.begin():
        schedule = lock_schedule(session, schedule_id)
        if schedule is None:
            return False
        _check_version(schedule, expected_versions)
        record(session, actor, AuditAction.DELETE, schedule, detail={"version": schedule.version})
        record_unclaimed_slots(session, schedule, utcnow(), "deleted")
        session.execute(delete(ScheduleHealth).where(ScheduleHealth.schedule_id == schedule_id))
        session.delete(schedule)
    return True


def run_now(
    runtime: Runtime,
    session: Session,
    schedule_id: int,
    config_override: dict[str, Any] | None = None,
    actor: Actor = PROCESS,
) -> TaskRunHistory | None:
    """Queue a manual run, enabled or not; the chain of slots is untouched. ``config_override`` is laid over
    the schedule's config for this run only (recorded on it; secret fields cannot be overridden). The run
    names ``actor`` as who asked for it, and the audit trail records it. None when no such schedule."""
    with session.begin():
        schedule = session.get(TaskSchedule, schedule_id)
        if schedule is None:
            return None
        if config_override:
            _check_override(runtime, schedule, config_override)
        run = queue_manual_run(session, schedule, utcnow(), config_override or None)
        run.requested_by = actor.name
        detail = {"runId": run.id, "configOverride": sorted(config_override or {})}
        record(session, actor, AuditAction.RUN_NOW, schedule, detail=detail)
    dispatch_runs(runtime, f"run {run.id}", select(TaskRunHistory.id).where(TaskRunHistory.id == run.id))
    return run


# --- Queries ----------------------------------------------------------------------------------------------


# A list's total is counted exactly up to this many rows; past it, PostgreSQL's planner estimates it. Counting
# every row of a ten-million-run history on every request would cost more than the page itself.
EXACT_COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Total:
    """How many rows a list query selects, and whether that is the planner's estimate."""

    rows: int
    is_estimate: bool = False


def count_rows(session: Session, query: Select[Any]) -> Total:
    """The rows ``query`` selects: exact up to ``EXACT_COUNT_LIMIT`` (a count that stops there), above it the
    planner's estimate on PostgreSQL, never less than the limit. SQLite (the embedded mode) counts exactly."""
    if not is_postgresql(session):
        return Total(session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    capped = (
        query.order_by(None)
        .with_only_columns(literal(1), maintain_column_froms=True)
        .limit(EXACT_COUNT_LIMIT + 1)
        .subquery()
    )
    exact = session.scalar(select(func.count()).select_from(capped)) or 0
    if exact <= EXACT_COUNT_LIMIT:
        return Total(exact)
    return Total(max(EXACT_COUNT_LIMIT + 1, _planner_estimate(session, query)), is_estimate=True)


def _planner_estimate(session: Session, query: Select[Any]) -> int:
    sql = query.order_by(None).compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    [plan] = session.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()  # psycopg decodes the JSON
    return int(plan["Plan"]["Plan Rows"])


# The latest start of any run of a schedule: its newest run that started (a skipped slot never did), an
# index probe per schedule.
LAST_RUN_AT = (
    select(TaskRunHistory.started_at)
    .where(
        TaskRunHistory.schedule_id == TaskSchedule.id,
        TaskRunHistory.started_at.is_not(None),
        TaskRunHistory.status != RunStatus.SKIPPED,
    )
    .order_by(TaskRunHistory.id.desc())
    .limit(1)
    .scalar_subquery()
)


# The status of a schedule's newest run, whatever its state (queued, running, finished).
LAST_RUN_STATUS = (
    select(TaskRunHistory.status)
    .where(TaskRunHistory.schedule_id == TaskSchedule.id)
    .order_by(TaskRunHistory.id.desc())
    .limit(1)
    .scalar_subquery()
)


def with_last_run(query: Select[Any]) -> Select[Any]:
    """``query`` (of schedules) loading each one's ``last_run_at`` and ``last_run_status`` from its history."""
    return query.options(
        with_expression(TaskSchedule.last_run_at, LAST_RUN_AT),
        with_expression(TaskSchedule.last_run_status, LAST_RUN_STATUS),
    )


def with_health(query: Select[Any]) -> Select[Any]:
    """``query`` (of schedules) loading each one's ``failure_streak``, ``last_error`` and ``last_error_at`` from
    its ``schedule_health`` row (an outer join on its key: one row or none per schedule)."""
    return query.outerjoin(ScheduleHealth, ScheduleHealth.schedule_id == TaskSchedule.id).options(
        with_expression(TaskSchedule.failure_streak, func.coalesce(ScheduleHealth.failure_streak, 0)),
        with_expression(TaskSchedule.last_error, ScheduleHealth.last_error),
        with_expression(TaskSchedule.last_error_at, ScheduleHealth.last_error_at),
    )


def get_schedule(session: Session, schedule_id: int) -> TaskSchedule | None:
    """One schedule with its last run and its health, or None."""
    query = with_health(with_last_run(select(TaskSchedule).where(TaskSchedule.id == schedule_id)))
    # populate_existing: the row may already be in the session, loaded by an update without its last run.
    return session.scalars(query.execution_options(populate_existing=True)).first()


def schedules_query(
    enabled: bool | None = None,
    task_type: str | None = None,
    name_contains: str | None = None,
    after_id: int | None = None,
    owner: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Select[Any]:
    """User schedules oldest first, filtered by each argument given (``labels``: every one of these); ``after_id``
    continues a listing after that schedule (keyset paging: as fast deep in a million schedules as on the first
    page)."""
    query = with_health(with_last_run(select(TaskSchedule).order_by(TaskSchedule.id)))
    if after_id is not None:
        query = query.where(TaskSchedule.id > after_id)
    if enabled is not None:
        query = query.where(TaskSchedule.enabled == enabled)
    if task_type:
        query = query.where(TaskSchedule.task_type == task_type)
    if name_contains:
        escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(TaskSchedule.name.ilike(f"%{escaped}%", escape="\\"))
    if owner:
        query = query.where(TaskSchedule.owner == owner)
    for key, value in (labels or {}).items():
        query = query.where(TaskSchedule.labels[key].as_string() == value)
    return query


def set_enabled_where(
    runtime: Runtime, session: Session, query: Select[Any], enabled: bool, actor: Actor = PROCESS
) -> list[int]:
    """Pause (``enabled`` false) or resume every schedule ``query`` selects that is not so already, each as
    its own edit by ``actor`` (re-armed, its tick published, audited); the ids changed."""
    matching = query.with_only_columns(TaskSchedule.id).where(TaskSchedule.enabled != enabled).order_by(None)
    ids = list(session.scalars(matching))
    session.rollback()  # the read's transaction: each edit takes its own
    changed = []
    for schedule_id in ids:
        if update_schedule(runtime, session, schedule_id, ScheduleInput(enabled=enabled), actor=actor):
            changed.append(schedule_id)
    return changed


def history_query(
    schedule_id: int | None = None,
    status: str | None = None,
    triggered_by: str | None = None,
    system_task: str | None = None,
    before_id: int | None = None,
    from_: datetime | None = None,
    to: datetime | None = None,
    include_system: bool = True,
) -> Select[Any]:
    """Runs newest first; ``before_id`` continues a listing after (older than) that run: keyset paging, as fast
    deep in ten million runs as on the first page, where an offset reads every row it skips.

    ``from_`` and ``to`` (both included) bound when an entry was queued: every entry has a ``queued_at`` (a
    missed or skipped one, a run not yet started, too) and it is indexed, where ``started_at`` is null until a run
    starts and ``scheduled_for`` for a Run Now. ``include_system`` false leaves out the system crons' runs."""
    query = select(TaskRunHistory).order_by(TaskRunHistory.id.desc())
    if from_ is not None:
        query = query.where(TaskRunHistory.queued_at >= from_)
    if to is not None:
        query = query.where(TaskRunHistory.queued_at <= to)
    if not include_system:
        query = query.where(TaskRunHistory.system_task.is_(None))
    if before_id is not None:
        query = query.where(TaskRunHistory.id < before_id)
    if schedule_id is not None:
        query = query.where(TaskRunHistory.schedule_id == schedule_id)
    if status:
        query = query.where(TaskRunHistory.status == status)
    if triggered_by:
        query = query.where(TaskRunHistory.triggered_by == triggered_by)
    if system_task:
        query = query.where(TaskRunHistory.system_task == system_task)
    return query
