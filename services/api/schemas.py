"""Marshmallow schemas: the wire format (camelCase, UTC with ``Z``). Rules about values live in shared/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from shared.models import RunStatus, TriggeredBy
from shared.system_tasks import SYSTEM_TASK_TYPE, SYSTEM_TIMEZONE
from shared.timing import timing_of


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a ``Z``; a value without a zone is read as UTC."""

    def _serialize(self, value: datetime | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class TaskInSchema(Schema):
    """A schedule as a client sends it: the one map of its editable fields, from wire names (``data_key``) to
    the attributes of ``shared.schedules.ScheduleInput``. Every field is optional here (an update is partial);
    which are required and the rules between them are checked by ``shared.schedules``, whose errors, keyed by
    attribute, ``wire_errors`` maps back."""

    class Meta:
        unknown = RAISE

    name = fields.String()
    task_type = fields.String(data_key="taskType")
    schedule_type = fields.String(data_key="scheduleType")
    cron_expression = fields.String(data_key="cronExpression", allow_none=True)
    interval_ms = fields.Integer(data_key="intervalMs", strict=True, allow_none=True)
    timezone = fields.String(metadata={"description": "IANA name, e.g. Europe/Berlin"})
    enabled = fields.Boolean()
    config = fields.Raw(allow_none=True, metadata={"description": "The task type's settings"})

    def wire_errors(self, errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """``errors`` keyed by attribute (``config.<key>`` for a key of the config) keyed by wire name."""

        def wire_name(key: str) -> str:
            attribute, dot, rest = key.partition(".")
            field = self.fields.get(attribute)
            return f"{field.data_key or attribute if field else attribute}{dot}{rest}"

        return {wire_name(key): reasons for key, reasons in errors.items()}


class TaskSchema(TaskInSchema):
    """A stored schedule: its editable fields and what the scheduler keeps about it."""

    id = fields.Integer(dump_only=True)
    created_by = fields.String(data_key="createdBy", dump_only=True)
    created_at = UtcDateTime(data_key="createdAt", dump_only=True)
    updated_at = UtcDateTime(data_key="updatedAt", dump_only=True)
    last_run_at = UtcDateTime(data_key="lastRunAt", allow_none=True, dump_only=True)
    last_run_status = fields.String(data_key="lastRunStatus", allow_none=True, dump_only=True)
    next_run_at = UtcDateTime(data_key="nextRunAt", allow_none=True, dump_only=True)
    description = fields.Function(
        lambda schedule: timing_of(schedule).description, metadata={"description": "When it runs, in words"}
    )
    version = fields.Integer(dump_only=True, metadata={"description": "Incremented by every edit"})


class TaskFiltersSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    enabled = fields.Boolean()
    task_type = fields.String(data_key="taskType")
    name_contains = fields.String(
        data_key="q", metadata={"description": "Case-insensitive substring of the name"}
    )
    after_id = fields.Integer(
        data_key="afterId",
        validate=validate.Range(min=0),
        metadata={
            "description": "Only schedules after this id: pass a page's last id for the next (fast at any depth)"
        },
    )


class HistorySchema(Schema):
    id = fields.Integer()
    scheduleId = fields.Integer(attribute="schedule_id", allow_none=True)
    taskType = fields.String(attribute="task_type")
    systemTask = fields.String(attribute="system_task", allow_none=True)
    status = fields.String()
    triggeredBy = fields.String(attribute="triggered_by")
    scheduledFor = UtcDateTime(attribute="scheduled_for", allow_none=True)
    queuedAt = UtcDateTime(attribute="queued_at")
    startedAt = UtcDateTime(attribute="started_at", allow_none=True)
    completedAt = UtcDateTime(attribute="completed_at", allow_none=True)
    durationMs = fields.Integer(attribute="duration_ms", allow_none=True)
    attempt = fields.Integer()
    missedSlots = fields.Integer(attribute="missed_slots")
    errorMessage = fields.String(attribute="error_message", allow_none=True)


class HistoryFiltersSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    schedule_id = fields.Integer(data_key="scheduleId")
    status = fields.String(validate=validate.OneOf(list(RunStatus)))
    triggered_by = fields.String(data_key="triggeredBy", validate=validate.OneOf(list(TriggeredBy)))
    system_task = fields.String(data_key="systemTask")
    before_id = fields.Integer(
        data_key="beforeId",
        validate=validate.Range(min=1),
        metadata={
            "description": "Only runs older than this id: pass a page's last id for the next (fast at any depth)"
        },
    )


class SystemTaskSchema(Schema):
    """Dumps a ``shared.system_tasks.SystemTaskStatus``."""

    id = fields.String(attribute="task.id")
    name = fields.String(attribute="task.name")
    taskType = fields.Constant(SYSTEM_TASK_TYPE)
    cronExpression = fields.String(attribute="task.cron_expression")
    timezone = fields.Constant(SYSTEM_TIMEZONE)
    description = fields.String(attribute="task.description")
    scheduleDescription = fields.String(
        attribute="task.timing.description", metadata={"description": "When it runs, in words"}
    )
    lastRunAt = UtcDateTime(attribute="last_run_at", allow_none=True)
    nextRunAt = UtcDateTime(attribute="next_run_at", allow_none=True)
    lastStatus = fields.String(attribute="last_status", allow_none=True)


class OptionSchema(Schema):
    value = fields.String()
    label = fields.String()


class ConfigFieldSchema(Schema):
    key = fields.String()
    label = fields.String()
    type = fields.String()
    required = fields.Boolean()
    options = fields.List(fields.Nested(OptionSchema), allow_none=True)
    minimum = fields.Float(allow_none=True, metadata={"description": "number fields: the smallest value"})
    maximum = fields.Float(allow_none=True, metadata={"description": "number fields: the largest value"})


class MeSchema(Schema):
    email = fields.String()
    authMode = fields.String(metadata={"description": "dev (a fixed user) or header (the proxy's identity)"})


class TaskTypeSchema(Schema):
    id = fields.String()
    label = fields.String()
    description = fields.String()
    maxAttempts = fields.Integer(attribute="max_attempts")
    configFields = fields.List(fields.Nested(ConfigFieldSchema), attribute="config_fields")


class CronPreviewQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    expression = fields.String(required=True)
    timezone = fields.String(load_default="UTC")
    after = UtcDateTime(metadata={"description": "Slots strictly after this instant (default: now)"})
    count = fields.Integer(load_default=5, validate=validate.Range(min=1, max=50))


class CronPreviewSchema(Schema):
    """Dumps a ``shared.timing.CronPreview``."""

    valid = fields.Boolean()
    description = fields.String(allow_none=True)
    nextRuns = fields.List(UtcDateTime(), attribute="next_runs")
    error = fields.String(allow_none=True)
