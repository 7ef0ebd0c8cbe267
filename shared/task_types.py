"""The task-type registry: what a user schedule can run, its config form, and how it runs.

One list, read by the API (forms, validation) and by the worker (handlers, retries).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

ERROR_EXCERPT_CHARS = 200


class TaskFailed(Exception):
    """A handler's run failed for a reason worth showing the operator (kept in ``errorMessage``)."""


@dataclass(frozen=True)
class Option:
    """One choice of a select field: the stored value and its label."""

    value: str
    label: str


@dataclass(frozen=True)
class ConfigField:
    """One field of a task type's config form; ``check`` validates a value for it."""

    key: str
    label: str
    type: str  # select | text | number | url
    required: bool = False
    options: tuple[Option, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: Any) -> str | None:
        """The reason ``value`` is not acceptable for this field, or None."""
        if self.type == "select":
            allowed = [option.value for option in self.options or ()]
            return None if value in allowed else f"must be one of {', '.join(allowed)}"
        if self.type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "must be a number"
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum:g}"
            return None
        if not isinstance(value, str):
            return "must be a string"
        if self.type == "url":
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                return "must be an absolute http:// or https:// URL"
        return None


@dataclass(frozen=True)
class RunContext:
    """What a handler gets: the schedule's config, and the settings it may need."""

    config: dict[str, Any]
    simulated_work_ms: int


@dataclass(frozen=True)
class TaskType:
    """A kind of task: its form (``config_fields``), its ``handler``, and ``max_attempts`` (a failed attempt is
    retried until this many have run). One attempt runs for at most the worker-wide ``TASK_TIME_LIMIT_S``."""

    id: str
    label: str
    description: str
    handler: Callable[[RunContext], None]
    config_fields: tuple[ConfigField, ...] = field(default=())
    max_attempts: int = 3

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
            reason = config_field.check(config[key])
            if reason:
                errors[key] = [reason]
        return errors


def simulated_work(context: RunContext) -> None:
    """Stands in for a real integration (report service, mailer, exporter): it only takes time."""
    time.sleep(context.simulated_work_ms / 1000)


def http_request(context: RunContext) -> None:
    """Call the configured URL; anything but a 2xx answer, or no answer in time, fails the run."""
    config = context.config
    method = config.get("method") or "GET"
    body = config.get("body")
    data = body.encode() if method == "POST" and body else None
    request = urllib.request.Request(config["url"], data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", _content_type(str(body)))
    timeout_s = float(config.get("timeoutS") or 10)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (operator-set URL)
            response.read(ERROR_EXCERPT_CHARS)
    except urllib.error.HTTPError as exc:
        excerpt = exc.read(ERROR_EXCERPT_CHARS).decode("utf-8", "replace").strip()
        raise TaskFailed(f"HTTP {exc.code} {exc.reason} from {config['url']}: {excerpt}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TaskFailed(f"request to {config['url']} failed: {reason}") from None


def _content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


TASK_TYPES: tuple[TaskType, ...] = (
    TaskType(
        id="report_publish",
        label="Report Publishing",
        description="Generates and publishes a report",
        handler=simulated_work,
        config_fields=(
            ConfigField(
                "reportId",
                "Report",
                "select",
                required=True,
                options=(
                    Option("compliance-weekly", "Weekly Compliance Report"),
                    Option("usage-monthly", "Monthly Usage Report"),
                    Option("billing-summary", "Billing Summary"),
                ),
            ),
        ),
    ),
    TaskType(
        id="send_email",
        label="Email Notification",
        description="Sends an email notification",
        handler=simulated_work,
        config_fields=(
            ConfigField(
                "templateId",
                "Email Template",
                "select",
                required=True,
                options=(
                    Option("weekly-digest", "Weekly Digest"),
                    Option("monthly-summary", "Monthly Summary"),
                ),
            ),
        ),
    ),
    TaskType(
        id="data_export",
        label="Data Export",
        description="Exports data to a file",
        handler=simulated_work,
        config_fields=(
            ConfigField(
                "format",
                "Export Format",
                "select",
                required=True,
                options=(
                    Option("csv", "CSV"),
                    Option("json", "JSON"),
                    Option("xlsx", "Excel"),
                ),
            ),
        ),
    ),
    TaskType(
        id="http_request",
        label="HTTP Request",
        description="Calls a URL; fails on a non-2xx answer or a network error",
        handler=http_request,
        config_fields=(
            ConfigField("url", "URL", "url", required=True),
            ConfigField("method", "Method", "select", options=(Option("GET", "GET"), Option("POST", "POST"))),
            ConfigField("body", "Body (POST)", "text"),
            ConfigField("timeoutS", "Timeout (seconds)", "number", minimum=1, maximum=120),
        ),
    ),
)

TASK_TYPES_BY_ID: dict[str, TaskType] = {task_type.id: task_type for task_type in TASK_TYPES}


def get_task_type(task_type_id: str) -> TaskType | None:
    """The installed task type with this id, or None."""
    return TASK_TYPES_BY_ID.get(task_type_id)
