"""The REST API under /api/scheduler. Views only translate: parse with a schema, call shared/, dump."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from flask import current_app, g, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, Page
from sqlalchemy import Select
from sqlalchemy.orm import Session
from webargs.flaskparser import abort  # flask-smorest's abort, where it is typed NoReturn

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
from shared.cron import all_timezones
from shared.db import utcnow
from shared.models import TaskRunHistory, TaskSchedule
from shared.runtime import Runtime
from shared.system_tasks import system_task_statuses
from shared.task_types import TASK_TYPES
from shared.timing import CronPreview, preview_cron


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


def db() -> Session:
    """The request's session: opened on first use, closed when the request ends."""
    if "db_session" not in g:
        g.db_session = runtime().sessions()
    return g.db_session


@blp.teardown_request
def close_session(_error: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


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


class SelectPager(Page):
    """Pages a select statement of ORM rows in the request's session. The total for ``X-Pagination`` is exact
    up to ``schedules.EXACT_COUNT_LIMIT`` rows, past it the planner's estimate (flagged ``total_is_estimate``)."""

    collection: Select

    @property
    def items(self) -> list[Any]:
        query = self.collection.limit(self.page_params.page_size).offset(self.page_params.first_item)
        return list(db().scalars(query))

    @property
    def item_count(self) -> int:
        total = schedules.count_rows(db(), self.collection)
        self.page_params.total_is_estimate = total.is_estimate
        return total.rows


@contextmanager
def invalid_input_as_422() -> Iterator[None]:
    """Turn the domain's ``ValidationFailed`` into a 422 naming each field by its wire name."""
    try:
        yield
    except schedules.ValidationFailed as exc:
        errors = TaskInSchema().wire_errors(exc.errors)
        abort(422, message=f"invalid value for {', '.join(sorted(errors))}", errors={"json": errors})


def no_such_task(task_id: int) -> NoReturn:
    abort(404, message=f"no task with id {task_id}")


def stored_task(task_id: int) -> TaskSchedule:
    return schedules.get_schedule(db(), task_id) or no_such_task(task_id)


@blp.route("/tasks")
class Tasks(MethodView):
    @blp.arguments(TaskFiltersSchema, location="query")
    @blp.response(200, TaskSchema(many=True))
    @blp.paginate(SelectPager, **PAGINATION)
    def get(self, filters: dict[str, Any]) -> Select:
        """User schedules, oldest first (system crons are at /system-tasks)."""
        return schedules.schedules_query(**filters)

    @blp.arguments(TaskInSchema)
    @blp.response(201, TaskSchema)
    def post(self, sent: schedules.ScheduleInput) -> tuple[TaskSchedule, int, dict[str, str]]:
        """Create a schedule and arm it."""
        with invalid_input_as_422():
            schedule = schedules.create_schedule(runtime(), db(), sent, created_by=g.user)
        return schedule, 201, {"Location": url_for("scheduler.Task", task_id=schedule.id)}


@blp.route("/tasks/<int:task_id>")
class Task(MethodView):
    @blp.response(200, TaskSchema)
    def get(self, task_id: int) -> TaskSchedule:
        """One schedule."""
        return stored_task(task_id)

    @blp.arguments(TaskInSchema)
    @blp.response(200, TaskSchema)
    def put(self, sent: schedules.ScheduleInput, task_id: int) -> TaskSchedule:
        """Change some fields (partial update); a timing change re-arms the schedule from its next slot."""
        return self.update(task_id, sent)

    @blp.arguments(TaskInSchema)
    @blp.response(200, TaskSchema)
    def patch(self, sent: schedules.ScheduleInput, task_id: int) -> TaskSchedule:
        """The same as PUT: a partial update."""
        return self.update(task_id, sent)

    @blp.response(204)
    def delete(self, task_id: int) -> None:
        """Delete a schedule; its run history is kept."""
        if not schedules.delete_schedule(db(), task_id):
            no_such_task(task_id)

    @staticmethod
    def update(task_id: int, sent: schedules.ScheduleInput) -> TaskSchedule:
        with invalid_input_as_422():
            if schedules.update_schedule(runtime(), db(), task_id, sent) is None:
                no_such_task(task_id)
        return stored_task(task_id)  # with its last run, which the update does not read


@blp.route("/tasks/<int:task_id>/run")
class RunNow(MethodView):
    @blp.response(202, HistorySchema)
    def post(self, task_id: int) -> TaskRunHistory:
        """Run Now: queue one manual run, enabled or not; the schedule's next slot does not move."""
        return schedules.run_now(runtime(), db(), task_id) or no_such_task(task_id)


@blp.route("/history")
class History(MethodView):
    @blp.arguments(HistoryFiltersSchema, location="query")
    @blp.response(200, HistorySchema(many=True))
    @blp.paginate(SelectPager, **PAGINATION)
    def get(self, filters: dict[str, Any]) -> Select:
        """Runs, newest first."""
        return schedules.history_query(**filters)


@blp.route("/system-tasks")
class SystemTasks(MethodView):
    @blp.response(200, SystemTaskSchema(many=True))
    def get(self) -> list[Any]:
        """The system crons (read-only), with their real last and next runs."""
        return system_task_statuses(db(), utcnow())


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
class CronPreviewView(MethodView):
    @blp.arguments(CronPreviewQuerySchema, location="query")
    @blp.response(200, CronPreviewSchema)
    def get(self, query: dict[str, Any]) -> CronPreview:
        """Describe a cron expression and list its next slots, by the same DST policy the workers use."""
        try:
            return preview_cron(
                query["expression"], query["timezone"], query.get("after") or utcnow(), query["count"]
            )
        except ValueError as exc:  # the timezone: an invalid expression is an answer, not an error
            abort(422, message=str(exc), errors={"query": {"timezone": [str(exc)]}})
