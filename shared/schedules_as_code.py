"""Schedules kept as code: the schedules of a file, each under a stable key, made so in the database in one go.

A file is one *source* (its name) and a list of entries, each a stable ``key`` and a schedule's values.
``services/schedules_file.py`` reads the file's YAML and wire names into ``DesiredSchedule``s keyed by attribute,
as the API's schema reads a body; this module then:

- ``plan_changes``: the action for each key against what the database holds for the source (create, update,
  unchanged, and delete with ``prune``) with the fields that change, and every problem of every entry, found
  by the same rules as the API's (``shared.schedules``) before anything is stored;
- ``apply_plan``: only for a plan without errors: creates through ``create_schedule`` (with the source and the
  key), updates through ``update_schedule`` with only the fields that change (so a timing change re-arms the
  schedule, any other edit leaves its tick alone, and an unchanged entry is not touched: its version and
  dedupe key stay), deletes through ``delete_schedule``.

An entry states the whole schedule: a field it leaves out takes its default (``schedules.DEFAULTS``), so an edit
made in the page to a schedule kept as code is undone by the next apply. ``holding_source`` runs one apply of a
source at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared import schedules
from shared.audit import Actor
from shared.models import TaskSchedule
from shared.runtime import Runtime
from shared.schedules import (
    DEFAULTS,
    EDITABLE_FIELDS,
    ScheduleInput,
    ValidationFailed,
    VersionConflict,
    create_schedule,
    delete_schedule,
    update_schedule,
)
from shared.secrets import SHOWN_WHEN_SET, reveal_secrets, shown_config
from shared.task_types import TaskFailed, TaskType

SOURCE_MAX_CHARS = 100  # task_schedules.source
KEY_MAX_CHARS = 200  # task_schedules.source_key
# Fields every entry names, and every export writes; the others are written only when not their default.
REQUIRED_FIELDS = ("name", "task_type", "schedule_type")
PLAIN_SECRET_WARNING = (
    'a secret written in the file: it is stored encrypted, but prefer {"env": "NAME"} or {"file": "/path"}, '
    "so that the file holds no secret"
)
# The class id of the advisory locks held by ``holding_source`` (pg_advisory_lock's two-integer form, whose
# keys never meet the one-bigint form's).
APPLY_LOCK_CLASS = 0x0C0A


def created_by(source: str) -> str:
    """Who the schedules a source creates are created by, and who its changes are audited as."""
    return f"apply:{source}"


def source_errors(source: Any) -> list[str]:
    """What is wrong with a source's name (empty when nothing)."""
    if not isinstance(source, str) or not source.strip() or source != source.strip():
        return ["must be text, not blank, without spaces around it"]
    if len(source) > SOURCE_MAX_CHARS:
        return [f"must be at most {SOURCE_MAX_CHARS} characters"]
    return []


def key_errors(key: Any) -> list[str]:
    """What is wrong with an entry's key (empty when nothing)."""
    if not isinstance(key, str) or not key.strip() or key != key.strip():
        return ["must be text, not blank, without spaces around it (quote a number)"]
    if len(key) > KEY_MAX_CHARS:
        return [f"must be at most {KEY_MAX_CHARS} characters"]
    return []


@dataclass(frozen=True)
class DesiredSchedule:
    """One entry of a file: its stable ``key`` and its values by attribute (a field left out takes its default).

    ``values`` is None when the entry's fields could not be read (the reader says why): it is planned as
    ``INVALID``, and its schedule is not pruned.
    """

    key: str
    values: ScheduleInput | None


class Action(StrEnum):
    """What an apply does to one key."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"  # with prune: a schedule of the source whose key the file no longer has
    KEEP = "keep"  # without prune: such a schedule, left as it is
    INVALID = "invalid"  # an entry whose fields could not be read


@dataclass(frozen=True)
class FieldChange:
    """One field of a planned change, by attribute (``config.<key>`` inside the config): its value before (None
    for a create) and after (None for a delete). A ``secret`` field's values are never to be shown."""

    field: str
    before: Any
    after: Any
    secret: bool = False


@dataclass(frozen=True)
class PlannedChange:
    """What an apply does to one key: the action, the schedule's id (None before a create), the fields that
    change (for a create, every field the entry sets), what ``create_schedule``/``update_schedule`` is sent, for
    a schedule the file no longer has, its name, and the version of the schedule the plan read (the apply
    changes or deletes it only at that version: an edit made since, through the API, is never overwritten)."""

    key: str
    action: Action
    schedule_id: int | None = None
    changes: tuple[FieldChange, ...] = ()
    sent: ScheduleInput = field(default_factory=ScheduleInput)
    name: str | None = None  # the stored schedule's name, for a schedule the file no longer has
    version: int | None = None


@dataclass
class Plan:
    """A source's planned changes in file order (deletions and kept strays last), and the problems found: by
    entry key, then by attribute (``errors`` stop the apply; ``warnings`` do not)."""

    source: str
    changes: list[PlannedChange]
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    warnings: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        """Whether it may be applied."""
        return not self.errors and all(change.action != Action.INVALID for change in self.changes)

    @property
    def changes_anything(self) -> bool:
        """Whether applying it would write anything."""
        return any(change.action in WRITING_ACTIONS for change in self.changes)

    def count(self, action: Action) -> int:
        """How many keys get ``action``."""
        return sum(1 for change in self.changes if change.action == action)


WRITING_ACTIONS = (Action.CREATE, Action.UPDATE, Action.DELETE)


def source_schedules(session: Session, source: str | None = None) -> list[TaskSchedule]:
    """The schedules of ``source`` (every schedule when None), oldest first: an applied file's order."""
    query = select(TaskSchedule).order_by(TaskSchedule.id)
    if source is not None:
        query = query.where(TaskSchedule.source == source)
    return list(session.scalars(query))


# --- Plan ---------------------------------------------------------------------------------------------------


def plan_changes(
    runtime: Runtime, session: Session, source: str, entries: Sequence[DesiredSchedule], prune: bool
) -> Plan:
    """What applying ``entries`` as ``source`` would do, each create and update checked as the API would check
    it (nothing is stored). ``prune``: delete the source's schedules whose key no entry has."""
    keys = [entry.key for entry in entries]
    if len(set(keys)) != len(keys):
        raise ValueError("an entry's key must be unique in its file")
    stored = {schedule.source_key: schedule for schedule in source_schedules(session, source)}
    plan = Plan(source, [])
    for entry in entries:
        if entry.values is None:
            plan.changes.append(PlannedChange(entry.key, Action.INVALID))
            continue
        current = stored.get(entry.key)
        change = (
            _planned_create(runtime, entry) if current is None else _planned_update(runtime, entry, current)
        )
        plan.changes.append(change)
        warnings = _plain_secrets(runtime.task_types.get(entry.values.get("task_type", "")), entry.values)
        if warnings:
            plan.warnings[entry.key] = warnings
        if change.action in WRITING_ACTIONS:
            errors = _input_errors(runtime, entry.values, current.config if current else {})
            if errors:
                plan.errors[entry.key] = errors
    in_file = {entry.key for entry in entries}
    for key, schedule in stored.items():
        if key not in in_file:
            action = Action.DELETE if prune else Action.KEEP
            plan.changes.append(
                PlannedChange(str(key), action, schedule.id, name=schedule.name, version=schedule.version)
            )
    session.rollback()  # the reads' transaction: each write takes its own
    return plan


def _desired_values(values: ScheduleInput) -> dict[str, Any]:
    """An entry's complete values, as ``create_schedule`` would store them (defaults filled, text tidied)."""
    return schedules.with_defaults(values)


def _planned_create(runtime: Runtime, entry: DesiredSchedule) -> PlannedChange:
    assert entry.values is not None
    desired = _desired_values(entry.values)
    changes = [
        FieldChange(name, None, desired[name])
        for name in EDITABLE_FIELDS
        if name != "config" and (name in REQUIRED_FIELDS or desired[name] != DEFAULTS.get(name))
    ]
    task_type = runtime.task_types.get(desired["task_type"])
    secret_keys = task_type.secret_keys if task_type else frozenset()
    changes += [
        FieldChange(f"config.{key}", None, value, key in secret_keys)
        for key, value in (desired["config"] or {}).items()
    ]
    return PlannedChange(entry.key, Action.CREATE, None, tuple(changes), entry.values)


def _planned_update(runtime: Runtime, entry: DesiredSchedule, current: TaskSchedule) -> PlannedChange:
    """The fields whose desired value differs from the stored one, and an update that sends only those."""
    assert entry.values is not None
    desired = _desired_values(entry.values)
    changes: list[FieldChange] = []
    sent: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        if name == "config":
            continue
        if desired[name] != getattr(current, name):
            changes.append(FieldChange(name, getattr(current, name), desired[name]))
            sent[name] = desired[name]
    task_type = runtime.task_types.get(desired["task_type"])
    config_changes, config_sent = _config_changes(runtime, task_type, current.config, desired["config"])
    if config_changes:
        changes += config_changes
        sent["config"] = config_sent
    action = Action.UPDATE if changes else Action.UNCHANGED
    return PlannedChange(
        entry.key, action, current.id, tuple(changes), cast(ScheduleInput, sent), version=current.version
    )


def _config_changes(
    runtime: Runtime, task_type: TaskType | None, stored: Mapping[str, Any], desired: Mapping[str, Any] | None
) -> tuple[list[FieldChange], dict[str, Any]]:
    """The config keys that change, and the config to send if any does: the desired one, where a secret that
    is already stored as the file says is sent as ``{"set": true}`` (kept as stored, not encrypted again)."""
    desired = desired or {}
    secret_keys = task_type.secret_keys if task_type else frozenset()
    changes: list[FieldChange] = []
    sent: dict[str, Any] = {}
    for key in [*desired, *(key for key in stored if key not in desired)]:
        is_secret = key in secret_keys
        if key not in desired:
            changes.append(FieldChange(f"config.{key}", stored[key], None, is_secret))
            continue
        wanted, has = desired[key], stored.get(key)
        if is_secret and key in stored and _is_stored_as(runtime, task_type, key, wanted, has):
            sent[key] = SHOWN_WHEN_SET if has not in (None, "") else has
            continue
        sent[key] = wanted
        if key not in stored or wanted != has:
            changes.append(FieldChange(f"config.{key}", has, wanted, is_secret))
    return changes, sent


def _is_stored_as(runtime: Runtime, task_type: TaskType | None, key: str, wanted: Any, stored: Any) -> bool:
    """Whether a secret field is stored as ``wanted`` says: kept (``{"set": true}``), the same reference, or an
    encrypted value that decrypts to the same text."""
    if wanted == SHOWN_WHEN_SET:
        return stored not in (None, "")
    if wanted in (None, ""):
        return bool(stored == wanted)
    if isinstance(wanted, dict):  # a reference, stored trimmed
        return bool(
            stored
            == {kind: where.strip() if isinstance(where, str) else where for kind, where in wanted.items()}
        )
    if not (isinstance(stored, dict) and "encrypted" in stored and task_type is not None):
        return False
    try:
        return bool(reveal_secrets(runtime.settings, task_type, {key: stored})[key] == wanted)
    except TaskFailed:  # no key decrypts it: store what the file says
        return False


def _input_errors(
    runtime: Runtime, values: ScheduleInput, stored_config: Mapping[str, Any]
) -> dict[str, list[str]]:
    """The checks ``create_schedule`` makes, of an entry's whole schedule (an update sends only what changes,
    but the file states all of it, and must be valid as a whole), without storing anything: every entry is
    checked before any is applied. ``stored_config``: what a secret sent as ``{"set": true}`` keeps."""
    try:
        schedules.checked_values(runtime, DEFAULTS, values, stored_config)
    except ValidationFailed as exc:
        return exc.errors
    return {}


def _plain_secrets(task_type: TaskType | None, values: ScheduleInput) -> dict[str, list[str]]:
    config = values.get("config") or {}
    secret_keys = task_type.secret_keys if task_type else frozenset()
    return {
        f"config.{key}": [PLAIN_SECRET_WARNING]
        for key in sorted(secret_keys & set(config))
        if isinstance(config[key], str) and config[key]
    }


# --- Apply --------------------------------------------------------------------------------------------------


class ApplyFailed(RuntimeError):
    """An apply stopped at ``key`` (a schedule changed between the plan and the apply); the changes before it
    were applied. ``errors``: the reasons by attribute."""

    def __init__(self, key: str, errors: dict[str, list[str]], applied: int):
        super().__init__(f"{key}: {errors}")
        self.key, self.errors, self.applied = key, errors, applied


def apply_plan(runtime: Runtime, session: Session, plan: Plan) -> int:
    """Make the database what a valid ``plan`` says, a transaction per schedule; the number of schedules written.
    Raises ``ApplyFailed`` if a change is refused (its schedule was edited since the plan)."""
    if not plan.is_valid:
        raise ValueError("an invalid plan is never applied")
    applied = 0
    for change in plan.changes:
        if change.action not in WRITING_ACTIONS:
            continue
        try:
            found = _apply_change(runtime, session, plan.source, change)
        except ValidationFailed as exc:
            raise ApplyFailed(change.key, exc.errors, applied) from None
        except VersionConflict as exc:
            edited = f"its schedule was edited since the plan (version {change.version}, now {exc.current_version})"
            raise ApplyFailed(change.key, {"key": [edited]}, applied) from None
        if not found:
            raise ApplyFailed(change.key, {"key": ["its schedule was deleted since the plan"]}, applied)
        applied += 1
    return applied


def _apply_change(runtime: Runtime, session: Session, source: str, change: PlannedChange) -> bool:
    """Make one change; False when the schedule it updates is gone (one already deleted is deleted)."""
    actor = Actor(created_by(source))
    if change.action == Action.CREATE:
        create_schedule(runtime, session, change.sent, actor, source=(source, change.key))
        return True
    assert change.schedule_id is not None
    expected = None if change.version is None else [change.version]
    if change.action == Action.UPDATE:
        updated = update_schedule(
            runtime, session, change.schedule_id, change.sent, expected_versions=expected, actor=actor
        )
        return updated is not None
    delete_schedule(session, change.schedule_id, expected, actor=actor)
    return True


@contextmanager
def holding_source(runtime: Runtime, source: str) -> Iterator[None]:
    """Hold ``source`` for one apply at a time (on PostgreSQL; the embedded SQLite has one writer anyway), so that
    two applies of one source never plan against each other's unfinished changes."""
    if not runtime.on_postgresql:
        yield
        return
    lock = {"class": APPLY_LOCK_CLASS, "source": source}
    with runtime.single_statements.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:class, hashtext(:source))"), lock)
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:class, hashtext(:source))"), lock)


# --- Export -------------------------------------------------------------------------------------------------


def exported_values(runtime: Runtime, schedule: TaskSchedule) -> ScheduleInput:
    """A stored schedule as an entry states it: the required fields, every other field that is not its default,
    and the config with each secret as the API shows it (its reference, or ``{"set": true}``), never its value.
    Applied back, it changes nothing."""
    values: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        value = getattr(schedule, name)
        if name in REQUIRED_FIELDS or value != DEFAULTS.get(name):
            values[name] = value
    if "config" in values:
        task_type = runtime.task_types.get(schedule.task_type)
        values["config"] = shown_config(task_type, schedule.config)
    return cast(ScheduleInput, values)


def export_key(schedule: TaskSchedule) -> str:
    """A schedule's key in an export: its own, or for a schedule kept in no file, one made of its name and id."""
    if schedule.source_key:
        return schedule.source_key
    slug = re.sub(r"[^a-z0-9]+", "-", schedule.name.lower()).strip("-")[:60].rstrip("-")
    return f"{slug or 'schedule'}-{schedule.id}"
