"""The OpenAPI document says everything a client generator needs: a name for every operation, every answer it
can give with its schema, the required fields, the enums, the identity header, and headers as they are sent.
(tests/api/test_openapi_client.py generates a client from it and drives the API with it.)"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.models import RunStatus, ScheduleType, TriggeredBy

OPERATIONS = {
    ("get", "/api/scheduler/tasks"): "listTasks",
    ("post", "/api/scheduler/tasks"): "createTask",
    ("get", "/api/scheduler/tasks/{task_id}"): "getTask",
    ("put", "/api/scheduler/tasks/{task_id}"): "updateTask",
    ("patch", "/api/scheduler/tasks/{task_id}"): "patchTask",
    ("delete", "/api/scheduler/tasks/{task_id}"): "deleteTask",
    ("post", "/api/scheduler/tasks/{task_id}/run"): "runTaskNow",
    ("post", "/api/scheduler/tasks/{task_id}/backfill"): "backfillTask",
    ("post", "/api/scheduler/tasks/pause"): "pauseTasks",
    ("post", "/api/scheduler/tasks/resume"): "resumeTasks",
    ("get", "/api/scheduler/history"): "listHistory",
    ("get", "/api/scheduler/system-tasks"): "listSystemTasks",
    ("get", "/api/scheduler/me"): "getMe",
    ("get", "/api/scheduler/task-types"): "listTaskTypes",
    ("get", "/api/scheduler/timezones"): "listTimezones",
    ("get", "/api/scheduler/cron/preview"): "previewCron",
    ("get", "/api/scheduler/tokens"): "listTokens",
    ("post", "/api/scheduler/tokens"): "createToken",
    ("delete", "/api/scheduler/tokens/{token_id}"): "revokeToken",
    ("get", "/api/scheduler/audit"): "listAudit",
}
WITH_JSON_BODY = {"createTask", "updateTask", "patchTask", "runTaskNow", "backfillTask", "createToken"}
OF_ONE_TASK = {
    "getTask",
    "updateTask",
    "patchTask",
    "deleteTask",
    "runTaskNow",
    "backfillTask",
    "revokeToken",
}
WITH_PARAMETERS = WITH_JSON_BODY | {
    "listTasks",
    "pauseTasks",
    "resumeTasks",
    "listHistory",
    "previewCron",
    "listAudit",
}
WITH_IF_MATCH = {"updateTask", "patchTask", "deleteTask"}  # a stale If-Match is a 412


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method != "parameters":
                yield method, path, operation


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["components"]["schemas"][name]


def enum_of(document: dict[str, Any], schema_name: str, field: str) -> list[str | None]:
    """The values a field takes, through the enum schema it refers to."""
    prop = schema(document, schema_name)["properties"][field]
    (reference,) = prop["allOf"]
    return schema(document, reference["$ref"].rsplit("/", 1)[1])["enum"]


def test_every_operation_has_its_own_operation_id(document: dict[str, Any]) -> None:
    named = {(method, path): operation.get("operationId") for method, path, operation in operations(document)}

    assert named == OPERATIONS


def test_every_operation_documents_each_error_it_can_answer(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        name = operation["operationId"]
        expected = {"401", "403"}  # no identity; a role that does not permit it
        if name in WITH_JSON_BODY:
            expected |= {"400", "413", "415"}
        if name in OF_ONE_TASK:
            expected |= {"404"}
        if name in WITH_PARAMETERS:
            expected |= {"422"}
        if name in WITH_IF_MATCH:
            expected |= {"412"}
        errors = {status for status in operation["responses"] if status.startswith(("4", "5"))}
        assert errors == expected, (method, path)


def test_every_response_but_204_has_a_schema(document: dict[str, Any]) -> None:
    components = document["components"]["responses"]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if "$ref" in response:
                response = components[response["$ref"].rsplit("/", 1)[1]]
            if status == "204":
                assert "content" not in response, (method, path)
                continue
            assert response["content"]["application/json"]["schema"], (method, path, status)


def test_timezones_are_documented_as_an_array_of_strings(document: dict[str, Any]) -> None:
    answer = document["paths"]["/api/scheduler/timezones"]["get"]["responses"]["200"]

    assert answer["content"]["application/json"]["schema"] == {"type": "array", "items": {"type": "string"}}


def test_create_requires_name_task_type_and_schedule_type_and_update_requires_nothing(
    document: dict[str, Any],
) -> None:
    create = document["paths"]["/api/scheduler/tasks"]["post"]["requestBody"]["content"]["application/json"]
    update = document["paths"]["/api/scheduler/tasks/{task_id}"]["put"]["requestBody"]["content"]
    patch = document["paths"]["/api/scheduler/tasks/{task_id}"]["patch"]["requestBody"]["content"]

    assert create["schema"] == {"$ref": "#/components/schemas/TaskIn"}
    assert set(schema(document, "TaskIn")["required"]) == {"name", "taskType", "scheduleType"}
    for body in (update, patch):
        assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/TaskUpdate"}
    assert "required" not in schema(document, "TaskUpdate")
    assert schema(document, "TaskUpdate")["properties"] == schema(document, "TaskIn")["properties"]


def test_answers_mark_every_field_they_always_send_as_required(document: dict[str, Any]) -> None:
    for name in (
        "Task",
        "TaskListItem",
        "History",
        "SystemTask",
        "TaskType",
        "ConfigField",
        "Me",
        "CronPreview",
        "Token",
        "MadeToken",
        "AuditEvent",
    ):
        answer = schema(document, name)
        assert set(answer["required"]) == set(answer["properties"]), name


def test_task_types_are_strings_as_plugins_add_their_own(document: dict[str, Any]) -> None:
    # An enum would make a generated client refuse a schedule whose task type it was not generated with.
    for name in ("TaskIn", "Task"):
        assert schema(document, name)["properties"]["taskType"] == {
            "type": "string",
            "description": "What runs: the id of a task type that GET /task-types lists (plugins add their own)",
        }


def test_enums_are_documented_once_each_and_referred_to(document: dict[str, Any]) -> None:
    assert enum_of(document, "ConfigField", "type") == ["select", "text", "number", "url", "json"]
    assert enum_of(document, "TaskIn", "scheduleType") == list(ScheduleType)
    assert enum_of(document, "History", "status") == list(RunStatus)
    assert enum_of(document, "History", "triggeredBy") == list(TriggeredBy)
    assert enum_of(document, "Me", "authMode") == ["dev", "header", "oidc"]
    assert enum_of(document, "Me", "role") == ["viewer", "operator", "admin"]
    assert enum_of(document, "AuditEvent", "action") == [
        "create",
        "update",
        "delete",
        "enable",
        "disable",
        "runNow",
        "backfill",
        "tokenCreate",
        "tokenRevoke",
    ]
    last_run_status = schema(document, "Task")["properties"]["lastRunStatus"]
    assert last_run_status["nullable"] is True
    assert last_run_status["allOf"] == [{"$ref": "#/components/schemas/RunStatus"}]
    parameters = document["paths"]["/api/scheduler/history"]["get"]["parameters"]
    status = next(parameter for parameter in parameters if parameter["name"] == "status")
    assert status["schema"]["allOf"] == [{"$ref": "#/components/schemas/RunStatus"}]


def test_config_is_an_object_and_timezone_is_described(document: dict[str, Any]) -> None:
    fields = schema(document, "TaskIn")["properties"]

    assert fields["config"]["type"] == "object"
    assert fields["config"]["additionalProperties"] == {}
    assert "IANA" in fields["timezone"]["description"]
    assert all(
        field.get("type") or field.get("allOf") for field in schema(document, "Task")["properties"].values()
    )


def test_the_identity_header_and_a_bearer_token_are_the_security_schemes_of_every_operation(
    app_with: Callable[..., Flask],
) -> None:
    client = app_with(auth_mode="header", auth_header="X-Auth-Request-Email").test_client()
    document = client.get("/api/openapi.json").get_json()

    schemes = document["components"]["securitySchemes"]
    header = next(name for name, scheme in schemes.items() if scheme["type"] == "apiKey")
    bearer = next(name for name, scheme in schemes.items() if scheme["type"] == "http")
    assert (schemes[header]["in"], schemes[header]["name"]) == ("header", "X-Auth-Request-Email")
    assert schemes[bearer]["scheme"] == "bearer"
    assert document["security"] == [{header: []}, {bearer: []}]


def test_x_pagination_is_documented_as_the_json_string_it_is(
    document: dict[str, Any], client: FlaskClient
) -> None:
    for path in ("/api/scheduler/tasks", "/api/scheduler/history"):
        header = document["paths"][path]["get"]["responses"]["200"]["headers"]["X-Pagination"]
        assert header["schema"]["type"] == "string"
        assert "total_is_estimate" in header["description"]
        assert json.loads(header["schema"]["example"])["total"] == 101
    assert "PaginationMetadata" not in document["components"]["schemas"]

    sent = client.get("/api/scheduler/tasks").headers["X-Pagination"]
    assert json.loads(sent) == {"total": 0, "total_pages": 0}
