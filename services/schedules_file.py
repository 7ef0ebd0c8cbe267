"""The schedules file of ``cronwork apply`` and ``cronwork export``: YAML, a ``source`` and a list of
``schedules``, each a stable ``key`` and the REST API's wire fields, read and written through the API's own
schema (``TaskInSchema``, the one map between wire names and attributes), so that a file is checked, and its
errors are worded, as a request body is. What an apply does with the entries is ``shared.schedules_as_code``'s.

    source: reports            # optional: the file's name without its extension, or --source
    schedules:
      - key: nightly-export    # stable: renaming the schedule keeps it the same schedule
        name: Nightly export
        taskType: data_export
        scheduleType: cron
        cronExpression: "0 2 * * *"
        config: {format: csv}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import yaml
from marshmallow import ValidationError

from services.api.schemas import TaskInSchema
from shared.models import TaskSchedule
from shared.runtime import Runtime
from shared.schedules import ScheduleInput
from shared.schedules_as_code import (
    Action,
    DesiredSchedule,
    FieldChange,
    Plan,
    export_key,
    exported_values,
    key_errors,
    source_errors,
)
from shared.secrets import REFERENCE_KINDS
from shared.timing import instant_text

FILE_FIELDS = ("source", "schedules")
SCHEMA = TaskInSchema()
Errors = dict[str, list[str]]  # reasons by path: "source", "schedules[nightly-export].cronExpression"


@dataclass
class SchedulesFile:
    """A file as read: its source (None when it cannot be told), its entries, and what is wrong with it."""

    source: str | None
    entries: list[DesiredSchedule] = field(default_factory=list)
    errors: Errors = field(default_factory=dict)


def entry_path(label: str | int) -> str:
    """How messages name an entry: by its key, or by its position when it has no usable key."""
    return f"schedules[{label}]"


def read_schedules_file(text: str, file_stem: str | None, source_option: str | None) -> SchedulesFile:
    """Read a schedules file. Its source is the file's ``source``, else ``source_option`` (``--source``), else
    ``file_stem``; the first two must agree when both are given, so that a file is never applied (or pruned) as
    another source than the one it names."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return SchedulesFile(None, errors={"file": [f"is not YAML: {exc}"]})
    if not isinstance(document, dict):
        return SchedulesFile(None, errors={"file": ["must be a mapping with a 'schedules' list"]})
    errors: Errors = {
        str(name): ["unknown field: a file has 'source' and 'schedules'"]
        for name in document
        if name not in FILE_FIELDS
    }
    source = _source(document, file_stem, source_option, errors)
    schedules = document.get("schedules")
    if schedules is None and "schedules" not in document:
        errors["schedules"] = ["missing: list the schedules (an empty list with --prune deletes them all)"]
    elif not isinstance(schedules, list | None):
        errors["schedules"] = ["must be a list"]
    read = SchedulesFile(source, errors=errors)
    seen: dict[str, int] = {}
    for index, entry in enumerate(schedules if isinstance(schedules, list) else []):
        _read_entry(read, index, entry, seen)
    return read


def _source(
    document: Mapping[str, Any], file_stem: str | None, source_option: str | None, errors: Errors
) -> str | None:
    named = document.get("source")
    if "source" in document and source_errors(named):
        errors["source"] = source_errors(named)
        return None
    if source_option is not None and source_errors(source_option):
        errors["--source"] = source_errors(source_option)
        return None
    if named is not None and source_option is not None and named != source_option:
        errors["source"] = [f"the file names source {named!r}, --source says {source_option!r}"]
        return None
    source = named or source_option or file_stem
    if source is None or source_errors(source):
        errors["source"] = ["cannot be told: name it in the file or with --source"]
        return None
    return str(source)


def _read_entry(read: SchedulesFile, index: int, entry: Any, seen: dict[str, int]) -> None:
    if not isinstance(entry, dict):
        read.errors[entry_path(index)] = ["must be a mapping of a key and a schedule's fields"]
        return
    body = dict(entry)
    key = body.pop("key", None)
    reasons = key_errors(key) if "key" in entry else ["missing: every entry has a stable key"]
    if not reasons and key in seen:
        reasons = [f"repeats the key of schedules[{seen[key]}]: keys are unique in a file"]
    if reasons:
        read.errors[f"{entry_path(index)}.key"] = reasons
        return
    seen[key] = index
    try:
        values = cast(ScheduleInput, SCHEMA.load(body))
    except ValidationError as exc:
        read.errors.update(_prefixed(entry_path(key), _flat(exc.messages)))
        read.entries.append(DesiredSchedule(key, None))
        return
    read.entries.append(DesiredSchedule(key, values))


def _flat(messages: Any, path: str = "") -> Errors:
    """marshmallow's nested messages (``{"labels": {"team": {"value": [...]}}}``) as reasons by dotted path."""
    if isinstance(messages, dict):
        flat: Errors = {}
        for name, nested in messages.items():
            if name in ("value", "key") and path:  # a Dict field's own levels: the key names the place
                flat.update(_flat(nested, path))
            else:
                flat.update(_flat(nested, f"{path}.{name}" if path else str(name)))
        return flat
    if isinstance(messages, list) and all(isinstance(message, str) for message in messages):
        return {path: list(messages)}
    return {path: [str(messages)]}


def _prefixed(prefix: str, errors: Mapping[str, list[str]]) -> Errors:
    return {f"{prefix}.{path}" if path else prefix: reasons for path, reasons in errors.items()}


def plan_problems(plan: Plan) -> tuple[Errors, Errors]:
    """The plan's errors and warnings by path, named by wire field."""
    return _wire_paths(plan.errors), _wire_paths(plan.warnings)


def _wire_paths(by_entry: Mapping[str, dict[str, list[str]]]) -> Errors:
    paths: Errors = {}
    for key, errors in by_entry.items():
        paths.update(entry_problems(key, errors))
    return paths


def entry_problems(key: str, errors: Mapping[str, list[str]]) -> Errors:
    """An entry's reasons by attribute (the domain's) as reasons by path, named by wire field."""
    return _prefixed(entry_path(key), SCHEMA.wire_errors(dict(errors)))


def problem_lines(errors: Mapping[str, list[str]]) -> list[str]:
    """One line per reason: ``path: reason``."""
    return [f"{path}: {reason}" for path, reasons in errors.items() for reason in reasons]


# --- The plan, as people read it ----------------------------------------------------------------------------

SIGNS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.KEEP: "?",
    Action.INVALID: "!",
}


def render_plan(plan: Plan) -> str:
    """The plan as text: a summary line, then each key that changes (or is worth a look) with its fields' values
    before and after. Secret values are never shown, only their references."""
    counts = ", ".join(
        f"{plan.count(action)} {label}"
        for action, label in (
            (Action.CREATE, "to create"),
            (Action.UPDATE, "to update"),
            (Action.UNCHANGED, "unchanged"),
            (Action.DELETE, "to delete"),
        )
    )
    lines = [f"source {plan.source!r}: {counts}"]
    for change in plan.changes:
        if change.action == Action.UNCHANGED:
            continue
        where = f" (id {change.schedule_id})" if change.schedule_id is not None else ""
        if change.name is not None:
            where = f" (id {change.schedule_id}: {change.name})"
        note = {
            Action.KEEP: ": not in the file, kept (--prune deletes it)",
            Action.INVALID: ": invalid, see the errors",
        }.get(change.action, "")
        lines.append(f"{SIGNS[change.action]} {change.key}{where}{note}")
        lines += [f"    {_rendered_change(field_change, change.action)}" for field_change in change.changes]
    return "\n".join(lines)


def _rendered_change(change: FieldChange, action: Action) -> str:
    [name] = SCHEMA.wire_errors({change.field: []})
    after = _shown(change.after, change.secret)
    if action == Action.CREATE:
        return f"{name}: {after}"
    return f"{name}: {_shown(change.before, change.secret)} -> {after}"


def _shown(value: Any, secret: bool) -> str:
    is_reference = isinstance(value, dict) and len(value) == 1 and set(value) <= set(REFERENCE_KINDS)
    if secret and value not in (None, "") and not is_reference:
        return "(secret)"
    return json.dumps(value, ensure_ascii=False, default=_instant)


def _instant(value: Any) -> str:
    """What JSON has no form for: a bound (``startAt``, ``endAt``), a datetime, as the wire writes it."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON")
    return instant_text(value)


# --- Export -------------------------------------------------------------------------------------------------


def schedules_document(runtime: Runtime, schedules: Sequence[TaskSchedule], source: str | None) -> str:
    """The file that states ``schedules`` (its ``source`` line when given): secrets as their references or
    ``{"set": true}``, never their values; fields at their default left out. Applied back, it changes nothing."""
    document: dict[str, Any] = {"source": source} if source else {}
    document["schedules"] = [
        {"key": export_key(schedule), **SCHEMA.dump(exported_values(runtime, schedule))}
        for schedule in schedules
    ]
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=110)
    return f"# Written by cronwork export; apply with: cronwork apply -f FILE\n{body}"


def common_source(schedules: Iterable[TaskSchedule]) -> str | None:
    """The one source every schedule belongs to, or None (none, or several)."""
    sources = {schedule.source for schedule in schedules}
    return next(iter(sources)) if len(sources) == 1 else None
