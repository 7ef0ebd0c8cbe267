"""Everything around the schedules: system tasks, task types, timezones, the cron preview, the OpenAPI
document and Swagger UI, the health probes and the metrics; and the API served by a real gunicorn process."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.protocol import run_system_slot
from shared.runtime import Runtime
from shared.settings import Settings
from shared.system_tasks import SYSTEM_TASK_TYPE
from tests.api.conftest import TASKS, cron_task, interval_task, parse_utc
from tests.conftest import Services, environment, free_port, http_ok, wait_for

PREVIEW = "/api/scheduler/cron/preview"
DEAD_BROKER_URL = "amqp://guest:guest@127.0.0.1:1/"

Create = Callable[[dict[str, Any]], dict[str, Any]]


# --- System tasks -------------------------------------------------------------------------------------------


def next_system_slots(now: datetime) -> dict[str, datetime]:
    """The registry's crons' next slots after ``now``, worked out by hand: */5, every minute, at :17."""
    minute = now.replace(second=0, microsecond=0)
    at_17 = minute.replace(minute=17)
    return {
        "session_cleanup": minute.replace(minute=0) + timedelta(minutes=(now.minute // 5 + 1) * 5),
        "pump": minute + timedelta(minutes=1),
        "history_retention": at_17 if at_17 > now else at_17 + timedelta(hours=1),
    }


def test_system_tasks_lists_every_system_cron_with_its_next_run(client: FlaskClient) -> None:
    before = datetime.now(UTC)
    response = client.get("/api/scheduler/system-tasks")
    after = datetime.now(UTC)

    assert response.status_code == 200
    listed = {task["id"]: task for task in response.get_json()}
    assert set(listed) == {"session_cleanup", "pump", "history_retention"}
    assert listed["pump"]["cronExpression"] == "* * * * *"
    assert (listed["pump"]["scheduleDescription"], listed["session_cleanup"]["scheduleDescription"]) == (
        "Every minute",
        "Every 5 minutes",
    )
    for task_id, expected in next_system_slots(before).items():
        shown = listed[task_id]
        assert shown["description"].startswith(shown["scheduleDescription"] + ". ")
        assert (shown["lastRunAt"], shown["lastStatus"], shown["taskType"]) == (None, None, "SYSTEM")
        # A minute may tick over between the two readings of the clock.
        assert parse_utc(shown["nextRunAt"]) in (expected, next_system_slots(after)[task_id])


def test_the_sample_system_cron_runs_only_with_the_demo_types(app_with: Callable[..., Flask]) -> None:
    production = app_with(demo_task_types="false").test_client()

    listed = [task["id"] for task in production.get("/api/scheduler/system-tasks").get_json()]

    assert listed == ["pump", "history_retention"]


def test_system_task_shows_its_last_run_and_status(client: FlaskClient, runtime: Runtime) -> None:
    slot = datetime.now(UTC).replace(second=0, microsecond=0)

    def fail(_runtime: Runtime) -> None:
        raise RuntimeError("disk full")

    run_system_slot(runtime, "session_cleanup", SYSTEM_TASK_TYPE, slot, lambda _runtime: "done")
    run_system_slot(runtime, "pump", SYSTEM_TASK_TYPE, slot, fail)

    shown = {task["id"]: task for task in client.get("/api/scheduler/system-tasks").get_json()}

    assert shown["session_cleanup"]["lastStatus"] == "success"
    assert shown["pump"]["lastStatus"] == "failed"
    assert slot <= parse_utc(shown["session_cleanup"]["lastRunAt"]) <= datetime.now(UTC)
    assert (shown["history_retention"]["lastRunAt"], shown["history_retention"]["lastStatus"]) == (None, None)


def test_system_tasks_are_not_user_tasks(client: FlaskClient, runtime: Runtime) -> None:
    run_system_slot(runtime, "pump", SYSTEM_TASK_TYPE, datetime.now(UTC), lambda _runtime: None)

    assert client.get(TASKS).get_json() == []


# --- Task types and timezones -------------------------------------------------------------------------------


def test_task_types_lists_the_registry_with_config_fields(client: FlaskClient) -> None:
    response = client.get("/api/scheduler/task-types")

    assert response.status_code == 200
    types = {task_type["id"]: task_type for task_type in response.get_json()}
    # cronwork's own, the demo types (on in these tests) and the example plugin installed beside it
    assert {"report_publish", "data_export", "http_request", "example_append_line"} <= set(types)
    assert (types["http_request"]["label"], types["http_request"]["description"]) == (
        "HTTP Request",
        "Calls a URL; fails on a status it does not accept (2xx by default) or a network error",
    )
    (report,) = types["report_publish"]["configFields"]
    assert (report["key"], report["type"], report["required"]) == ("reportId", "select", True)
    assert {"value": "compliance-weekly", "label": "Weekly Compliance Report"} in report["options"]
    url = next(f for f in types["http_request"]["configFields"] if f["key"] == "url")
    assert (url["type"], url["required"], url["options"]) == ("url", True, None)


def test_every_advertised_select_option_is_accepted(client: FlaskClient) -> None:
    for task_type in client.get("/api/scheduler/task-types").get_json():
        required = {f["key"]: "https://example.com" for f in task_type["configFields"] if f["type"] == "url"}
        for config_field in task_type["configFields"]:
            for option in config_field["options"] or ():
                config = {**required, config_field["key"]: option["value"]}
                response = client.post(
                    TASKS, json=interval_task(taskType=task_type["id"], config=config, enabled=False)
                )
                assert response.status_code == 201, (task_type["id"], config, response.get_json())


def test_timezones_lists_iana_names_sorted(client: FlaskClient) -> None:
    zones = client.get("/api/scheduler/timezones").get_json()

    assert {"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"} <= set(zones)
    assert zones == sorted(zones)


# --- Cron preview -------------------------------------------------------------------------------------------


def preview(client: FlaskClient, **query: Any) -> dict[str, Any]:
    response = client.get(PREVIEW, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_preview_describes_and_lists_the_next_runs(client: FlaskClient) -> None:
    shown = preview(client, expression="0 17 * * 1-5", timezone="UTC", after="2024-06-07T12:00:00Z", count=3)

    assert shown["valid"] is True
    assert shown["description"] == "At 17:00, Monday through Friday"
    assert shown["expanded"] == "0 17 * * 1-5"
    assert shown["nextRuns"] == [
        "2024-06-07T17:00:00.000Z",
        "2024-06-10T17:00:00.000Z",
        "2024-06-11T17:00:00.000Z",
    ]


def test_preview_of_a_macro_shows_its_expansion(client: FlaskClient) -> None:
    shown = preview(
        client, expression="@Daily", timezone="Europe/Berlin", after="2024-06-07T12:00:00Z", count=2
    )

    assert (shown["valid"], shown["description"], shown["expanded"]) == (True, "At 00:00", "0 0 * * *")
    assert shown["nextRuns"] == ["2024-06-07T22:00:00.000Z", "2024-06-08T22:00:00.000Z"]  # 00:00 CEST


def test_preview_applies_the_spring_forward_policy(client: FlaskClient) -> None:
    shown = preview(
        client, expression="30 2 * * *", timezone="Europe/Berlin", after="2024-03-30T12:00:00Z", count=2
    )

    assert shown["nextRuns"] == ["2024-03-31T01:00:00.000Z", "2024-04-01T00:30:00.000Z"]  # 03:00 CEST, 02:30


def test_preview_applies_the_fall_back_policy(client: FlaskClient) -> None:
    shown = preview(
        client, expression="30 1 * * *", timezone="America/New_York", after="2024-11-02T12:00:00Z", count=2
    )

    assert shown["nextRuns"] == ["2024-11-03T05:30:00.000Z", "2024-11-04T06:30:00.000Z"]  # 01:30 EDT once


def test_preview_slots_are_strictly_after_after(client: FlaskClient) -> None:
    shown = preview(client, expression="0 9 * * *", after="2024-01-01T09:00:00Z", count=1)

    assert shown["nextRuns"] == ["2024-01-02T09:00:00.000Z"]


def test_preview_reads_after_with_an_offset(client: FlaskClient) -> None:
    shown = preview(client, expression="0 9 * * *", after="2024-01-01T10:30:00+02:00", count=1)

    assert shown["nextRuns"] == ["2024-01-01T09:00:00.000Z"]  # 10:30+02:00 is 08:30 UTC


def test_preview_defaults_to_five_runs_after_now_in_utc(client: FlaskClient) -> None:
    before = datetime.now(UTC)

    shown = preview(client, expression="* * * * *")

    runs = [parse_utc(run) for run in shown["nextRuns"]]
    assert len(runs) == 5
    assert before < runs[0] <= before + timedelta(minutes=1)
    assert [b - a for a, b in zip(runs, runs[1:], strict=False)] == [timedelta(minutes=1)] * 4


def test_preview_gives_up_to_fifty_runs(client: FlaskClient) -> None:
    assert len(preview(client, expression="*/5 * * * *", count=50)["nextRuns"]) == 50


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 31 2 *", "the expression never matches a real date"),
        ("0 9 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 9 * * 1", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("61 * * * *", "not a valid cron expression: [61 * * * *] is not acceptable, out of range"),
        ("every day", "expected 5 fields (minute hour day-of-month month day-of-week), got 2"),
        (
            "@reboot",
            "@reboot runs when a machine's cron daemon starts, and a scheduler shared by many machines has no "
            "such moment: use a manual schedule and Run Now",
        ),
    ],
)
def test_preview_of_an_invalid_expression_says_why(client: FlaskClient, expression: str, reason: str) -> None:
    shown = preview(client, expression=expression)

    assert (shown["valid"], shown["description"], shown["expanded"], shown["nextRuns"], shown["error"]) == (
        False,
        None,
        None,
        [],
        reason,
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"expression": "* * * * *", "count": 51}, "count"),
        ({"expression": "* * * * *", "count": 0}, "count"),
        ({"expression": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"expression": "* * * * *", "after": "yesterday"}, "after"),
        ({}, "expression"),
    ],
    ids=["count-over-50", "count-zero", "unknown-timezone", "bad-after", "no-expression"],
)
def test_preview_rejects_bad_parameters_naming_them(
    client: FlaskClient, query: dict[str, Any], field: str
) -> None:
    response = client.get(PREVIEW, query_string=query)

    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


# --- OpenAPI and Swagger UI ---------------------------------------------------------------------------------


def test_openapi_document_describes_every_endpoint(client: FlaskClient) -> None:
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    methods = {path: set(operations) for path, operations in document["paths"].items()}
    assert methods["/api/scheduler/tasks"] >= {"get", "post"}
    assert methods["/api/scheduler/tasks/{task_id}"] >= {"get", "put", "patch", "delete"}
    assert methods["/api/scheduler/tasks/{task_id}/run"] >= {"post"}
    for path in ("history", "system-tasks", "task-types", "timezones", "cron/preview"):
        assert "get" in methods[f"/api/scheduler/{path}"], path
    task_schema = document["components"]["schemas"]["Task"]["properties"]
    assert {"id", "name", "taskType", "scheduleType", "nextRunAt", "createdBy"} <= set(task_schema)


def test_swagger_ui_is_served_at_api_docs(client: FlaskClient) -> None:
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "swagger-ui" in page and "/api/openapi.json" in page


# --- Health, readiness, metrics -----------------------------------------------------------------------------


def test_swagger_ui_loads_its_scripts_from_this_server_not_a_cdn(client: FlaskClient) -> None:
    page = client.get("/api/docs").get_data(as_text=True)
    assert "cdn" not in page.lower()
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/api/docs/assets/{asset}" in page
        assert client.get(f"/api/docs/assets/{asset}").status_code == 200


def test_healthz_answers_while_the_process_is_alive(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_is_200_when_database_and_broker_answer(client: FlaskClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json() == {"ready": True, "checks": {"database": True, "broker": True}}


def test_readyz_is_503_when_the_broker_is_unreachable(app_with: Callable[..., Flask]) -> None:
    client = app_with(broker_url=DEAD_BROKER_URL).test_client()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.get_json() == {"ready": False, "checks": {"database": True, "broker": False}}
    assert client.get("/healthz").status_code == 200  # a broker outage must not restart the API


def test_readyz_is_503_when_the_database_does_not_exist(
    app_with: Callable[..., Flask], settings: Settings
) -> None:
    missing = settings.database_url.rsplit("/", 1)[0] + "/cronwork_no_such_database"
    client = app_with(database_url=missing).test_client()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.get_json() == {"ready": False, "checks": {"database": False, "broker": True}}
    assert client.get("/healthz").status_code == 200


def test_metrics_count_schedules_and_unfinished_runs(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())
    create(cron_task(name="off", enabled=False))
    create(cron_task(name="also on"))
    client.post(f"{TASKS}/{task['id']}/run")

    response = client.get("/metrics")

    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'cronwork_schedules{enabled="true"} 2.0' in text
    assert 'cronwork_schedules{enabled="false"} 1.0' in text
    assert 'cronwork_runs_unfinished{status="queued"} 1.0' in text
    assert "cronwork_schedules_overdue 0.0" in text


def test_metrics_show_the_tick_budget_and_its_use(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    create(cron_task(scheduleType="interval", cronExpression=None, intervalMs=60_000))  # within H: published
    create(cron_task(scheduleType="interval", cronExpression=None, intervalMs=3_600_000))  # beyond H: not yet
    create(cron_task(scheduleType="manual", cronExpression=None))  # never armed

    text = client.get("/metrics").get_data(as_text=True)

    assert "cronwork_ticks_in_flight 1.0" in text
    assert "cronwork_slots_in_flight 1.0" in text
    assert f"cronwork_tick_budget {float(runtime.settings.tick_budget)}" in text


# --- A real gunicorn process --------------------------------------------------------------------------------


def http(
    method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def test_gunicorn_serves_the_api_over_http(services: Services, settings: Settings) -> None:
    served = dataclasses.replace(settings, port=free_port())
    services.start(
        "api",
        environment(
            served,
            AUTH_MODE="header",
            AUTH_HEADER="X-MS-CLIENT-PRINCIPAL-NAME",
            AUTH_ADMIN_GROUPS="cron-admins",
        ),
    )
    base_url = f"http://127.0.0.1:{served.port}"

    wait_for(lambda: http_ok(f"{base_url}/healthz"), 30, "gunicorn to answer /healthz")
    assert http("GET", f"{base_url}/readyz")[0] == 200
    status, headers, task = http(
        "POST",
        f"{base_url}{TASKS}",
        cron_task(),
        {"X-MS-CLIENT-PRINCIPAL-NAME": "alice@example.com", "X-Forwarded-Groups": "staff, cron-admins"},
    )

    assert status == 201, task
    assert task["createdBy"] == "alice@example.com"
    location = headers["Location"]
    assert location.endswith(f"{TASKS}/{task['id']}")
    location_url = location if location.startswith("http") else f"{base_url}{location}"
    assert http("GET", location_url, headers={"X-MS-CLIENT-PRINCIPAL-NAME": "bob@example.com"})[2] == task
    assert http("GET", f"{base_url}{TASKS}")[0] == 401
