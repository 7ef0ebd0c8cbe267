"""The REST API under /api/scheduler. Views only translate: parse with a schema, call shared/, dump."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from flask import Request, Response, current_app, g, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, Page
from marshmallow import Schema, ValidationError, validate
from sqlalchemy import Select
from sqlalchemy.orm import Session
from webargs.core import missing
from webargs.flaskparser import FlaskParser, abort, is_json_request  # abort: flask-smorest's, typed NoReturn
from werkzeug.routing import IntegerConverter, Map

from services.api.auth import REQUIRED_PERMISSION, Caller, caller, require, requires
from services.api.request_ids import request_id
from services.api.schemas import (
    RUN_ID_MAX,
    SCHEDULE_ID_MAX,
    AuditEventSchema,
    AuditFiltersSchema,
    BackfillResultSchema,
    BackfillSchema,
    ChangedTasksSchema,
    CronPreviewQuerySchema,
    CronPreviewSchema,
    ErrorSchema,
    HistoryFiltersSchema,
    HistorySchema,
    MadeTokenSchema,
    MeSchema,
    RunNowSchema,
    SystemTaskSchema,
    TaskFiltersSchema,
    TaskInSchema,
    TaskListItemSchema,
    TaskSchema,
    TaskTypeSchema,
    TaskUpdateSchema,
    TokenInSchema,
    TokenSchema,
)
from shared import schedules, tokens
from shared.access import GRANTS, Permission, least_role
from shared.audit import Actor, audit_query
from shared.backfill import Backfill, backfill
from shared.cron import all_timezones
from shared.db import utcnow
from shared.models import ApiToken, TaskRunHistory, TaskSchedule
from shared.runtime import Runtime
from shared.system_tasks import system_task_statuses
from shared.timing import CronPreview, preview_cron

JSON = "application/json"
TASK = "/tasks/<task_id:task_id>"  # every route under it answers 404 for an id that names no schedule
TOKEN = "/tokens/<task_id:token_id>"  # the same bounds as a task's id (an integer column)

# The errors every operation documents (flask-smorest adds the 422 of each parsed argument and the default).
UNAUTHORIZED = (
    401,
    "No identity: the identity header (AUTH_MODE=header) or bearer token (AUTH_MODE=oidc) is missing or refused "
    "(the message says why), or an API token is unknown, revoked or expired",
)
FORBIDDEN = (403, "The caller's role does not permit this (the message names the role it needs)")
NOT_FOUND = (404, "No task with this id")
MALFORMED = (400, "The body is not well-formed JSON")
NOT_JSON = (415, f"The body is not sent as {JSON}")
TOO_LARGE = (413, "The body is larger than MAX_REQUEST_BYTES (by default 1 MiB): refused, nothing done")

# Optimistic concurrency (RFC 9110 8.8.3, 13.1.1). A task's entity tag is "<id>-<version>" (``etag``): strong, and
# every edit makes a new one. PUT, PATCH and DELETE take If-Match, compared with the row's version under the lock
# the write takes (``expected_versions`` of shared/schedules.py), so two edits made against one version cannot
# both apply. If-Match is optional: without it (or with "*") nothing is compared.
ETAG_HEADER = {
    "description": (
        "The task's entity tag, \"<id>-<version>\" with its double quotes (version: the task's, which every edit "
        "increments): a strong tag. Send it back as If-Match to change or delete the task only as it was read. It "
        "tags what operators edit: nextRunAt, lastRunAt and lastRunStatus move under one tag, so it is no cache "
        "validator"
    ),
    "schema": {"type": "string", "example": '"42-3"'},
}
IF_MATCH_PARAMETER = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": (
        "Change the task only if it is as it was read (RFC 9110): the ETag that its GET, its create or its last "
        'edit answered, quotes included ("42-3"); of a list of tags, any. Omitted, or "*": no check. A tag of '
        "another version, a weak one (W/...), another task's or a malformed field matches nothing: 412, and "
        "nothing changes"
    ),
    "schema": {"type": "string", "example": '"42-3"'},
}
PRECONDITION_FAILED = (
    412,
    "If-Match names no version the task is at: it changed since it was read (or the field names no tag of it). "
    "Nothing was changed; the ETag header gives the current tag",
)
# A strong entity tag's opaque part that names a task's version: "<id>-<version>", digits as the API writes them.
TASK_ETAG = re.compile(r"([1-9][0-9]{0,9})-([1-9][0-9]{0,9})")
# One element of If-Match's list (``#entity-tag``: empty elements allowed), with its separator; entity-tag is
# [ "W/" ] DQUOTE *etagc DQUOTE, where etagc is any visible character but the quote, or obs-text.
IF_MATCH_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|$)')

PAGINATION_HEADER = {
    "description": (
        "The page, as a JSON object in a string: total, total_pages, first_page, last_page, page, previous_page "
        "and next_page (integers, each absent where it does not apply), and total_is_estimate (true, present "
        f"only when total is the database's estimate, past {schedules.EXACT_COUNT_LIMIT:,} rows)"
    ),
    "schema": {
        "type": "string",
        "example": '{"total": 101, "total_pages": 2, "first_page": 1, "last_page": 2, "page": 1, "next_page": 2}',
    },
}


class TaskIdConverter(IntegerConverter):
    """A task id in a path (``<task_id:task_id>``): digits, read as an int. An id past the largest a schedule can
    have (``SCHEDULE_ID_MAX``, which the spec documents as the parameter's maximum) is the 404 of any id that
    names no task, answered without asking the database (which would refuse it)."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=SCHEDULE_ID_MAX)

    def to_python(self, value: str) -> int:
        if len(value) > len(str(SCHEDULE_ID_MAX)) or int(value) > SCHEDULE_ID_MAX:
            no_such_task(value)
        return int(value)


class JsonBodyParser(FlaskParser):
    """webargs' parser, except that:

    - a body sent as another media type is refused (415) rather than read as no body at all (a request with
      neither a body nor a Content-Type still reads as an empty body);
    - a body is read as strict JSON: NaN and Infinity, which Python's reader takes, are malformed (400), as is a
      body nested deeper than it follows or an integer of more digits than Python reads;
    - what PostgreSQL cannot store is a 422 naming where it is (``unstorable``): text with a NUL character or an
      unpaired surrogate, anywhere in a body or in a query parameter the schema reads, and a number past a
      double's range (``1e999``) in a body. Checked before any field, so a filter never reaches the database
      with it either."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            if req.mimetype or req.get_data(cache=True):
                abort(415, message=f"the body must be sent as {JSON}, not {req.mimetype or 'untyped'}")
            return missing
        text = req.get_data(cache=True).decode()  # not UTF-8: webargs' 400
        try:
            return json.loads(text, parse_constant=not_json)
        except json.JSONDecodeError:
            raise  # an empty body is no body; webargs answers the rest with its 400
        except (ValueError, RecursionError) as exc:
            raise json.JSONDecodeError(f"not JSON this API reads: {exc}", text, 0) from exc

    def pre_load(self, location_data: Any, *, schema: Schema, req: Request, location: str) -> Any:
        errors: dict[str, list[str]] = {}
        if location == "json":
            errors = unstorable(location_data)
        elif location == "query":  # each parameter the schema reads, each time it is given
            keys = {field.data_key or name for name, field in schema.load_fields.items()}
            problems = {key: {text_problem(value) for value in req.args.getlist(key)} for key in keys}
            errors = {key: sorted(filter(None, found)) for key, found in problems.items() if any(found)}
        if errors:
            raise ValidationError(errors)
        return super().pre_load(location_data, schema=schema, req=req, location=location)


def not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON value")


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (as text or in JSONB), if it cannot."""
    if "\x00" in text:
        return "must not contain the NUL character (\\u0000)"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "must be Unicode text: an unpaired surrogate (\\ud800 to \\udfff) is not"
    return None


def unstorable(body: Any) -> dict[str, list[str]]:
    """Where a parsed JSON body holds what PostgreSQL cannot store, keyed by the path of each value (``name``,
    ``config.args.0``; a bad key by its object's). Iterative: a body as deep as the JSON reader follows is walked
    whole."""
    errors: dict[str, list[str]] = {}
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        problem = None
        if isinstance(value, str):
            problem = text_problem(value)
        elif isinstance(value, float) and not math.isfinite(value):
            problem = "must be a finite number, at most about 1.8e308"
        elif isinstance(value, dict):
            for key, item in value.items():
                key_problem = text_problem(key)
                if key_problem:
                    errors.setdefault(path or key, []).append(f"a key {key_problem}")
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend(
                (f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value)
            )
        if problem:
            errors.setdefault(path or "_schema", []).append(problem)
    return errors


class SchedulerBlueprint(Blueprint):
    """flask-smorest's Blueprint, which also documents the errors each operation can answer, in one place: 401
    for all (the caller is identified before any view), 404 for the routes of one task, 400, 413 and 415 for
    those that read a JSON body; documents ``X-Pagination`` as the JSON string it is, which also says when
    ``total`` is an estimate; and bounds ``page`` by the last offset PostgreSQL takes."""

    ARGUMENTS_PARSER = JsonBodyParser()
    PAGINATION_ARGUMENTS_PARSER = ARGUMENTS_PARSER

    def route(self, rule: str, **options: Any) -> Any:
        register = super().route(rule, **options)
        errors = [UNAUTHORIZED, FORBIDDEN]
        if rule.startswith(TASK) or rule.startswith(TOKEN):
            errors.append(NOT_FOUND)
        return lambda view: register(
            self._decorate_view_func_or_method_view(self._documenting_errors(errors), view)
        )

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Any:
        parse = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse
        return lambda view: self._documenting_errors([MALFORMED, NOT_JSON, TOO_LARGE])(parse(view))

    def paginate(self, pager: Any = None, **params: Any) -> Any:
        """flask-smorest's, except that a ``page`` whose offset is past a bigint (``RUN_ID_MAX``) at the largest
        page size is a 422 naming it (its maximum documented), not a query the database refuses."""
        paginate = super().paginate(pager, **params)
        last_page = RUN_ID_MAX // params.get(
            "max_page_size", self.DEFAULT_PAGINATION_PARAMETERS["max_page_size"]
        )

        def decorate(view: Any) -> Any:
            paged = paginate(view)
            # The parameters' schema, made for this view alone, before its first instance: bound its page field.
            page_params_schema = paged._apidoc["pagination"]["parameters"]["schema"]
            page_params_schema._declared_fields["page"].validators = [validate.Range(min=1, max=last_page)]
            return paged

        return decorate

    def requires(self, permission: Permission) -> Any:
        """A view that needs ``permission`` (``auth.requires``), which its operation's description says."""

        def decorate(view: Any) -> Any:
            note = f"Needs the {least_role(permission)} role ({permission})."
            view.__doc__ = f"{(view.__doc__ or '').rstrip()}\n\n{note}"
            return requires(permission)(view)

        return decorate

    def if_match(self, view: Any) -> Any:
        """Documents the optional If-Match header of a view that changes one task, and its 412."""
        status, description = PRECONDITION_FAILED
        view = self.alt_response(
            status,
            schema=ErrorSchema,
            description=description,
            headers={"ETag": {**ETAG_HEADER, "description": "The task's entity tag now"}},
        )(view)
        return self.doc(parameters=[IF_MATCH_PARAMETER])(view)

    def _documenting_errors(self, errors: list[tuple[int, str]]) -> Any:
        def decorate(view: Any) -> Any:
            for status, description in errors:
                view = self.alt_response(status, schema=ErrorSchema, description=description)(view)
            return view

        return decorate

    def _document_pagination_metadata(self, spec: Any, resp_doc: dict[str, Any]) -> None:
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = PAGINATION_HEADER

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


def runtime() -> Runtime:
    built: Runtime = current_app.extensions["cronwork"]
    return built


def db() -> Session:
    """The request's session: opened on first use, closed when the request ends."""
    if "db_session" not in g:
        g.db_session = runtime().sessions()
    session: Session = g.db_session
    return session


@blp.teardown_request
def close_session(_error: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


@blp.before_request
def identify_caller() -> None:
    """Every call is identified (``auth.Identifier``: a 401 without identity). A view that needs a permission
    checks it (``SchedulerBlueprint.requires``); any other needs a role, any role, to read (only /me answers a
    caller without one, to say so)."""
    g.caller = current_app.extensions["cronwork.identifier"].identify(request)
    view_class = getattr(current_app.view_functions.get(request.endpoint or ""), "view_class", None)
    handler = getattr(view_class, request.method.lower(), None)
    if request.endpoint != "scheduler.Me" and not hasattr(handler, REQUIRED_PERMISSION):
        require(Permission.VIEW)


def actor() -> Actor:
    """This request's caller as the audit trail names them."""
    return caller().actor(request_id())


class SelectPager(Page):
    """Pages a select statement of ORM rows in the request's session. The total for ``X-Pagination`` is exact
    up to ``schedules.EXACT_COUNT_LIMIT`` rows, past it the planner's estimate (flagged ``total_is_estimate``)."""

    collection: Select[Any]

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
def invalid_input_as_422(schema: TaskInSchema | BackfillSchema | None = None) -> Iterator[None]:
    """Turn the domain's ``ValidationFailed`` into a 422 naming each field by its wire name in ``schema``
    (default: a schedule's)."""
    try:
        yield
    except schedules.ValidationFailed as exc:
        errors = (TaskInSchema() if schema is None else schema).wire_errors(exc.errors)
        abort(422, message=f"invalid value for {', '.join(sorted(errors))}", errors={"json": errors})


def etag(task_id: int, version: int) -> str:
    """A task's entity tag at ``version`` (``ETAG_HEADER``)."""
    return f'"{task_id}-{version}"'


def tagged(schedule: TaskSchedule) -> dict[str, str]:
    """The headers that tag an answer carrying ``schedule``."""
    return {"ETag": etag(schedule.id, schedule.version)}


def entity_tags(field: str) -> list[tuple[bool, str]] | None:
    """If-Match's list of entity tags, each as (weak, opaque tag); None when the field is not such a list."""
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(field):
        element = IF_MATCH_ELEMENT.match(field, position)
        if element is None:
            return None
        if element[2] is not None:
            tags.append((element[1] is not None, element[2]))
        position = element.end()
    return tags


def if_match_versions(task_id: int) -> Collection[int] | None:
    """The versions of task ``task_id`` that this request's If-Match names: None (any) without the field or with
    "*". Otherwise those of its strong tags that are this task's; a weak tag never matches (If-Match compares
    strongly), and a malformed field names none (RFC 9110 13.1.1: the condition is false)."""
    fields = request.headers.getlist("If-Match")
    if not fields:
        return None
    field = ", ".join(fields)
    if field.strip(" \t") == "*":
        return None
    versions = set()
    for weak, opaque in entity_tags(field) or []:
        named = TASK_ETAG.fullmatch(opaque)
        if not weak and named and int(named[1]) == task_id:
            versions.add(int(named[2]))
    return versions


@contextmanager
def version_conflict_as_412(task_id: int, expected_versions: Collection[int] | None) -> Iterator[None]:
    """Turn the domain's ``VersionConflict`` into a 412 that names the task's version and carries its ETag."""
    try:
        yield
    except schedules.VersionConflict as exc:
        current = etag(task_id, exc.current_version)
        why = (
            f"task {task_id} changed since it was read"
            if expected_versions
            else f'If-Match names no entity tag of task {task_id} (its tags are "<id>-<version>", quoted)'
        )
        abort(
            412,
            message=(
                f"{why}: it is at version {exc.current_version} now, ETag {current}. Nothing was changed: read "
                "it again, then redo the change on what it is now"
            ),
            headers={"ETag": current},
        )


def no_such_task(task_id: int | str) -> NoReturn:
    abort(404, message=f"no task with id {task_id}")


def stored_task(task_id: int) -> TaskSchedule:
    return schedules.get_schedule(db(), task_id) or no_such_task(task_id)


@blp.route("/tasks")
class Tasks(MethodView):
    @blp.doc(operationId="listTasks")
    @blp.arguments(TaskFiltersSchema, location="query")
    @blp.response(200, TaskListItemSchema(many=True))
    @blp.paginate(SelectPager, **PAGINATION)
    def get(self, filters: dict[str, Any]) -> Select[Any]:
        """User schedules, oldest first (system crons are at /system-tasks): each without its config, which
        GET /tasks/{task_id} gives, but with a line that sums it up (configSummary)."""
        return schedules.schedules_query(**filters)

    @blp.doc(operationId="createTask")
    @blp.requires(Permission.CREATE)
    @blp.arguments(TaskInSchema)
    @blp.response(
        201,
        TaskSchema,
        headers={
            "Location": {"description": "The new task's URL", "schema": {"type": "string"}},
            "ETag": ETAG_HEADER,
        },
    )
    def post(self, sent: schedules.ScheduleInput) -> tuple[TaskSchedule, int, dict[str, str]]:
        """Create a schedule and arm it."""
        with invalid_input_as_422():
            schedule = schedules.create_schedule(runtime(), db(), sent, actor())
        return schedule, 201, {"Location": url_for("scheduler.Task", task_id=schedule.id), **tagged(schedule)}


@blp.route("/tasks/pause")
class PauseTasks(MethodView):
    @blp.doc(operationId="pauseTasks")
    @blp.requires(Permission.TOGGLE)
    @blp.arguments(TaskFiltersSchema, location="query")
    @blp.response(200, ChangedTasksSchema)
    def post(self, filters: dict[str, Any]) -> dict[str, list[int]]:
        """Disable every schedule the filters select (the same filters as the list), each as its own edit."""
        return {
            "changed": schedules.set_enabled_where(
                runtime(), db(), schedules.schedules_query(**filters), False, actor()
            )
        }


@blp.route("/tasks/resume")
class ResumeTasks(MethodView):
    @blp.doc(operationId="resumeTasks")
    @blp.requires(Permission.TOGGLE)
    @blp.arguments(TaskFiltersSchema, location="query")
    @blp.response(200, ChangedTasksSchema)
    def post(self, filters: dict[str, Any]) -> dict[str, list[int]]:
        """Enable every schedule the filters select, each re-armed from its next slot."""
        return {
            "changed": schedules.set_enabled_where(
                runtime(), db(), schedules.schedules_query(**filters), True, actor()
            )
        }


@blp.route(TASK)
class Task(MethodView):
    @blp.doc(operationId="getTask")
    @blp.response(200, TaskSchema, headers={"ETag": ETAG_HEADER})
    def get(self, task_id: int) -> tuple[TaskSchedule, dict[str, str]]:
        """One schedule, tagged with its ETag."""
        schedule = stored_task(task_id)
        return schedule, tagged(schedule)

    @blp.doc(operationId="updateTask")
    @blp.requires(Permission.TOGGLE)
    @blp.if_match
    @blp.arguments(TaskUpdateSchema)
    @blp.response(200, TaskSchema, headers={"ETag": ETAG_HEADER})
    def put(self, sent: schedules.ScheduleInput, task_id: int) -> tuple[TaskSchedule, dict[str, str]]:
        """Change some fields (partial update); a timing change re-arms the schedule from its next slot. With
        If-Match, only if the task is still as read. Enabling or disabling alone (only enabled sent) needs the
        operator role; changing anything else, the admin role."""
        return self.update(task_id, sent)

    @blp.doc(operationId="patchTask")
    @blp.requires(Permission.TOGGLE)
    @blp.if_match
    @blp.arguments(TaskUpdateSchema)
    @blp.response(200, TaskSchema, headers={"ETag": ETAG_HEADER})
    def patch(self, sent: schedules.ScheduleInput, task_id: int) -> tuple[TaskSchedule, dict[str, str]]:
        """The same as PUT: a partial update."""
        return self.update(task_id, sent)

    @blp.doc(operationId="deleteTask")
    @blp.requires(Permission.DELETE)
    @blp.if_match
    @blp.response(204)
    def delete(self, task_id: int) -> None:
        """Delete a schedule; its run history is kept. With If-Match, only if the task is still as read."""
        expected = if_match_versions(task_id)
        with version_conflict_as_412(task_id, expected):
            deleted = schedules.delete_schedule(db(), task_id, expected, actor())
        if not deleted:
            no_such_task(task_id)

    @staticmethod
    def update(task_id: int, sent: schedules.ScheduleInput) -> tuple[TaskSchedule, dict[str, str]]:
        if set(sent) - {"enabled"}:
            require(Permission.EDIT)
        expected = if_match_versions(task_id)
        with invalid_input_as_422(), version_conflict_as_412(task_id, expected):
            updated = schedules.update_schedule(
                runtime(), db(), task_id, sent, expected_versions=expected, actor=actor()
            )
        if updated is None:
            no_such_task(task_id)
        schedule = stored_task(task_id)  # with its last run, which the update does not read
        return schedule, tagged(schedule)


@blp.route(f"{TASK}/run")
class RunNow(MethodView):
    @blp.doc(operationId="runTaskNow")
    @blp.requires(Permission.RUN_NOW)
    @blp.arguments(RunNowSchema, required=False)
    @blp.response(202, HistorySchema)
    def post(self, sent: dict[str, Any], task_id: int) -> TaskRunHistory:
        """Run Now: queue one manual run, enabled or not, with a one-off config override if sent; the
        schedule's next slot does not move."""
        with invalid_input_as_422():
            run = schedules.run_now(runtime(), db(), task_id, sent.get("config"), actor())
        return run or no_such_task(task_id)


@blp.route(f"{TASK}/backfill")
class BackfillView(MethodView):
    @blp.doc(operationId="backfillTask")
    @blp.requires(Permission.BACKFILL)
    @blp.arguments(BackfillSchema)
    @blp.response(202, BackfillResultSchema)
    def post(self, sent: dict[str, Any], task_id: int) -> Backfill:
        """Backfill: queue one run for each slot of a past window that has no run yet (enabled or not); a
        slot that already has one is left alone. The schedule's next slot does not move."""
        with invalid_input_as_422(BackfillSchema()):
            done = backfill(runtime(), db(), task_id, sent["from_"], sent["to"], actor())
        return done or no_such_task(task_id)


@blp.route("/history")
class History(MethodView):
    @blp.doc(operationId="listHistory")
    @blp.arguments(HistoryFiltersSchema, location="query")
    @blp.response(200, HistorySchema(many=True))
    @blp.paginate(SelectPager, **PAGINATION)
    def get(self, filters: dict[str, Any]) -> Select[Any]:
        """Runs, newest first."""
        return schedules.history_query(**filters)


@blp.route("/system-tasks")
class SystemTasks(MethodView):
    @blp.doc(operationId="listSystemTasks")
    @blp.response(200, SystemTaskSchema(many=True))
    def get(self) -> list[Any]:
        """The system crons (read-only), with their real last and next runs."""
        return system_task_statuses(db(), runtime().settings, utcnow())


@blp.route("/me")
class Me(MethodView):
    @blp.doc(operationId="getMe")
    @blp.response(200, MeSchema)
    def get(self) -> dict[str, Any]:
        """Who the API takes the caller to be, with their role and what it permits (the page shows the one and
        offers only the other). Answers any identified caller, one without a role too."""
        who: Caller = caller()
        permitted = sorted(GRANTS[who.role]) if who.role else []
        return {
            "name": who.name,
            "authMode": runtime().settings.auth_mode,
            "role": who.role,
            "permissions": permitted,
            "role_needed": {permission: least_role(permission) for permission in Permission},
        }


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.doc(operationId="listTokens")
    @blp.requires(Permission.MANAGE_TOKENS)
    @blp.response(200, TokenSchema(many=True))
    def get(self) -> list[ApiToken]:
        """Every API token, revoked ones too, oldest first; never a secret."""
        return list(db().scalars(tokens.tokens_query()))

    @blp.doc(operationId="createToken")
    @blp.requires(Permission.MANAGE_TOKENS)
    @blp.arguments(TokenInSchema)
    @blp.response(201, MadeTokenSchema)
    def post(self, sent: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Make an API token for a tool: send its secret as Authorization: Bearer <secret>. The answer is the
        only time the secret is shown; only its hash is stored."""
        made = tokens.create_token(db(), actor(), sent["name"].strip(), sent["role"], sent.get("expires_at"))
        columns = {column.key: getattr(made.token, column.key) for column in ApiToken.__table__.columns}
        return {**columns, "secret": made.secret}, 201


@blp.route(TOKEN)
class Token(MethodView):
    @blp.doc(operationId="revokeToken")
    @blp.requires(Permission.MANAGE_TOKENS)
    @blp.response(204)
    def delete(self, token_id: int) -> None:
        """Revoke a token: it is refused from now on (revoking it again changes nothing). It stays listed."""
        if tokens.revoke_token(db(), actor(), token_id) is None:
            abort(404, message=f"no API token with id {token_id}")


@blp.route("/audit")
class Audit(MethodView):
    @blp.doc(operationId="listAudit")
    @blp.arguments(AuditFiltersSchema, location="query")
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate(SelectPager, **PAGINATION)
    def get(self, filters: dict[str, Any]) -> Select[Any]:
        """The audit trail, newest first: every create, update (each changed field before and after), delete,
        enable, disable, Run Now, backfill and token change, with who made it and when."""
        return audit_query(**filters)


@blp.route("/task-types")
class TaskTypes(MethodView):
    @blp.doc(operationId="listTaskTypes")
    @blp.response(200, TaskTypeSchema(many=True))
    def get(self) -> Any:
        """What a schedule can run, with the config form of each type."""
        return list(runtime().task_types.values())


@blp.route("/timezones")
class Timezones(MethodView):
    @blp.doc(operationId="listTimezones")
    @blp.response(200, {"type": "array", "items": {"type": "string"}})
    def get(self) -> Response:
        """The IANA timezone names a schedule may carry, sorted."""
        return jsonify(list(all_timezones()))  # a dict schema only documents: the answer is made here


@blp.route("/cron/preview")
class CronPreviewView(MethodView):
    @blp.doc(operationId="previewCron")
    @blp.arguments(CronPreviewQuerySchema, location="query")
    @blp.response(200, CronPreviewSchema)
    def get(self, query: dict[str, Any]) -> CronPreview:
        """Describe a cron expression and list its next slots, by the same DST policy the workers use."""
        try:
            return preview_cron(
                query["expression"],
                query["timezone"],
                query.get("after") or utcnow(),
                query["count"],
                query.get("start_at"),
                query.get("end_at"),
                query["dst_policy"],
                query["jitter_s"],
                query.get("task_id"),
            )
        except ValueError as exc:  # the timezone: an invalid expression is an answer, not an error
            abort(422, message=str(exc), errors={"query": {"timezone": [str(exc)]}})
