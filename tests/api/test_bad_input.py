"""No bad input reaches the database as a 5xx: an id no row can have (past PostgreSQL's integer or bigint), a page
past the last offset, text PostgreSQL cannot store (NUL, an unpaired surrogate), a number no double holds. An id in
a path is a 404 saying there is no such task; anything else is a 422 naming the field and the reason; nothing is
stored or changed. Every answer carries an ``X-Request-ID`` (the proxy's, when sane), every error body its
``requestId``, and an unexpected exception is a JSON 500 with no word of it, logged under that id. Against the real
PostgreSQL database and RabbitMQ vhost."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared import schedules
from tests.api.conftest import HISTORY, TASKS, cron_task

PREVIEW = "/api/scheduler/cron/preview?expression=0+9+*+*+1"
INT_MAX = 2**31 - 1  # task_schedules.id, task_run_history.schedule_id
BIGINT_MAX = 2**63 - 1  # task_run_history.id, and OFFSET
LAST_PAGE = BIGINT_MAX // 1000  # at the largest page size, the last page whose offset is a bigint
ERROR_FIELDS = {"code", "status", "message", "errors", "requestId"}  # the documented Error schema
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
WINDOW = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
QUEUE = {"queueName": "reports", "actorName": "publish"}  # a dramatiq_message config: text and JSON fields


def manual(task_type: str = "dramatiq_message", **overrides: Any) -> dict[str, Any]:
    """A valid manual schedule body of ``task_type`` (dramatiq_message: free text and JSON in its config)."""
    return {
        "name": "Send it",
        "taskType": task_type,
        "scheduleType": "manual",
        "config": dict(QUEUE),
        **overrides,
    }


@pytest.fixture
def task(client: FlaskClient, create: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A stored, enabled schedule with a run: what a bad request must leave exactly as it is."""
    stored = create(cron_task(owner="billing", labels={"team": "billing"}))
    assert client.post(f"{TASKS}/{stored['id']}/run").status_code == 202
    return stored


def send(client: FlaskClient, method: str, url: str, body: Any = None, **kwargs: Any) -> TestResponse:
    if isinstance(body, str):  # raw JSON text, for what json.dumps would not write
        return client.open(url, method=method, data=body, content_type="application/json", **kwargs)
    return client.open(url, method=method, json=body, **kwargs)


def error_body(response: TestResponse) -> dict[str, Any]:
    """An error's body, which must be the documented Error with this response's request id."""
    body: dict[str, Any] = response.get_json()
    assert set(body) <= ERROR_FIELDS, body
    assert (body["code"], body["requestId"]) == (response.status_code, response.headers["X-Request-ID"])
    return body


# --- Ids in a path: 404, no such task ---------------------------------------------------------------------------

TASK_ROUTES = [
    ("GET", "", None),
    ("PUT", "", {"name": "Renamed"}),
    ("PATCH", "", {"enabled": False}),
    ("DELETE", "", None),
    ("POST", "/run", None),
    ("POST", "/backfill", WINDOW),
]


@pytest.mark.parametrize("task_id", [INT_MAX + 1, 8_589_934_592, 99_999_999_999_999_999_999])
@pytest.mark.parametrize(
    ("method", "suffix", "body"), TASK_ROUTES, ids=[f"{m} {s}" for m, s, _ in TASK_ROUTES]
)
def test_a_task_id_no_schedule_can_have_is_a_404_and_changes_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    method: str,
    suffix: str,
    body: Any,
    task_id: int,
) -> None:
    before = stored_state()

    response = send(client, method, f"{TASKS}/{task_id}{suffix}", body)

    assert response.status_code == 404
    assert error_body(response)["message"] == f"no task with id {task_id}"
    assert stored_state() == before


def test_the_largest_task_id_a_schedule_can_have_is_looked_up(client: FlaskClient) -> None:
    response = client.get(f"{TASKS}/{INT_MAX}")

    assert response.status_code == 404
    assert error_body(response)["message"] == f"no task with id {INT_MAX}"


# --- Ids and pages in a query: 422 naming them -----------------------------------------------------------------

QUERY_NUMBERS = [
    ("GET", f"{HISTORY}?scheduleId=99999999999", "scheduleId", str(INT_MAX)),
    ("GET", f"{HISTORY}?scheduleId={INT_MAX + 1}", "scheduleId", str(INT_MAX)),
    ("GET", f"{HISTORY}?scheduleId=-99999999999", "scheduleId", "greater than or equal to 1"),
    ("GET", f"{HISTORY}?beforeId={BIGINT_MAX + 1}", "beforeId", str(BIGINT_MAX)),
    ("GET", f"{HISTORY}?beforeId=99999999999999999999", "beforeId", str(BIGINT_MAX)),
    ("GET", f"{TASKS}?afterId={INT_MAX + 1}", "afterId", str(INT_MAX)),
    ("GET", f"{TASKS}?afterId=99999999999999999999", "afterId", str(INT_MAX)),
    ("POST", f"{TASKS}/pause?afterId=99999999999", "afterId", str(INT_MAX)),
    ("POST", f"{TASKS}/resume?afterId=99999999999", "afterId", str(INT_MAX)),
    ("GET", f"{PREVIEW}&taskId=99999999999999999999", "taskId", str(INT_MAX)),
    ("GET", f"{TASKS}?page=99999999999999999999", "page", str(LAST_PAGE)),
    ("GET", f"{TASKS}?page={LAST_PAGE + 1}&page_size=1000", "page", str(LAST_PAGE)),
    ("GET", f"{HISTORY}?page=99999999999999999999", "page", str(LAST_PAGE)),
    ("GET", f"{HISTORY}?page=-99999999999999999999", "page", "greater than or equal to 1"),
    ("GET", f"{TASKS}?page_size=99999999999999999999", "page_size", "1000"),
]


@pytest.mark.parametrize(
    ("method", "url", "field", "reason"), QUERY_NUMBERS, ids=[q[1] for q in QUERY_NUMBERS]
)
def test_an_id_or_page_past_its_column_is_a_422_naming_it_and_changes_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    method: str,
    url: str,
    field: str,
    reason: str,
) -> None:
    before = stored_state()

    response = send(client, method, url)

    assert response.status_code == 422
    errors = error_body(response)["errors"]["query"]
    assert list(errors) == [field]
    assert reason in " ".join(errors[field])
    assert stored_state() == before


@pytest.mark.parametrize(
    "url",
    [
        f"{HISTORY}?scheduleId={INT_MAX}",
        f"{HISTORY}?beforeId={BIGINT_MAX}",
        f"{TASKS}?afterId={INT_MAX}",
        f"{TASKS}?page={LAST_PAGE}&page_size=1000",
        f"{HISTORY}?page={LAST_PAGE}&page_size=1000",
        f"{PREVIEW}&taskId={INT_MAX}&jitterS=30",
    ],
)
def test_the_largest_ids_and_page_are_answered(client: FlaskClient, task: dict[str, Any], url: str) -> None:
    response = client.get(url)

    assert response.status_code == 200, response.get_json()


def test_the_bounds_are_documented(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]

    def parameter(path: str, name: str, method: str = "get") -> dict[str, Any]:
        operation = paths[path][method]
        every = operation.get("parameters", []) + paths[path].get("parameters", [])
        found: dict[str, Any] = next(p for p in every if p["name"] == name)["schema"]
        return found

    assert parameter("/api/scheduler/tasks/{task_id}", "task_id")["maximum"] == INT_MAX
    assert parameter("/api/scheduler/history", "scheduleId")["maximum"] == INT_MAX
    assert parameter("/api/scheduler/history", "beforeId")["maximum"] == BIGINT_MAX
    assert parameter("/api/scheduler/tasks", "afterId")["maximum"] == INT_MAX
    assert parameter("/api/scheduler/tasks", "page")["maximum"] == LAST_PAGE
    assert parameter("/api/scheduler/history", "page")["maximum"] == LAST_PAGE


# --- Text PostgreSQL cannot store: 422 naming the field -----------------------------------------------------------

NUL = "must not contain the NUL character"
SURROGATE = "unpaired surrogate"

QUERY_TEXT = [
    ("GET", f"{TASKS}?q=%00", "q"),
    ("GET", f"{TASKS}?q=report%00", "q"),
    ("GET", f"{TASKS}?taskType=%00", "taskType"),
    ("GET", f"{TASKS}?owner=billing%00", "owner"),
    ("GET", f"{TASKS}?label=team%00=billing", "label"),
    ("GET", f"{TASKS}?label=team=billing&label=env=prod%00", "label"),
    ("POST", f"{TASKS}/pause?q=%00", "q"),
    ("POST", f"{TASKS}/resume?owner=%00", "owner"),
    ("GET", f"{HISTORY}?systemTask=%00", "systemTask"),
    ("GET", f"{HISTORY}?status=%00", "status"),
    ("GET", "/api/scheduler/cron/preview?expression=%00", "expression"),
    ("GET", f"{PREVIEW}&timezone=UTC%00", "timezone"),
]


@pytest.mark.parametrize(("method", "url", "field"), QUERY_TEXT, ids=[q[1] for q in QUERY_TEXT])
def test_a_nul_in_a_query_parameter_is_a_422_naming_it_and_changes_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    method: str,
    url: str,
    field: str,
) -> None:
    before = stored_state()

    response = send(client, method, url)

    assert response.status_code == 422
    errors = error_body(response)["errors"]["query"]
    assert list(errors) == [field]
    assert NUL in errors[field][0]
    assert stored_state() == before


CREATED = [
    (cron_task(name="Weekly\u0000report"), "name", NUL),
    (cron_task(name="Weekly \ud800 report"), "name", SURROGATE),
    (cron_task(owner="billing\u0000"), "owner", NUL),
    (cron_task(labels={"team": "billing\u0000"}), "labels.team", NUL),
    (cron_task(labels={"te\u0000am": "billing"}), "labels", f"a key {NUL}"),
    (cron_task(taskType="report_publish\u0000"), "taskType", NUL),
    (cron_task(cronExpression="0 9 * * 1\u0000"), "cronExpression", NUL),
    (cron_task(timezone="Europe/Berlin\u0000"), "timezone", NUL),
    (cron_task(misfirePolicy="skip\u0000"), "misfirePolicy", NUL),
    (cron_task(config={"reportId": "compliance-weekly\u0000"}), "config.reportId", NUL),
    (cron_task(config={"reportId\u0000": "compliance-weekly"}), "config", f"a key {NUL}"),
    (manual(config={**QUEUE, "queueName": "reports\u0000"}), "config.queueName", NUL),
    (manual(config={**QUEUE, "args": [{"text": "a\u0000b"}]}), "config.args.0.text", NUL),
    (manual(config={**QUEUE, "kwargs": {"deep": {"er": ["\u0000"]}}}), "config.kwargs.deep.er.0", NUL),
    (manual(config={**QUEUE, "args": ["\udfff"]}), "config.args.0", SURROGATE),
    (manual(config={**QUEUE, "brokerUrl": "amqp://\u0000"}), "config.brokerUrl", NUL),
    (
        '{"name": "x", "taskType": "dramatiq_message", "scheduleType": "manual", "config": {"queueName": "q", '
        '"actorName": "a", "args": [1e999]}}',
        "config.args.0",
        "must be a finite number",
    ),
]


@pytest.mark.parametrize(("body", "field", "reason"), CREATED, ids=[c[1] + "-" + c[2][:9] for c in CREATED])
def test_a_new_task_with_text_postgresql_cannot_store_is_a_422_naming_the_field_and_stores_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    body: Any,
    field: str,
    reason: str,
) -> None:
    before = stored_state()

    response = send(client, "POST", TASKS, body)

    assert response.status_code == 422, response.get_json()
    errors = error_body(response)["errors"]["json"]
    assert list(errors) == [field]
    assert reason in errors[field][0]
    assert stored_state() == before


CHANGED = [
    ("PUT", "", {"name": "Renamed\u0000"}, "name"),
    ("PATCH", "", {"owner": "\u0000"}, "owner"),
    ("PATCH", "", {"labels": {"team": "\u0000"}}, "labels.team"),
    ("PATCH", "", {"config": {"reportId": "\u0000"}}, "config.reportId"),
    ("POST", "/run", {"config": {"reportId": "usage-monthly\u0000"}}, "config.reportId"),
    ("POST", "/run", {"config": {"nested": {"list": ["ok", "\u0000"]}}}, "config.nested.list.1"),
    ("POST", "/backfill", {**WINDOW, "to": "2026-01-02\u0000"}, "to"),
]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "field"), CHANGED, ids=[f"{c[0]} {c[3]}" for c in CHANGED]
)
def test_a_change_with_text_postgresql_cannot_store_is_a_422_naming_the_field_and_changes_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    method: str,
    suffix: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = stored_state()

    response = send(client, method, f"{TASKS}/{task['id']}{suffix}", body)

    assert response.status_code == 422, response.get_json()
    errors = error_body(response)["errors"]["json"]
    assert list(errors) == [field]
    assert NUL in errors[field][0]
    assert stored_state() == before


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "x", "taskType": "dramatiq_message", "scheduleType": "manual", "config": {"queueName": "q", '
        '"actorName": "a", "args": [NaN]}}',
        '{"name": "x", "taskType": "http_request", "scheduleType": "manual", "config": {"url": '
        '"https://example.com", "timeoutS": -Infinity}}',
        '{"name": "x", "taskType": "dramatiq_message", "scheduleType": "manual", "config": {"queueName": "q", '
        '"actorName": "a", "args": [' + "9" * 5000 + "]}}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["NaN", "Infinity", "5000-digit-integer", "nested-100000-deep"],
)
def test_what_is_not_json_this_api_reads_is_a_400_and_stores_nothing(
    client: FlaskClient, task: dict[str, Any], stored_state: Callable[[], Any], body: str
) -> None:
    before = stored_state()

    response = send(client, "POST", TASKS, body)

    assert response.status_code == 400
    assert error_body(response)["errors"] == {"json": ["Invalid JSON body."]}
    assert stored_state() == before


def test_a_json_config_as_deep_as_the_reader_follows_is_stored_and_served(client: FlaskClient) -> None:
    args = json.loads("[" * 500 + "1" + "]" * 500)

    created = client.post(TASKS, json=manual(config={**QUEUE, "args": args}))

    assert created.status_code == 201, created.get_json()
    assert client.get(f"{TASKS}/{created.get_json()['id']}").get_json()["config"]["args"] == args


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (cron_task(startAt="0001-01-01T00:00:00+14:00"), "startAt"),
        (cron_task(endAt="9999-12-31T23:59:59-14:00"), "endAt"),
    ],
)
def test_an_instant_outside_the_years_a_datetime_holds_in_utc_is_a_422_naming_it(
    client: FlaskClient, stored_state: Callable[[], Any], body: dict[str, Any], field: str
) -> None:
    before = stored_state()

    response = client.post(TASKS, json=body)

    assert response.status_code == 422
    assert "out of range" in error_body(response)["errors"]["json"][field][0]
    assert stored_state() == before


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("post", TASKS, cron_task(startAt="9999-12-31T00:00:00Z"), "startAt"),
        ("post", TASKS, cron_task(endAt="1899-12-31T23:59:59Z"), "endAt"),
        ("get", f"{PREVIEW}&after=9999-12-31T23:59:00Z", None, "after"),
        ("get", f"{PREVIEW}&startAt=9999-12-31T23:59:00Z", None, "startAt"),
        ("get", f"{PREVIEW}&endAt=0001-01-01T00:00:00Z", None, "endAt"),
        ("get", f"{PREVIEW}&timezone=Pacific/Kiritimati&after=9999-12-31T00:00:00Z", None, "after"),
    ],
    ids=["create-start", "create-end", "preview-after", "preview-start", "preview-end", "preview-kiritimati"],
)
def test_an_instant_past_the_years_slots_are_searched_in_is_a_422_naming_it(
    client: FlaskClient,
    stored_state: Callable[[], Any],
    method: str,
    url: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    before = stored_state()

    response = getattr(client, method)(url, json=body)

    assert response.status_code == 422
    location = "json" if body is not None else "query"
    assert error_body(response)["errors"][location][field] == [
        "must be from 1900-01-01T00:00:00Z to 9000-01-01T00:00:00Z"
    ]
    assert stored_state() == before


def test_a_nul_in_the_identity_header_is_a_401_and_stores_nothing(
    app_with: Callable[..., Flask], stored_state: Callable[[], Any]
) -> None:
    client = app_with(auth_mode="header", auth_header="X-Auth-Request-Email").test_client()

    response = client.post(
        TASKS, json=cron_task(), headers={"X-Auth-Request-Email": "alice\u0000@example.com"}
    )

    assert response.status_code == 401
    assert NUL in error_body(response)["message"]
    assert stored_state() == [[], [], [], []]


# --- Request ids ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", TASKS, 200),
        ("POST", TASKS, 201),
        ("GET", f"{TASKS}/999", 404),
        ("DELETE", f"{TASKS}/999", 404),
        ("GET", f"{HISTORY}?status=nope", 422),
        ("GET", "/api/scheduler/no-such-route", 404),
        ("DELETE", f"{HISTORY}", 405),
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/api/openapi.json", 200),
        ("GET", "/", 200),
    ],
)
def test_every_answer_carries_a_request_id_and_every_error_body_the_same(
    client: FlaskClient, method: str, url: str, status: int
) -> None:
    response = send(client, method, url, cron_task() if method == "POST" else None)

    assert response.status_code == status
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])
    if status >= 400:
        assert error_body(response)["requestId"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("DELETE", HISTORY, {"GET", "HEAD", "OPTIONS"}),
        ("TRACE", f"{TASKS}/1", {"GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}),
        ("PUT", f"{TASKS}/pause", {"POST", "OPTIONS"}),
    ],
)
def test_a_method_a_route_does_not_take_is_a_405_naming_those_it_takes_and_changes_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    method: str,
    url: str,
    allowed: set[str],
) -> None:
    before = stored_state()

    response = send(client, method, url)

    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == allowed  # RFC 9110 15.5.6: a 405 must send Allow
    assert error_body(response)["status"] == "Method Not Allowed"
    assert stored_state() == before


def test_each_request_gets_its_own_id(client: FlaskClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5


@pytest.mark.parametrize(
    "sent",
    [
        "req-7f3a9c",
        "0b6c5a1e-3c1d-4d5e-9f00-1a2b3c4d5e6f",
        "1-5759e988-bd862e3fe1be46a9",
        "a" * 128,
        "x!#$%&'*+.^_`|~-",
    ],
    ids=["word", "uuid", "trace", "128-chars", "every-token-symbol"],
)
def test_a_sane_request_id_from_the_proxy_is_used(client: FlaskClient, sent: str) -> None:
    ok = client.get(TASKS, headers={"X-Request-ID": sent})
    missing = client.get(f"{TASKS}/999", headers={"X-Request-ID": sent})
    refused = client.post(TASKS, json={}, headers={"X-Request-ID": sent})

    assert ok.headers["X-Request-ID"] == sent
    assert (missing.status_code, error_body(missing)["requestId"]) == (404, sent)
    assert (refused.status_code, error_body(refused)["requestId"]) == (422, sent)


@pytest.mark.parametrize(
    "sent",
    ["a" * 129, "has space", "<script>", "semi;colon", 'quote"d', "", "caf\u00e9"],
    ids=["129-chars", "space", "markup", "semicolon", "double-quote", "empty", "non-ascii"],
)
def test_an_unreasonable_request_id_is_replaced(client: FlaskClient, sent: str) -> None:
    response = client.get(f"{TASKS}/999", headers={"X-Request-ID": sent})

    chosen = response.headers["X-Request-ID"]
    assert chosen != sent and GENERATED_ID.fullmatch(chosen)
    assert error_body(response)["requestId"] == chosen


def test_the_request_id_and_the_error_field_are_documented(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    components = document["components"]

    error = components["schemas"]["Error"]
    assert error["properties"]["requestId"]["type"] == "string"
    assert "requestId" in error["required"]
    assert "X-Request-ID" in components["headers"]["REQUEST_ID"]["description"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = components["responses"][response["$ref"].rsplit("/", 1)[1]]
                header = response.get("headers", {}).get("X-Request-ID")
                assert header == {"$ref": "#/components/headers/REQUEST_ID"}, (method, path, status)


# --- An unexpected exception ------------------------------------------------------------------------------------

SECRET = "password=hunter2 at /srv/cronwork/shared/schedules.py"


def test_an_unexpected_exception_is_a_json_500_with_the_request_id_and_no_word_of_it(
    client: FlaskClient,
    task: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(schedules, "get_schedule", fail)

    with caplog.at_level(logging.ERROR, logger="cronwork.api"):
        response = client.get(f"{TASKS}/{task['id']}", headers={"X-Request-ID": "proxy-42"})

    assert response.status_code == 500
    assert response.mimetype == "application/json"
    body = error_body(response)
    assert (body["requestId"], body["status"]) == ("proxy-42", "Internal Server Error")
    assert "requestId" in body["message"]
    text = response.get_data(as_text=True)
    for leak in ("hunter2", "RuntimeError", "Traceback", "schedules.py"):
        assert leak not in text
    (record,) = [r for r in caplog.records if r.name == "cronwork.api"]
    assert "proxy-42" in record.getMessage() and f"{TASKS}/{task['id']}" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == SECRET


def test_an_unexpected_exception_outside_the_scheduler_routes_is_answered_the_same(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/test-only/fails")
    def fails() -> None:
        raise ZeroDivisionError(SECRET)

    with caplog.at_level(logging.ERROR, logger="cronwork.api"):
        response = app.test_client().get("/test-only/fails")

    assert response.status_code == 500
    body = error_body(response)
    assert GENERATED_ID.fullmatch(body["requestId"])
    assert SECRET not in response.get_data(as_text=True) and "ZeroDivisionError" not in response.get_data(
        as_text=True
    )
    assert any(body["requestId"] in record.getMessage() for record in caplog.records)
