"""The REST API under /api/scheduler. Views only translate: parse with a schema, call shared/, dump."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, g, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import Select
from sqlalchemy.orm import Session

from services.api.schemas import (
    CronPreviewQuerySchema,
    CronPreviewSchema,
    HistoryFiltersSchema,
    HistorySchema,
    MeSchema,
    SystemTaskSchema,
    TaskFiltersSchema,
    TaskInSchema,
    TaskSchema,
    TaskTypeSchema,
)
from shared import schedules
from shared.cron import CronSpec, InvalidCron, all_timezones, describe_cron, iter_cron_slots, load_timezone
from shared.db import utcnow
from shared.models import TaskSchedule
from shared.runtime import Runtime
from shared.system_tasks import SYSTEM_TASK_TYPE, SYSTEM_TASKS, SYSTEM_TIMEZONE
from shared.task_types import TASK_TYPES


class SchedulerBlueprint(Blueprint):
    """flask-smorest's Blueprint, whose ``X-Pagination`` header also says when ``total`` is an estimate."""

    def _set_pagination_metadata(self, page_params: Any, result: Any, headers: Any) -> tuple[Any, Any]:
        result, headers = super()._set_pagination_metadata(page_params, result, headers)
        if getattr(page_params, "total_is_estimate", False):
            metadata = json.loads(headers[self.PAGINATION_HEADER_NAME])
            headers[self.PAGINATION_HEADER_NAME] = json.dumps({**metadata, "total_is_estimate": True})
        return result, headers


blp = SchedulerBlueprint(
    "scheduler",
    __name__,
    url_prefix="/api/scheduler",
    description="Schedules, their runs, and the system crons",
)

PAGINATION = {"page_size": 100, "max_page_size": 1000}
IDENTITY_MAX_CHARS = 255  # task_schedules.created_by


def runtime() -> Runtime:
    return current_app.extensions["cronwork"]


@blp.before_request
def identify_caller() -> None:
    """Dev mode takes the user from MOCK_USER_EMAIL; header mode trusts the authenticating proxy's header."""
    settings = runtime().settings
    if settings.auth_mode == "dev":
        g.user = settings.mock_user_email
        return
    user = request.headers.get(settings.auth_header, "").strip()
    if not user:
        abort(401, message=f"no identity: the {settings.auth_header} header is missing")
    if len(user) > IDENTITY_MAX_CHARS:
        abort(
            401, message=f"the {settings.auth_header} header is longer than {IDENTITY_MAX_CHARS} characters"
        )
    g.user = user


def page_of(session: Session, query: Select, pagination_parameters: Any) -> list[Any]:
    """The requested page of ``query``'s rows, its total (exact, or an estimate past
    ``schedules.EXACT_COUNT_LIMIT``) set for the ``X-Pagination`` header."""
    total = schedules.count_rows(session, query)
    pagination_parameters.item_count = total.rows
    pagination_parameters.total_is_estimate = total.is_estimate
    page = schedules.Page(pagination_parameters.page, pagination_parameters.page_size)
    return list(session.scalars(page.apply(query)).all())


def task_view(schedule: TaskSchedule, last_run_status: str | None) -> dict[str, Any]:
    view = {column: getattr(schedule, column) for column in schedules.FIELDS.values()}
    view.update(
        id=schedule.id,
        created_by=schedule.created_by,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        last_run_at=schedule.last_run_at,
        next_run_at=schedule.next_run_at,
        version=schedule.version,
        description=schedules.describe_schedule(schedule),
        last_run_status=last_run_status,
    )
    return view


def validation_error(exc: schedules.ValidationFailed) -> None:
    fields_named = ", ".join(sorted(exc.errors))
    abort(422, message=f"invalid value for {fields_named}", errors={"json": exc.errors})


def load_task(task_id: int) -> dict[str, Any]:
    with runtime().sessions() as session:
        schedule = schedules.get_schedule(session, task_id)
        if schedule is None:
            abort(404, message=f"no task with id {task_id}")
        last = schedules.latest_runs(session, schedule_ids=[task_id]).get(task_id)
        return task_view(schedule, last.status if last else None)


def update_task(task_id: int, sent: dict[str, Any]) -> dict[str, Any]:
    try:
        schedule = schedules.update_schedule(runtime(), task_id, sent)
    except schedules.ValidationFailed as exc:
        validation_error(exc)
    if schedule is None:
        abort(404, message=f"no task with id {task_id}")
    return load_task(task_id)


@blp.route("/tasks")
class Tasks(MethodView):
    @blp.arguments(TaskFiltersSchema, location="query")
    @blp.response(200, TaskSchema(many=True))
    @blp.paginate(**PAGINATION)
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> list[dict[str, Any]]:
        """User schedules, oldest first (system crons are at /system-tasks)."""
        query = schedules.schedules_query(
            filters.get("enabled"), filters.get("taskType"), filters.get("q"), filters.get("afterId")
        )
        with runtime().sessions() as session:
            rows = page_of(session, query, pagination_parameters)
            last = schedules.latest_runs(session, schedule_ids=[row.id for row in rows])
            return [task_view(row, last[row.id].status if row.id in last else None) for row in rows]

    @blp.arguments(TaskInSchema)
    @blp.response(201, TaskSchema)
    def post(self, sent: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Create a schedule and arm it."""
        try:
            schedule = schedules.create_schedule(runtime(), sent, created_by=g.user)
        except schedules.ValidationFailed as exc:
            validation_error(exc)
        location = url_for("scheduler.Task", task_id=schedule.id)
        return load_task(schedule.id), 201, {"Location": location}


@blp.route("/tasks/<int:task_id>")
class Task(MethodView):
    @blp.response(200, TaskSchema)
    def get(self, task_id: int) -> dict[str, Any]:
        """One schedule."""
        return load_task(task_id)

    @blp.arguments(TaskInSchema)
    @blp.response(200, TaskSchema)
    def put(self, sent: dict[str, Any], task_id: int) -> dict[str, Any]:
        """Change some fields (partial update); the schedule is re-armed from its next slot."""
        return update_task(task_id, sent)

    @blp.arguments(TaskInSchema)
    @blp.response(200, TaskSchema)
    def patch(self, sent: dict[str, Any], task_id: int) -> dict[str, Any]:
        """The same as PUT: a partial update."""
        return update_task(task_id, sent)

    @blp.response(204)
    def delete(self, task_id: int) -> None:
        """Delete a schedule; its run history is kept."""
        if not schedules.delete_schedule(runtime(), task_id):
            abort(404, message=f"no task with id {task_id}")


@blp.route("/tasks/<int:task_id>/run")
class RunNow(MethodView):
    @blp.response(202, HistorySchema)
    def post(self, task_id: int) -> Any:
        """Run Now: queue one manual run, enabled or not; the schedule's next slot does not move."""
        run = schedules.run_now(runtime(), task_id)
        if run is None:
            abort(404, message=f"no task with id {task_id}")
        return run


@blp.route("/history")
class History(MethodView):
    @blp.arguments(HistoryFiltersSchema, location="query")
    @blp.response(200, HistorySchema(many=True))
    @blp.paginate(**PAGINATION)
    def get(self, filters: dict[str, Any], pagination_parameters: Any) -> Any:
        """Runs, newest first."""
        query = schedules.history_query(
            filters.get("scheduleId"),
            filters.get("status"),
            filters.get("triggeredBy"),
            filters.get("systemTask"),
            filters.get("beforeId"),
        )
        with runtime().sessions() as session:
            return page_of(session, query, pagination_parameters)


@blp.route("/system-tasks")
class SystemTasks(MethodView):
    @blp.response(200, SystemTaskSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """The system crons (read-only), with their real last and next runs."""
        now = utcnow()
        with runtime().sessions() as session:
            last = schedules.latest_runs(session, system_tasks=[task.id for task in SYSTEM_TASKS])
            return [
                {
                    "id": task.id,
                    "name": task.name,
                    "taskType": SYSTEM_TASK_TYPE,
                    "cronExpression": task.cron_expression,
                    "timezone": SYSTEM_TIMEZONE,
                    "description": task.description,
                    "scheduleDescription": describe_cron(CronSpec.parse(task.cron_expression)),
                    "lastRunAt": last[task.id].started_at if task.id in last else None,
                    "lastStatus": last[task.id].status if task.id in last else None,
                    "nextRunAt": next(task.slots_after(now)),
                }
                for task in SYSTEM_TASKS
            ]


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, MeSchema)
    def get(self) -> dict[str, str]:
        """Who the API takes the caller to be (shown in the page's header)."""
        return {"email": g.user, "authMode": runtime().settings.auth_mode}


@blp.route("/task-types")
class TaskTypes(MethodView):
    @blp.response(200, TaskTypeSchema(many=True))
    def get(self) -> Any:
        """What a schedule can run, with the config form of each type."""
        return list(TASK_TYPES)  # a tuple would be read as (body, status, headers)


@blp.route("/timezones")
class Timezones(MethodView):
    @blp.response(200)
    def get(self) -> list[str]:
        """The IANA timezone names a schedule may carry."""
        return list(all_timezones())


@blp.route("/cron/preview")
class CronPreview(MethodView):
    @blp.arguments(CronPreviewQuerySchema, location="query")
    @blp.response(200, CronPreviewSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Describe a cron expression and list its next slots, by the same DST policy the workers use."""
        try:
            load_timezone(query["timezone"])
        except ValueError as exc:
            abort(422, message=str(exc), errors={"query": {"timezone": [str(exc)]}})
        try:
            spec = CronSpec.parse(query["expression"])
        except InvalidCron as exc:
            return {"valid": False, "description": None, "nextRuns": [], "error": str(exc)}
        slots = iter_cron_slots(spec, query["timezone"], query.get("after") or utcnow())
        next_runs = [slot for _, slot in zip(range(query["count"]), slots, strict=False)]
        return {"valid": True, "description": describe_cron(spec), "nextRuns": next_runs, "error": None}
