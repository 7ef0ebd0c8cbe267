"""Marshmallow schemas: the wire format (camelCase, UTC with ``Z``). Rules about values live in shared/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from shared.models import RunStatus, TriggeredBy


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
    """A schedule as sent by a client; every field optional here (an update is partial), required-ness and
    the rules between fields are checked by ``shared.schedules``."""

    class Meta:
        unknown = RAISE

    name = fields.String()
    taskType = fields.String()
    scheduleType = fields.String()
    cronExpression = fields.String(allow_none=True)
    intervalMs = fields.Integer(strict=True, allow_none=True)
    timezone = fields.String()
    enabled = fields.Boolean()
    config = fields.Raw(allow_none=True)


class TaskSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    taskType = fields.String(attribute="task_type")
    scheduleType = fields.String(attribute="schedule_type")
    cronExpression = fields.String(attribute="cron_expression", allow_none=True)
    intervalMs = fields.Integer(attribute="interval_ms", allow_none=True)
    timezone = fields.String()
    enabled = fields.Boolean()
    config = fields.Dict()
    createdBy = fields.String(attribute="created_by")
    createdAt = UtcDateTime(attribute="created_at")
    updatedAt = UtcDateTime(attribute="updated_at")
    lastRunAt = UtcDateTime(attribute="last_run_at", allow_none=True)
    nextRunAt = UtcDateTime(attribute="next_run_at", allow_none=True)
    description = fields.String(metadata={"description": "When it runs, in words"})
    lastRunStatus = fields.String(attribute="last_run_status", allow_none=True)
    version = fields.Integer(metadata={"description": "Incremented by every edit"})


class TaskFiltersSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    enabled = fields.Boolean()
    taskType = fields.String()
    q = fields.String(metadata={"description": "Case-insensitive substring of the name"})
    afterId = fields.Integer(
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

    scheduleId = fields.Integer()
    status = fields.String(validate=validate.OneOf(RunStatus.ALL))
    triggeredBy = fields.String(validate=validate.OneOf(TriggeredBy.ALL))
    systemTask = fields.String()
    beforeId = fields.Integer(
        validate=validate.Range(min=1),
        metadata={
            "description": "Only runs older than this id: pass a page's last id for the next (fast at any depth)"
        },
    )


class SystemTaskSchema(Schema):
    id = fields.String()
    name = fields.String()
    taskType = fields.String()
    cronExpression = fields.String()
    timezone = fields.String()
    description = fields.String()
    scheduleDescription = fields.String(metadata={"description": "When it runs, in words"})
    lastRunAt = UtcDateTime(allow_none=True)
    nextRunAt = UtcDateTime(allow_none=True)
    lastStatus = fields.String(allow_none=True)


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
    valid = fields.Boolean()
    description = fields.String(allow_none=True)
    nextRuns = fields.List(UtcDateTime())
    error = fields.String(allow_none=True)
