"""What a schedule can run: the task-type contract, and the registry that finds task types where Python
finds plugins.

A task type is a ``TaskType`` object published under the ``cronwork.task_types`` entry-point group, by
cronwork itself (``shared/tasks/``) or by any package installed beside it::

    [project.entry-points."cronwork.task_types"]
    nightly_export = "acme_tasks:NIGHTLY_EXPORT"

Its id appears in ``/api/scheduler/task-types``, in the page's form and in validation; the worker runs its
handler. Nothing in cronwork names a task type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlparse

from shared.settings import Settings

ENTRY_POINT_GROUP = "cronwork.task_types"
OUTPUT_CHARS = 2000  # what a run keeps of a handler's result line

logger = logging.getLogger("cronwork.task_types")


class TaskFailed(Exception):
    """A handler's run failed for a reason worth showing the operator (kept in ``errorMessage``). ``retry``
    False: another attempt would fail the same way (a refused address, a malformed config), so none is made."""

    def __init__(self, message: str, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class FieldType(StrEnum):
    """How the page draws a config field and how its value is checked."""

    SELECT = "select"  # one of ``options``
    TEXT = "text"
    NUMBER = "number"  # within ``minimum`` and ``maximum``
    URL = "url"  # an absolute http(s) URL
    JSON = "json"  # any JSON value (an object, a list ...), written as JSON in the form


@dataclass(frozen=True)
class Option:
    """One choice of a select field: the stored value and its label."""

    value: str
    label: str


@dataclass(frozen=True)
class ConfigField:
    """One field of a task type's config form.

    Parameters:
      key: the key in a schedule's ``config``.
      label, help: the form's label and the hint under it.
      type: a ``FieldType``.
      required: a schedule of this type must set it.
      options: the choices of a select field.
      minimum, maximum: the bounds of a number field.
      secret: write-only: stored encrypted (or as a reference), never shown back (see ``shared.secrets``).
    """

    key: str
    label: str
    type: FieldType
    required: bool = False
    options: tuple[Option, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False
    help: str = ""

    def check(self, value: Any) -> str | None:
        """The reason ``value`` is not acceptable for this field, or None."""
        if self.type == FieldType.SELECT:
            allowed = [option.value for option in self.options or ()]
            return None if value in allowed else f"must be one of {', '.join(allowed)}"
        if self.type == FieldType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "must be a number"
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum:g}"
            return None
        if self.type == FieldType.JSON:
            return None
        if not isinstance(value, str):
            return "must be a string"
        if self.type == FieldType.URL:
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                return "must be an absolute http:// or https:// URL"
        return None


@dataclass(frozen=True)
class RunContext:
    """What a handler is given for one attempt of one run.

    Parameters:
      config: the schedule's config (with a Run Now override applied), secret fields in plain text: a handler
        must never put them in its result or its error message.
      run_id, attempt: the run's history id and which attempt this is (1 for the first).
      schedule_id: None once the schedule was deleted, or for a system run.
      scheduled_for: the slot this run is for (None for Run Now).
      time_limit_s: how long this attempt may run before it is interrupted.
      settings: the deployment's settings.
    """

    config: Mapping[str, Any]
    run_id: int
    attempt: int
    schedule_id: int | None
    scheduled_for: datetime | None
    time_limit_s: int
    settings: Settings


@dataclass(frozen=True)
class TaskType:
    """A kind of task.

    Parameters:
      id: stored on every schedule of this type; never change it once schedules use it.
      label, description: what the page shows.
      handler: runs one attempt; returns a one-line result kept on the run (or None); raises ``TaskFailed``
        (or anything else) to fail the attempt.
      config_fields: the config form, and its validation.
      max_attempts: how many attempts a failing run gets, unless its schedule sets fewer or more.
      time_limit_s: how long one attempt may run, unless its schedule says less (None: the worker-wide
        ``TASK_TIME_LIMIT_S``, which also caps it).
      check_config: rules across fields, returning reasons by key (``_schema`` for the whole config).
      demo: a simulated type of the proof of concept, offered only with ``DEMO_TASK_TYPES=true``.
    """

    id: str
    label: str
    description: str
    handler: Callable[[RunContext], str | None]
    config_fields: tuple[ConfigField, ...] = field(default=())
    max_attempts: int = 3
    time_limit_s: int | None = None
    check_config: Callable[[Mapping[str, Any]], dict[str, list[str]]] | None = None
    demo: bool = False

    @property
    def secret_keys(self) -> frozenset[str]:
        """The config keys that hold secrets."""
        return frozenset(f.key for f in self.config_fields if f.secret)

    def config_errors(self, config: Any) -> dict[str, list[str]]:
        """Problems with ``config``, by key (``_schema`` for the object itself); empty when it is valid."""
        if not isinstance(config, dict):
            return {"_schema": ["must be an object"]}
        errors: dict[str, list[str]] = {}
        known = {f.key: f for f in self.config_fields}
        for key in config:
            if key not in known:
                errors[key] = [f"unknown key for task type {self.id}"]
        for key, config_field in known.items():
            if key not in config or config[key] is None or config[key] == "":
                if config_field.required:
                    errors[key] = ["is required"]
                continue
            if config_field.secret:
                continue  # its stored form is shared.secrets's to check
            reason = config_field.check(config[key])
            if reason:
                errors[key] = [reason]
        if not errors and self.check_config is not None:
            errors.update(self.check_config(config))
        return errors


@cache
def installed_task_types() -> Mapping[str, TaskType]:
    """Every task type published under ``cronwork.task_types``, by id. A plugin that fails to load, publishes
    something else or repeats an id is logged and left out: its schedules' runs fail with the reason, and the
    worker keeps running every other type."""
    found: dict[str, TaskType] = {}
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            task_type = entry_point.load()
        except Exception:
            logger.exception("task type plugin %s (%s) failed to load", entry_point.name, entry_point.value)
            continue
        if not isinstance(task_type, TaskType):
            logger.error("task type plugin %s (%s) is not a TaskType", entry_point.name, entry_point.value)
        elif task_type.id in found:
            logger.error(
                "task type plugin %s repeats the id %r; the first one is kept",
                entry_point.value,
                task_type.id,
            )
        else:
            found[task_type.id] = task_type
    return found


def offered_task_types(settings: Settings) -> Mapping[str, TaskType]:
    """The task types this deployment offers: every installed one, the demo types only when turned on."""
    return {
        task_id: task_type
        for task_id, task_type in installed_task_types().items()
        if settings.offers_demo_task_types or not task_type.demo
    }
