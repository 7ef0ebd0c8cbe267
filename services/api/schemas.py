"""Marshmallow schemas: the wire format (camelCase, UTC with ``Z``). Rules about values live in shared/.

The schemas check the shape of what is sent (required fields, types, unknown fields); which values a schedule
may take is ``shared.schedules``'s to say, all fields at once. So the enums and bounds of a schedule's fields are
only documented here (``documented``): the domain's 422 names every bad field in one answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app
from flask_smorest.error_handler import ErrorSchema as SmorestErrorSchema
from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    validate,
    validates_schema,
)

from shared.access import Permission, Role
from shared.db import utcnow
from shared.models import (
    AuditAction,
    DstPolicy,
    MisfirePolicy,
    OverlapPolicy,
    RunStatus,
    ScheduleType,
    TriggeredBy,
)
from shared.schedules import (
    MAX_ATTEMPTS,
    MAX_CATCH_UP,
    MAX_CATCH_UP_WINDOW_S,
    MAX_JITTER_S,
    MAX_RETRY_BASE_DELAY_MS,
    NAME_MAX_CHARS,
    OWNER_MAX_CHARS,
    broken_reason,
    is_overdue,
    next_run_note,
)
from shared.secrets import SUMMARY_MAX_CHARS, config_summary, shown_config
from shared.settings import declaration
from shared.system_tasks import SYSTEM_TASK_TYPE, SYSTEM_TIMEZONE
from shared.task_types import FieldType, installed_task_types
from shared.timing import (
    CRON_EXPRESSION_MAX_CHARS,
    EARLIEST_INSTANT,
    INSTANT_RANGE_REASON,
    LATEST_INSTANT,
    MAX_INTERVAL_MS,
    MIN_INTERVAL_MS,
    jitter,
    timing_of,
)

# The sets of values the wire knows, each a schema of its own in the spec (one class in a generated client).
ENUMS: dict[str, list[str]] = {
    "ConfigFieldType": [str(value) for value in FieldType],
    "ScheduleType": [str(value) for value in ScheduleType],
    "RunStatus": [str(value) for value in RunStatus],
    "TriggeredBy": [str(value) for value in TriggeredBy],
    "MisfirePolicy": [str(value) for value in MisfirePolicy],
    "OverlapPolicy": [str(value) for value in OverlapPolicy],
    "DstPolicy": [str(value) for value in DstPolicy],
    "AuthMode": list(declaration("auth_mode").choices),
    "Role": [str(value) for value in Role],
    "Permission": [str(value) for value in Permission],
    "AuditAction": [str(value) for value in AuditAction],
}
ENUM_METADATA_KEY = "enum_schema"

# The largest id each column holds: PostgreSQL's integer (a schedule's id, and a run's scheduleId) and bigint (a
# run's id). No row has a larger one, and a query with one fails in the database: ``Id`` refuses it first.
SCHEDULE_ID_MAX = 2**31 - 1
RUN_ID_MAX = 2**63 - 1


def documented(description: str = "", *, enum: str | None = None, **spec: Any) -> dict[str, Any]:
    """A field's OpenAPI metadata: its description, the name of the ``ENUMS`` entry it takes its values from
    (``enum``), and any other OpenAPI keyword (``minimum``, ``maxLength``...)."""
    metadata = dict(spec)
    if description:
        metadata["description"] = description
    if enum is not None:
        if enum not in ENUMS:
            raise ValueError(f"no enum named {enum!r} in ENUMS")
        metadata[ENUM_METADATA_KEY] = enum
    return metadata


def enum_reference(
    converter: Any, field: fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """apispec attribute function: a field ``documented`` with an enum refers to that enum's schema, null
    allowed where the field allows it (``allOf`` beside ``nullable``: a bare ``$ref`` takes no siblings)."""
    name = field.metadata.get(ENUM_METADATA_KEY)
    if name is None:
        return {}
    for key in ("type", "enum", "anyOf", "nullable"):
        ret.pop(key, None)
    return {
        "allOf": [{"$ref": f"#/components/schemas/{name}"}],
        **({"nullable": True} if field.allow_none else {}),
    }


class ResponseSchema(Schema):
    """An answer's body, which always carries every field (null when it has no value): each is marked required,
    so that the spec says so and generated clients need not treat every attribute as possibly absent."""

    def on_bind_field(self, field_name: str, field_obj: fields.Field[Any]) -> None:
        field_obj.required = True


class UtcDateTime(fields.DateTime):
    """ISO 8601 in UTC with a ``Z``; a value without a zone is read as UTC."""

    def _serialize(self, value: datetime | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+14:00: a day before the first a datetime holds
            raise ValidationError("is out of range: in UTC it falls outside the years 1 to 9999") from None


class Id(fields.Integer):
    """An id sent as a query parameter: a whole number from ``minimum`` up to the largest its column holds
    (``maximum``, by default a schedule's), so that an id no row can have is a 422 naming it, not a query the
    database refuses. (A task id in a path is ``routes.TaskIdConverter``'s: a 404.)"""

    def __init__(self, *, minimum: int = 1, maximum: int = SCHEDULE_ID_MAX, **kwargs: Any) -> None:
        super().__init__(validate=validate.Range(min=minimum, max=maximum), **kwargs)


class JitteredStart(UtcDateTime):
    """A schedule's slot, dumped as the instant its run starts: the slot plus the schedule's jitter for it."""

    def _serialize(self, value: datetime | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        start = value and value + jitter(obj.id, value, obj.jitter_s)
        return super()._serialize(start, attr, obj, **kwargs)


class TaskInSchema(Schema):
    """A schedule as a client creates it: the one map of its editable fields, from wire names (``data_key``) to
    the attributes of ``shared.schedules.ScheduleInput``. ``name``, ``taskType`` and ``scheduleType`` are
    required (the rest has defaults); ``TaskUpdateSchema`` is the same map with every field optional. The rules
    between fields are checked by ``shared.schedules``, whose errors, keyed by attribute, ``wire_errors`` maps
    back."""

    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True,
        metadata=documented(f"Trimmed; at most {NAME_MAX_CHARS} characters", maxLength=NAME_MAX_CHARS),
    )
    task_type = fields.String(
        data_key="taskType",
        required=True,
        metadata=documented(
            "What runs: the id of a task type that GET /task-types lists (plugins add their own)"
        ),
    )
    schedule_type = fields.String(
        data_key="scheduleType",
        required=True,
        metadata=documented(
            "cron: cronExpression; interval: intervalMs; manual: Run Now only", enum="ScheduleType"
        ),
    )
    cron_expression = fields.String(
        data_key="cronExpression",
        allow_none=True,
        metadata=documented(
            "Five fields (minute hour day-of-month month day-of-week) in the timezone, or a macro (@hourly, "
            "@daily, @weekly, @monthly, @yearly); required for cron, "
            "null or absent otherwise",
            maxLength=CRON_EXPRESSION_MAX_CHARS,
            example="0 9 * * 1",
        ),
    )
    interval_ms = fields.Integer(
        data_key="intervalMs",
        strict=True,
        allow_none=True,
        metadata=documented(
            "Milliseconds between slots; required for interval, null or absent otherwise",
            minimum=MIN_INTERVAL_MS,
            maximum=MAX_INTERVAL_MS,
        ),
    )
    timezone = fields.String(
        metadata=documented(
            "IANA name, one of GET /timezones (created without one: UTC)", example="Europe/Berlin"
        )
    )
    enabled = fields.Boolean(metadata=documented("Whether its slots run (created without it: true)"))
    config = fields.Dict(
        keys=fields.String(),
        metadata=documented(
            "The task type's settings, by the keys of its configFields (created without it: {})",
            example={"reportId": "compliance-weekly"},
        ),
    )

    max_attempts = fields.Integer(
        data_key="maxAttempts",
        strict=True,
        allow_none=True,
        metadata=documented(
            "Attempts a failing run gets (null: its task type's)", minimum=1, maximum=MAX_ATTEMPTS
        ),
    )
    retry_base_delay_ms = fields.Integer(
        data_key="retryBaseDelayMs",
        strict=True,
        allow_none=True,
        metadata=documented(
            "Backoff before the second attempt, doubling after each (null: RETRY_BASE_DELAY_MS)",
            minimum=0,
            maximum=MAX_RETRY_BASE_DELAY_MS,
        ),
    )
    time_limit_s = fields.Integer(
        data_key="timeLimitS",
        strict=True,
        allow_none=True,
        metadata=documented(
            "How long one attempt may run (null: its task type's); at most the deployment's TASK_TIME_LIMIT_S",
            minimum=1,
        ),
    )
    owner = fields.String(
        allow_none=True, metadata=documented("Who answers for it", maxLength=OWNER_MAX_CHARS)
    )
    labels = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata=documented(
            "key: value text, to filter and act on schedules together (created without it: {})",
            example={"team": "billing"},
        ),
    )
    start_at = UtcDateTime(
        data_key="startAt",
        allow_none=True,
        metadata=documented(
            "ISO 8601: no slot before it (null: none). An interval's slots are startAt + k × intervalMs"
        ),
    )
    end_at = UtcDateTime(
        data_key="endAt",
        allow_none=True,
        metadata=documented(
            "ISO 8601, after startAt: no slot after it (null: none); already past, the task is stored with no "
            "next run (nextRunNote says so)"
        ),
    )
    misfire_policy = fields.String(
        data_key="misfirePolicy",
        metadata=documented(
            "Slots that passed unrun (workers down, the task disabled): coalesce runs the latest now, skip "
            "runs none (unless the latest is within MISFIRE_GRACE_S), catchUp runs those within "
            "catchUpWindowS, oldest first, at most catchUpMax; every other one is recorded missed "
            "(created without it: coalesce)",
            enum="MisfirePolicy",
        ),
    )
    catch_up_max = fields.Integer(
        data_key="catchUpMax",
        strict=True,
        allow_none=True,
        metadata=documented(
            "catchUp: the most missed slots run at once; required for catchUp, null otherwise",
            minimum=1,
            maximum=MAX_CATCH_UP,
        ),
    )
    catch_up_window_s = fields.Integer(
        data_key="catchUpWindowS",
        strict=True,
        allow_none=True,
        metadata=documented(
            "catchUp: only slots at most this many seconds old run; required for catchUp, null otherwise",
            minimum=1,
            maximum=MAX_CATCH_UP_WINDOW_S,
        ),
    )
    overlap_policy = fields.String(
        data_key="overlapPolicy",
        metadata=documented(
            "allow: a slot runs even while the previous scheduled run is queued or running; skip: it is "
            "recorded skipped (Run Now is never skipped) (created without it: allow)",
            enum="OverlapPolicy",
        ),
    )
    jitter_s = fields.Integer(
        data_key="jitterS",
        strict=True,
        metadata=documented(
            "Each run starts up to this many seconds after its slot, by an offset fixed per task and slot "
            "(created without it: 0)",
            minimum=0,
            maximum=MAX_JITTER_S,
        ),
    )
    dst_policy = fields.String(
        data_key="dstPolicy",
        metadata=documented(
            "cron: a fixed-hour slot in the hour a fall-back night repeats runs once (its first occurrence) "
            "or both times (created without it: once)",
            enum="DstPolicy",
        ),
    )

    def wire_errors(self, errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """``errors`` keyed by attribute (``config.<key>`` for a key of the config) keyed by wire name."""
        return self.wire_names(errors)

    def wire_names(self, by_attribute: dict[str, Any]) -> dict[str, Any]:
        """``by_attribute`` (keys: attributes, ``config.<key>`` for a key of the config) keyed by wire name."""

        def wire_name(key: str) -> str:
            attribute, dot, rest = key.partition(".")
            field = self.fields.get(attribute)
            return f"{field.data_key or attribute if field else attribute}{dot}{rest}"

        return {wire_name(key): value for key, value in by_attribute.items()}


class TaskUpdateSchema(TaskInSchema):
    """A change to a schedule (PUT and PATCH alike): any of its fields; what is not sent stays as it is."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(partial=True, **kwargs)


class TaskSchema(TaskInSchema, ResponseSchema):
    """A stored schedule: its editable fields and what the scheduler keeps about it."""

    id = fields.Integer(dump_only=True)
    created_by = fields.String(data_key="createdBy", dump_only=True)
    created_at = UtcDateTime(data_key="createdAt", dump_only=True)
    updated_at = UtcDateTime(data_key="updatedAt", dump_only=True)
    last_run_at = UtcDateTime(
        data_key="lastRunAt", allow_none=True, dump_only=True, metadata=documented("When a run last started")
    )
    last_run_status = fields.String(
        data_key="lastRunStatus",
        allow_none=True,
        dump_only=True,
        metadata=documented("The status of its newest run", enum="RunStatus"),
    )
    failure_streak = fields.Function(
        lambda schedule: schedule.failure_streak or 0,
        data_key="failureStreak",
        dump_only=True,
        metadata=documented(
            "How many of its latest finished runs failed in a row (a run counts once it will not be retried: its "
            "last attempt failed, or it was abandoned with no attempt left); a success resets it to 0",
            type="integer",
        ),
    )
    last_error = fields.String(
        data_key="lastError",
        allow_none=True,
        dump_only=True,
        metadata=documented("The error of its latest failed run (kept after a success: it is history)"),
    )
    last_error_at = UtcDateTime(
        data_key="lastErrorAt",
        allow_none=True,
        dump_only=True,
        metadata=documented("When its latest failed run finished"),
    )
    next_run_at = UtcDateTime(
        data_key="nextRunAt",
        allow_none=True,
        dump_only=True,
        metadata=documented("The armed slot; null when off"),
    )
    next_run_note = fields.Function(
        lambda schedule: next_run_note(schedule, utcnow()),
        data_key="nextRunNote",
        allow_none=True,
        dump_only=True,
        metadata=documented(
            "Why there is no next run (manual, past its endAt, disabled); null when nextRunAt is set",
            type="string",
        ),
    )
    source = fields.String(
        allow_none=True,
        dump_only=True,
        metadata=documented("The file it is kept in (cronwork apply), if any"),
    )
    next_run_starts_at = JitteredStart(
        attribute="next_run_at",
        data_key="nextRunStartsAt",
        allow_none=True,
        dump_only=True,
        metadata=documented("When the armed slot's run starts: nextRunAt plus its jitter"),
    )
    broken_reason = fields.Function(
        broken_reason,
        data_key="brokenReason",
        allow_none=True,
        dump_only=True,
        metadata=documented(
            "Why its stored timing no longer gives slots (its cron or timezone refused after an upgrade): its "
            "chain stopped; an edit of its timing mends it. Null when it works",
            type="string",
        ),
    )
    description = fields.Function(
        lambda schedule: timing_of(schedule).description if broken_reason(schedule) is None else "Broken",
        dump_only=True,
        metadata=documented("When it runs, in words", type="string"),
    )
    version = fields.Integer(dump_only=True, metadata=documented("Incremented by every edit"))
    overdue = fields.Function(
        lambda schedule: is_overdue(schedule, utcnow(), current_app.extensions["cronwork"].grace),
        dump_only=True,
        metadata=documented(
            "Enabled, and its nextRunAt older than the pump's grace period (PUMP_GRACE_S): nothing is running "
            "its due slot, so the workers or the beat are likely down (as cronwork_schedules_overdue counts)",
            type="boolean",
        ),
    )

    @post_dump(pass_original=True)
    def hide_secrets(self, data: dict[str, Any], schedule: Any, **_kwargs: Any) -> dict[str, Any]:
        """A secret config field shows ``{"set": true}`` (or its reference), never its value."""
        if "config" in data:
            data["config"] = shown_config(installed_task_types().get(schedule.task_type), schedule.config)
        return data


class TaskListItemSchema(TaskSchema):
    """A schedule as the list shows it: every field of a ``Task`` but its ``config`` (which may be tens of KiB:
    GET /tasks/{id} has it), summed up in ``configSummary`` instead."""

    class Meta(TaskInSchema.Meta):
        exclude = ("config",)

    config_summary = fields.Function(
        lambda schedule: config_summary(installed_task_types().get(schedule.task_type), schedule.config),
        data_key="configSummary",
        allow_none=True,
        dump_only=True,
        metadata=documented(
            f"Its config in one line of at most {SUMMARY_MAX_CHARS} characters: each field that has a value, "
            "in its task type's form order (a select by its option's label, a secret as set or by its "
            "reference, never its value); null when none has one",
            type="string",
        ),
    )


class LabelSelector(fields.Field[dict[str, str]]):
    """``key=value`` pairs (a query parameter given once per label) read as a mapping."""

    is_multiple = True  # webargs: collect every occurrence of the parameter

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, str]:
        pairs = value if isinstance(value, list) else [value]
        selected = {}
        for pair in pairs:
            key, equals, wanted = str(pair).partition("=")
            if not equals or not key:
                raise ValidationError(f"{pair!r} is not key=value")
            selected[key] = wanted
        return selected


class ChangedTasksSchema(ResponseSchema):
    changed = fields.List(fields.Integer(), metadata=documented("The ids of the schedules changed"))


class RunNowSchema(Schema):
    """What Run Now may carry."""

    class Meta:
        unknown = RAISE

    config = fields.Dict(
        keys=fields.String(),
        load_default=None,
        metadata=documented("Config keys to use for this run only (secret fields excepted)"),
    )


class BackfillSchema(Schema):
    """The past window whose slots a backfill runs. The domain's errors name its fields by attribute
    (``from_``, ``to``) or the schedule's (``schedule_type``); ``wire_errors`` names them as the wire does."""

    class Meta:
        unknown = RAISE

    from_ = UtcDateTime(
        data_key="from",
        required=True,
        metadata=documented(
            "The window's first instant (included), ISO 8601; within HISTORY_RETENTION_DAYS of now"
        ),
    )
    to = UtcDateTime(
        required=True,
        metadata=documented(
            "The window's last instant (included), ISO 8601; not in the future; at most BACKFILL_MAX_SLOTS "
            "slots after from"
        ),
    )

    def wire_errors(self, errors: dict[str, list[str]]) -> dict[str, list[str]]:
        """``errors`` keyed by attribute, keyed by wire name."""
        own = {
            self.fields[key].data_key or key: reasons for key, reasons in errors.items() if key in self.fields
        }
        schedule = TaskInSchema().wire_errors({k: v for k, v in errors.items() if k not in self.fields})
        return {**own, **schedule}


class BackfillResultSchema(ResponseSchema):
    """Dumps a ``shared.backfill.Backfill``."""

    slots = fields.Integer(metadata=documented("The schedule's slots in the window"))
    queued = fields.Integer(metadata=documented("Runs queued: one per slot that had no run"))
    alreadyRun = fields.Integer(
        attribute="already_run",
        metadata=documented("Slots left alone: each already had a run, scheduled or backfilled"),
    )
    runs = fields.List(fields.Integer(), metadata=documented("The ids of the runs queued, oldest slot first"))


class TaskFiltersSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    enabled = fields.Boolean()
    task_type = fields.String(data_key="taskType", metadata=documented("A task type's id"))
    name_contains = fields.String(data_key="q", metadata=documented("Case-insensitive substring of the name"))
    owner = fields.String()
    labels = LabelSelector(
        data_key="label",
        metadata=documented(
            "key=value; give it once per label, a schedule must carry each",
            type="array",
            items={"type": "string"},
        ),
    )
    after_id = Id(
        data_key="afterId",
        minimum=0,
        metadata=documented(
            "Only schedules after this id: pass a page's last id for the next (fast at any depth)"
        ),
    )


class HistorySchema(ResponseSchema):
    id = fields.Integer()
    scheduleId = fields.Integer(
        attribute="schedule_id",
        allow_none=True,
        metadata=documented("Null for a system task's run; kept after its schedule is deleted"),
    )
    scheduleName = fields.String(
        attribute="schedule_name",
        allow_none=True,
        metadata=documented("Its schedule's name when it was queued (kept after the schedule is deleted)"),
    )
    taskType = fields.String(attribute="task_type", metadata=documented("A task type's id, or SYSTEM"))
    systemTask = fields.String(attribute="system_task", allow_none=True)
    status = fields.String(metadata=documented(enum="RunStatus"))
    triggeredBy = fields.String(attribute="triggered_by", metadata=documented(enum="TriggeredBy"))
    scheduledFor = UtcDateTime(attribute="scheduled_for", allow_none=True)
    queuedAt = UtcDateTime(attribute="queued_at")
    startedAt = UtcDateTime(attribute="started_at", allow_none=True)
    completedAt = UtcDateTime(attribute="completed_at", allow_none=True)
    durationMs = fields.Integer(attribute="duration_ms", allow_none=True)
    attempt = fields.Integer()
    missedSlots = fields.Integer(
        attribute="missed_slots", metadata=documented("A missed entry: how many slots it covers")
    )
    lastSlot = UtcDateTime(
        attribute="last_slot",
        allow_none=True,
        metadata=documented("A missed entry: the last slot it covers (scheduledFor is its first)"),
    )
    errorMessage = fields.String(attribute="error_message", allow_none=True)
    output = fields.String(
        allow_none=True, metadata=documented("What the handler reported (an HTTP status and excerpt...)")
    )
    configOverride = fields.Dict(
        attribute="config_override",
        allow_none=True,
        metadata=documented("Run Now's one-off config, laid over the schedule's for this run"),
    )
    requestedBy = fields.String(
        attribute="requested_by",
        allow_none=True,
        metadata=documented(
            "Who asked for a Run Now or a backfill (an e-mail or token:<id>); null otherwise"
        ),
    )


class HistoryFiltersSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    schedule_id = Id(data_key="scheduleId")
    status = fields.String(validate=validate.OneOf(ENUMS["RunStatus"]), metadata=documented(enum="RunStatus"))
    triggered_by = fields.String(
        data_key="triggeredBy",
        validate=validate.OneOf(ENUMS["TriggeredBy"]),
        metadata=documented(enum="TriggeredBy"),
    )
    system_task = fields.String(data_key="systemTask")
    before_id = Id(
        data_key="beforeId",
        maximum=RUN_ID_MAX,
        metadata=documented(
            "Only runs older than this id: pass a page's last id for the next (fast at any depth)"
        ),
    )
    from_ = UtcDateTime(
        data_key="from",
        metadata=documented("Only entries queued at or after this instant (ISO 8601; queuedAt)"),
    )
    to = UtcDateTime(
        metadata=documented("Only entries queued at or before this instant (ISO 8601; queuedAt); after from"),
    )
    include_system = fields.Boolean(
        data_key="includeSystem",
        load_default=True,
        metadata=documented("false: leave out the system crons' runs (those with a systemTask)"),
    )

    @validates_schema
    def check_span(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("from_") is not None and data.get("to") is not None and data["to"] <= data["from_"]:
            raise ValidationError("must be after from", field_name="to")


class SystemTaskSchema(ResponseSchema):
    """Dumps a ``shared.system_tasks.SystemTaskStatus``."""

    id = fields.String(attribute="task.id")
    name = fields.String(attribute="task.name")
    taskType = fields.Constant(SYSTEM_TASK_TYPE, metadata={"type": "string", "enum": [SYSTEM_TASK_TYPE]})
    cronExpression = fields.String(attribute="task.cron_expression")
    timezone = fields.Constant(SYSTEM_TIMEZONE, metadata=documented(type="string"))
    description = fields.String(attribute="task.description")
    scheduleDescription = fields.String(
        attribute="task.timing.description", metadata=documented("When it runs, in words")
    )
    lastRunAt = UtcDateTime(attribute="last_run_at", allow_none=True)
    nextRunAt = UtcDateTime(attribute="next_run_at", allow_none=True)
    lastStatus = fields.String(
        attribute="last_status", allow_none=True, metadata=documented(enum="RunStatus")
    )


class OptionSchema(ResponseSchema):
    value = fields.String()
    label = fields.String()


class ConfigFieldSchema(ResponseSchema):
    key = fields.String()
    label = fields.String()
    type = fields.String(metadata=documented("The form control", enum="ConfigFieldType"))
    required = fields.Boolean()
    options = fields.List(
        fields.Nested(OptionSchema),
        allow_none=True,
        metadata=documented("select fields: the values it takes"),
    )
    minimum = fields.Float(allow_none=True, metadata=documented("number fields: the smallest value"))
    maximum = fields.Float(allow_none=True, metadata=documented("number fields: the largest value"))
    secret = fields.Boolean(
        metadata=documented(
            'Write-only: send the value (stored encrypted), {"env": "NAME"} or {"file": "/path"}; '
            'answers show {"set": true}, and sending that back keeps it'
        )
    )
    help = fields.String(metadata=documented("A hint for the form"))


class MeSchema(ResponseSchema):
    email = fields.String(
        attribute="name", metadata=documented("Who the API takes the caller to be: an e-mail, or token:<id>")
    )
    authMode = fields.String(
        metadata=documented(
            "dev (a fixed user), header (the proxy's identity) or oidc (a verified JWT)", enum="AuthMode"
        )
    )
    role = fields.String(
        allow_none=True, metadata=documented("The caller's role; null: none (only /me answers)", enum="Role")
    )
    permissions = fields.List(
        fields.String(metadata=documented(enum="Permission")),
        metadata=documented("What the caller may do (view: read anything)"),
    )
    roleNeeded = fields.Dict(
        attribute="role_needed",
        keys=fields.String(),
        values=fields.String(),
        metadata=documented(
            "The least role that may do each permission (the same for every caller), to say why an action "
            "is not offered",
            example={"view": "viewer", "runNow": "operator", "delete": "admin"},
        ),
    )


class TokenInSchema(Schema):
    """A new API token."""

    class Meta:
        unknown = RAISE

    name = fields.String(
        required=True, validate=validate.Length(min=1, max=100), metadata=documented("What the token is for")
    )
    role = fields.String(
        required=True, validate=validate.OneOf(ENUMS["Role"]), metadata=documented(enum="Role")
    )
    expires_at = UtcDateTime(
        data_key="expiresAt",
        allow_none=True,
        metadata=documented("When the token stops working (in the future); null or absent: never"),
    )

    @validates_schema
    def _checks(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data["name"].strip():
            raise ValidationError("must not be blank", "name")
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= utcnow():
            raise ValidationError("must be in the future", "expiresAt")
        if expires_at is not None and not EARLIEST_INSTANT <= expires_at <= LATEST_INSTANT:
            raise ValidationError(INSTANT_RANGE_REASON, "expiresAt")


class TokenSchema(ResponseSchema):
    """An API token, without its secret."""

    id = fields.Integer()
    name = fields.String()
    role = fields.String(metadata=documented(enum="Role"))
    secretPrefix = fields.String(
        attribute="secret_prefix", metadata=documented("The secret's first characters, to tell tokens apart")
    )
    createdBy = fields.String(attribute="created_by")
    createdAt = UtcDateTime(attribute="created_at")
    expiresAt = UtcDateTime(attribute="expires_at", allow_none=True)
    revokedAt = UtcDateTime(attribute="revoked_at", allow_none=True)
    revokedBy = fields.String(attribute="revoked_by", allow_none=True)
    lastUsedAt = UtcDateTime(
        attribute="last_used_at", allow_none=True, metadata=documented("Its last use, to the minute")
    )


class MadeTokenSchema(TokenSchema):
    """A new API token, with its secret: shown this once, stored only as a hash."""

    secret = fields.String(
        attribute="secret",
        metadata=documented("Send it as Authorization: Bearer <secret>. It is never shown again"),
    )


class AuditFiltersSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    schedule_id = Id(data_key="scheduleId")
    actor = fields.String(validate=validate.Length(max=255), metadata=documented("An e-mail, or token:<id>"))
    action = fields.String(
        validate=validate.OneOf(ENUMS["AuditAction"]), metadata=documented(enum="AuditAction")
    )
    from_ = UtcDateTime(data_key="from", metadata=documented("Events at or after this instant"))
    to = UtcDateTime(metadata=documented("Events at or before this instant"))

    @validates_schema
    def _checks(self, data: dict[str, Any], **_kwargs: Any) -> None:
        for key, field in (("from_", "from"), ("to", "to")):
            if key in data and not EARLIEST_INSTANT <= data[key] <= LATEST_INSTANT:
                raise ValidationError(INSTANT_RANGE_REASON, field)
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError("must not be before from", "to")


class AuditEventSchema(ResponseSchema):
    """One change: who made it, when, and what it changed."""

    id = fields.Integer()
    at = UtcDateTime()
    actor = fields.String(metadata=documented("An e-mail, token:<id>, apply:<source> or cronwork"))
    action = fields.String(metadata=documented(enum="AuditAction"))
    scheduleId = fields.Integer(attribute="schedule_id", allow_none=True)
    scheduleName = fields.String(attribute="schedule_name", allow_none=True)
    tokenId = fields.Integer(
        attribute="token_id", allow_none=True, metadata=documented("The API token the change was made with")
    )
    changes = fields.Method(
        "wire_changes",
        allow_none=True,
        metadata=documented(
            "Each field a create or an update set, by its API name (config.<key> for a config key): "
            "{before, after}; a secret's value shows as (secret)",
            type="object",
            additionalProperties={
                "type": "object",
                "properties": {"before": {"nullable": True}, "after": {"nullable": True}},
            },
        ),
    )
    detail = fields.Dict(
        allow_none=True,
        metadata=documented(
            "What else the action names: a run's id, a backfill's window, a token's name and role"
        ),
    )
    requestId = fields.String(
        attribute="request_id", allow_none=True, metadata=documented("The API request that made the change")
    )

    def wire_changes(self, event: Any) -> dict[str, Any] | None:
        if event.changes is None:
            return None
        return TaskInSchema().wire_names(event.changes)


class TaskTypeSchema(ResponseSchema):
    id = fields.String()
    label = fields.String()
    description = fields.String()
    maxAttempts = fields.Integer(attribute="max_attempts")
    timeLimitS = fields.Integer(
        attribute="time_limit_s", allow_none=True, metadata=documented("null: the deployment's limit")
    )
    configFields = fields.List(fields.Nested(ConfigFieldSchema), attribute="config_fields")


IN_INSTANT_RANGE = validate.Range(min=EARLIEST_INSTANT, max=LATEST_INSTANT, error=INSTANT_RANGE_REASON)


class CronPreviewQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    expression = fields.String(required=True)
    timezone = fields.String(load_default="UTC", metadata=documented("IANA name, one of GET /timezones"))
    after = UtcDateTime(
        validate=IN_INSTANT_RANGE, metadata=documented("Slots strictly after this instant (default: now)")
    )
    count = fields.Integer(load_default=5, validate=validate.Range(min=1, max=50))
    start_at = UtcDateTime(
        data_key="startAt",
        validate=IN_INSTANT_RANGE,
        metadata=documented("Only slots at or after it (a task's startAt)"),
    )
    end_at = UtcDateTime(
        data_key="endAt",
        validate=IN_INSTANT_RANGE,
        metadata=documented("Only slots at or before it (a task's endAt)"),
    )
    dst_policy = fields.String(
        data_key="dstPolicy",
        load_default=DstPolicy.ONCE,
        validate=validate.OneOf(ENUMS["DstPolicy"]),
        metadata=documented("A task's dstPolicy", enum="DstPolicy"),
    )
    jitter_s = fields.Integer(
        data_key="jitterS",
        load_default=0,
        validate=validate.Range(min=0, max=MAX_JITTER_S),
        metadata=documented("A task's jitterS: with taskId, startsAt gives each run's start"),
    )
    task_id = Id(
        data_key="taskId",
        metadata=documented("The task whose jitter offsets to show (an offset is fixed per task and slot)"),
    )


class CronPreviewSchema(ResponseSchema):
    """Dumps a ``shared.timing.CronPreview``."""

    valid = fields.Boolean()
    description = fields.String(allow_none=True)
    expanded = fields.String(
        allow_none=True,
        metadata=documented("The five fields it runs on: a macro's expansion (@daily: 0 0 * * *)"),
    )
    nextRuns = fields.List(UtcDateTime(), attribute="next_runs")
    startsAt = fields.List(
        UtcDateTime(),
        attribute="starts_at",
        allow_none=True,
        metadata=documented(
            "When each of nextRuns starts, its jitter added (taskId given); null when jitter is on and no "
            "taskId names whose offsets to show"
        ),
    )
    error = fields.String(allow_none=True)


class ErrorSchema(SmorestErrorSchema):
    """Every error's body (flask-smorest's ``code``, ``status``, ``message``, ``errors``) with the request's id."""

    requestId = fields.String(
        required=True,
        metadata=documented(
            "This request's id, as its X-Request-ID header gives it: the API's log names it beside an error"
        ),
    )
