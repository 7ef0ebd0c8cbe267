"""/api/scheduler/tasks: create, read, list, edit, delete and Run Now of user schedules, against the real
PostgreSQL database and RabbitMQ vhost. Every rejected input is shown to store nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import insert

from shared.messaging import RUN_QUEUE, TickSlot
from shared.models import TaskRunHistory, TaskSchedule
from shared.runtime import Runtime
from tests.api.conftest import TASKS, cron_task, interval_task, parse_utc

TASK_FIELDS = {
    "id",
    "name",
    "taskType",
    "scheduleType",
    "cronExpression",
    "intervalMs",
    "timezone",
    "enabled",
    "config",
    "createdBy",
    "createdAt",
    "updatedAt",
    "lastRunAt",
    "nextRunAt",
    "description",
}
HISTORY_FIELDS = {
    "id",
    "scheduleId",
    "taskType",
    "status",
    "triggeredBy",
    "scheduledFor",
    "startedAt",
    "completedAt",
    "durationMs",
    "attempt",
    "errorMessage",
}

Create = Callable[[dict[str, Any]], dict[str, Any]]


# --- Create -------------------------------------------------------------------------------------------------


def test_create_answers_201_with_the_task_and_its_location(client: FlaskClient) -> None:
    response = client.post(TASKS, json=cron_task())

    assert response.status_code == 201
    task = response.get_json()
    assert set(task) >= TASK_FIELDS
    assert response.headers["Location"].endswith(f"{TASKS}/{task['id']}")
    assert client.get(response.headers["Location"]).get_json() == task
    assert task["name"] == "Weekly compliance report"
    assert task["taskType"] == "report_publish"
    assert task["scheduleType"] == "cron"
    assert task["cronExpression"] == "0 9 * * 1"
    assert task["intervalMs"] is None
    assert task["timezone"] == "Europe/Berlin"
    assert task["enabled"] is True
    assert task["config"] == {"reportId": "compliance-weekly"}
    assert task["createdBy"] == "dev@localhost"
    assert task["lastRunAt"] is None
    assert task["description"] == "At 09:00, only on Monday"


def test_last_run_is_the_latest_start_of_a_run_that_started(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(cron_task())
    started = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    run = {"schedule_id": task["id"], "task_type": "report_publish", "attempt": 1, "triggered_by": "manual"}
    with runtime.sessions.begin() as session:
        session.execute(
            insert(TaskRunHistory),
            [
                {**run, "status": "success", "queued_at": started, "due_at": started, "started_at": started},
                # Newer, but a slot that never started (its schedule was disabled first): not a run.
                {
                    **run,
                    "status": "skipped",
                    "queued_at": started + timedelta(hours=1),
                    "due_at": started + timedelta(hours=1),
                    "started_at": started + timedelta(hours=1),
                },
            ],
        )

    shown = client.get(f"{TASKS}/{task['id']}").get_json()
    listed = client.get(TASKS).get_json()

    assert parse_utc(shown["lastRunAt"]) == started
    assert [parse_utc(t["lastRunAt"]) for t in listed if t["id"] == task["id"]] == [started]


def test_times_are_iso_8601_utc_with_z(create: Create) -> None:
    task = create(cron_task())

    for field in ("createdAt", "updatedAt", "nextRunAt"):
        assert task[field].endswith("Z"), field
    assert parse_utc(task["createdAt"]) == parse_utc(task["updatedAt"])


def test_cron_task_next_run_is_its_next_slot_in_its_timezone(create: Create) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)  # the wire keeps milliseconds

    task = create(cron_task(cronExpression="0 9 * * 1", timezone="America/New_York"))

    next_run = parse_utc(task["nextRunAt"]).astimezone(ZoneInfo("America/New_York"))
    assert (next_run.weekday(), next_run.hour, next_run.minute) == (0, 9, 0)
    assert before < next_run <= before + timedelta(days=7)


@pytest.mark.parametrize("macro", ["@weekly", "@WEEKLY"])
def test_a_cron_macro_is_stored_as_sent_and_runs_on_its_expansion_in_the_timezone(
    create: Create, schedule_row: Callable, macro: str
) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)  # the wire keeps milliseconds

    task = create(cron_task(cronExpression=macro, timezone="America/New_York"))

    assert (task["cronExpression"], schedule_row(task["id"]).cron_expression) == (macro, macro)
    assert task["description"] == "At 00:00, only on Sunday"
    next_run = parse_utc(task["nextRunAt"]).astimezone(ZoneInfo("America/New_York"))
    assert (next_run.weekday(), next_run.hour, next_run.minute, next_run.second) == (6, 0, 0, 0)
    assert before < next_run <= before + timedelta(days=7)


def test_interval_task_first_slot_is_one_interval_after_creation(create: Create) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)  # the wire keeps milliseconds

    task = create(interval_task(intervalMs=90_000))

    assert task["description"] == "Every 90 seconds"
    next_run = parse_utc(task["nextRunAt"])
    assert before + timedelta(seconds=90) <= next_run <= datetime.now(UTC) + timedelta(seconds=90)


def test_omitted_timezone_and_enabled_default_to_utc_and_true(create: Create) -> None:
    body = interval_task()
    body.pop("timezone", None)

    task = create(body)

    assert (task["timezone"], task["enabled"]) == ("UTC", True)


def test_disabled_schedule_has_no_next_run(create: Create) -> None:
    assert create(cron_task(enabled=False))["nextRunAt"] is None


def test_manual_schedule_has_no_next_run(create: Create) -> None:
    task = create(
        {
            "name": "On demand",
            "taskType": "report_publish",
            "scheduleType": "manual",
            "config": {"reportId": "compliance-weekly"},
        }
    )

    assert task["nextRunAt"] is None
    assert task["description"] == "Manual only"


def test_create_publishes_a_tick_for_the_first_slot(
    create: Create, schedule_row: Callable, take_ticks: Callable
) -> None:
    task = create(interval_task(intervalMs=60_000))

    row = schedule_row(task["id"])
    assert row.tick_published_at is not None
    assert take_ticks() == [TickSlot(task["id"], row.next_run_at, row.dedupe_key)]


def test_a_slot_beyond_the_horizon_is_armed_but_left_for_the_pump(
    create: Create, schedule_row: Callable, take_ticks: Callable
) -> None:
    task = create(interval_task(intervalMs=3_600_000))  # the horizon is 300 s

    row = schedule_row(task["id"])
    assert row.next_run_at is not None and row.dedupe_key
    assert row.tick_published_at is None
    assert take_ticks() == []


def test_name_of_exactly_100_characters_is_accepted(create: Create) -> None:
    assert create(cron_task(name="x" * 100))["name"] == "x" * 100


@pytest.mark.parametrize("interval_ms", [1000, 31_622_400_000], ids=["one-second", "366-days"])
def test_interval_bounds_are_inclusive(create: Create, interval_ms: int) -> None:
    assert create(interval_task(intervalMs=interval_ms))["intervalMs"] == interval_ms


def test_http_request_task_accepts_its_optional_config(create: Create) -> None:
    config = {"url": "https://example.com/hook", "method": "POST", "body": "{}", "timeoutS": 30}

    task = create(interval_task(taskType="http_request", config=config))

    assert task["config"] == config


# --- Validation: each rule names its field and stores nothing -----------------------------------------------

INVALID_BODIES = {
    "blank-name": (cron_task(name=""), "name", "must not be blank"),
    "whitespace-name": (cron_task(name="   "), "name", "must not be blank"),
    "missing-name": (
        {k: v for k, v in cron_task().items() if k != "name"},
        "name",
        "Missing data for required field.",
    ),
    "name-over-100": (cron_task(name="x" * 101), "name", "must be at most 100 characters"),
    "unknown-task-type": (cron_task(taskType="mine_bitcoin"), "taskType", "unknown task type 'mine_bitcoin'"),
    "missing-task-type": (
        {k: v for k, v in cron_task().items() if k != "taskType"},
        "taskType",
        "Missing data for required field.",
    ),
    "unknown-schedule-type": (
        cron_task(scheduleType="weekly"),
        "scheduleType",
        "must be one of cron, interval, manual",
    ),
    "missing-schedule-type": (
        {k: v for k, v in cron_task().items() if k != "scheduleType"},
        "scheduleType",
        "Missing data for required field.",
    ),
    "cron-without-expression": (
        {k: v for k, v in cron_task().items() if k != "cronExpression"},
        "cronExpression",
        "a cron expression is required",
    ),
    "cron-blank-expression": (
        cron_task(cronExpression="  "),
        "cronExpression",
        "a cron expression is required",
    ),
    "cron-reboot": (
        cron_task(cronExpression="@reboot"),
        "cronExpression",
        "@reboot runs when a machine's cron daemon starts, and a scheduler shared by many machines has no such "
        "moment: use a manual schedule and Run Now",
    ),
    "cron-unknown-macro": (
        cron_task(cronExpression="@fortnightly"),
        "cronExpression",
        "unknown macro '@fortnightly': use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, "
        "@hourly, or five fields",
    ),
    "cron-four-fields": (
        cron_task(cronExpression="0 9 * *"),
        "cronExpression",
        "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
    ),
    "cron-six-fields": (
        cron_task(cronExpression="0 0 9 * * 1"),
        "cronExpression",
        "expected 5 fields (minute hour day-of-month month day-of-week), got 6",
    ),
    "cron-out-of-range": (
        cron_task(cronExpression="61 9 * * *"),
        "cronExpression",
        "not a valid cron expression: [61 9 * * *] is not acceptable, out of range",
    ),
    "cron-garbage": (
        cron_task(cronExpression="every monday"),
        "cronExpression",
        "expected 5 fields (minute hour day-of-month month day-of-week), got 2",
    ),
    "cron-february-31": (
        cron_task(cronExpression="0 0 31 2 *"),
        "cronExpression",
        "the expression never matches a real date",
    ),
    "cron-april-31": (
        cron_task(cronExpression="0 0 31 4 *"),
        "cronExpression",
        "the expression never matches a real date",
    ),
    "cron-over-100-characters": (
        cron_task(cronExpression=",".join(map(str, range(60))) + " * * * *"),
        "cronExpression",
        "must be at most 100 characters",
    ),
    "interval-without-interval-ms": (
        {k: v for k, v in interval_task().items() if k != "intervalMs"},
        "intervalMs",
        "is required for an interval schedule",
    ),
    "interval-null-interval-ms": (
        interval_task(intervalMs=None),
        "intervalMs",
        "is required for an interval schedule",
    ),
    "interval-under-one-second": (interval_task(intervalMs=999), "intervalMs", "must be at least 1000 ms"),
    "interval-over-366-days": (
        interval_task(intervalMs=31_622_400_001),
        "intervalMs",
        "must be at most 366 days (31622400000 ms)",
    ),
    "interval-as-string": (interval_task(intervalMs="60000"), "intervalMs", "Not a valid integer."),
    "interval-fractional": (interval_task(intervalMs=1500.5), "intervalMs", "Not a valid integer."),
    "interval-negative": (interval_task(intervalMs=-60_000), "intervalMs", "must be at least 1000 ms"),
    "interval-ms-on-cron": (
        cron_task(intervalMs=60_000),
        "intervalMs",
        "belongs to the 'interval' schedule type; omit it or send null",
    ),
    "cron-expression-on-interval": (
        interval_task(cronExpression="* * * * *"),
        "cronExpression",
        "belongs to the 'cron' schedule type; omit it or send null",
    ),
    "cron-expression-on-manual": (
        cron_task(scheduleType="manual"),
        "cronExpression",
        "belongs to the 'cron' schedule type; omit it or send null",
    ),
    "interval-ms-on-manual": (
        interval_task(scheduleType="manual"),
        "intervalMs",
        "belongs to the 'interval' schedule type; omit it or send null",
    ),
    "unknown-timezone": (
        cron_task(timezone="Mars/Olympus_Mons"),
        "timezone",
        "unknown IANA timezone 'Mars/Olympus_Mons'",
    ),
    "blank-timezone": (cron_task(timezone=""), "timezone", "unknown IANA timezone ''"),
    "config-missing-required-key": (cron_task(config={}), "config.reportId", "is required"),
    "config-value-outside-options": (
        cron_task(config={"reportId": "salaries"}),
        "config.reportId",
        "must be one of compliance-weekly, usage-monthly, billing-summary",
    ),
    "config-unknown-key": (
        cron_task(config={"reportId": "usage-monthly", "colour": "red"}),
        "config.colour",
        "unknown key for task type report_publish",
    ),
    "config-a-list": (cron_task(config=["compliance-weekly"]), "config", "Not a valid mapping type."),
    "config-a-string": (cron_task(config="compliance-weekly"), "config", "Not a valid mapping type."),
    "config-url-not-http": (
        interval_task(taskType="http_request", config={"url": "ftp://example.com"}),
        "config.url",
        "must be an absolute http:// or https:// URL",
    ),
    "config-number-out-of-range": (
        interval_task(taskType="http_request", config={"url": "https://example.com", "timeoutS": 500}),
        "config.timeoutS",
        "must be at most 120",
    ),
    "enabled-not-boolean": (cron_task(enabled="sometimes"), "enabled", "Not a valid boolean."),
    "unknown-field": (cron_task(colour="red"), "colour", "Unknown field."),
}


@pytest.mark.parametrize(("body", "field", "reason"), INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_invalid_task_is_rejected_naming_the_field_and_the_reason_and_nothing_is_stored(
    client: FlaskClient,
    stored_schedules: Callable[[], int],
    take_ticks: Callable,
    body: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    response = client.post(TASKS, json=body)

    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"]["json"][field] == [reason]
    assert stored_schedules() == 0
    assert take_ticks() == []


def test_every_invalid_field_is_named_at_once(client: FlaskClient) -> None:
    body = {
        "name": "",
        "taskType": "nope",
        "scheduleType": "cron",
        "cronExpression": "0 0 31 2 *",
        "timezone": "Nowhere/Special",
    }

    response = client.post(TASKS, json=body)

    assert response.status_code == 422
    assert {"name", "taskType", "cronExpression", "timezone"} <= set(response.get_json()["errors"]["json"])


def test_cron_error_says_why(client: FlaskClient) -> None:
    response = client.post(TASKS, json=cron_task(cronExpression="0 0 31 2 *"))

    assert "never matches" in response.get_json()["errors"]["json"]["cronExpression"][0]


def test_malformed_json_is_a_400_and_stores_nothing(
    client: FlaskClient, stored_schedules: Callable[[], int]
) -> None:
    response = client.post(TASKS, data='{"name": "broken",', content_type="application/json")

    assert response.status_code == 400
    assert stored_schedules() == 0


def test_every_missing_required_field_is_named_at_once(
    client: FlaskClient, stored_schedules: Callable[[], int]
) -> None:
    response = client.post(TASKS, json={"cronExpression": "0 9 * * 1"})

    assert response.status_code == 422
    assert {"name", "taskType", "scheduleType"} <= set(response.get_json()["errors"]["json"])
    assert stored_schedules() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_sent_as_another_media_type_is_a_415_and_stores_nothing(
    client: FlaskClient, stored_schedules: Callable[[], int], take_ticks: Callable, content_type: str
) -> None:
    response = client.post(TASKS, data=json.dumps(cron_task()), content_type=content_type)

    assert response.status_code == 415, response.get_json()
    assert "application/json" in response.get_json()["message"]
    assert content_type in response.get_json()["message"]
    assert stored_schedules() == 0
    assert take_ticks() == []


def test_a_body_without_a_content_type_is_a_415(
    client: FlaskClient, stored_schedules: Callable[[], int]
) -> None:
    response = client.post(TASKS, data=json.dumps(cron_task()), headers={"Content-Type": ""})

    assert response.status_code == 415, response.get_json()
    assert stored_schedules() == 0


# --- Read and list ------------------------------------------------------------------------------------------


def test_get_returns_one_task(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())

    response = client.get(f"{TASKS}/{task['id']}")

    assert response.status_code == 200
    assert response.get_json() == task


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
@pytest.mark.parametrize("task_id", ["999999", "abc"])
def test_unknown_or_non_numeric_task_id_is_404(client: FlaskClient, method: str, task_id: str) -> None:
    response = getattr(client, method)(f"{TASKS}/{task_id}", json={"name": "renamed"})

    assert response.status_code == 404


def test_list_holds_user_schedules_only_oldest_first(client: FlaskClient, create: Create) -> None:
    first = create(cron_task(name="first"))
    second = create(interval_task(name="second"))

    response = client.get(TASKS)

    assert response.status_code == 200
    assert [task["id"] for task in response.get_json()] == [first["id"], second["id"]]
    # A list item is the task without its config (GET /tasks/{id} has it), summed up in one line instead.
    first_without_config = {key: value for key, value in first.items() if key != "config"}
    assert response.get_json()[0] == {**first_without_config, "configSummary": "Weekly Compliance Report"}


def _insert_schedules(runtime: Runtime, count: int, **values: Any) -> None:
    """Stores ``count`` disabled manual schedules directly: listing needs rows, not armed chains."""
    now = datetime.now(UTC)
    row = {
        "name": "bulk",
        "task_type": "data_export",
        "schedule_type": "manual",
        "timezone": "UTC",
        "enabled": False,
        "config": {"format": "csv"},
        "created_by": "seed",
        "created_at": now,
        "updated_at": now,
        **values,
    }
    with runtime.sessions.begin() as session:
        session.execute(insert(TaskSchedule), [{**row, "name": f"{row['name']} {n}"} for n in range(count)])


def test_list_pages_default_to_100_with_the_total_in_x_pagination(
    client: FlaskClient, runtime: Runtime
) -> None:
    _insert_schedules(runtime, 101)

    response = client.get(TASKS)

    assert len(response.get_json()) == 100
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 101
    assert pagination["total_pages"] == 2


def test_list_pages_by_page_and_page_size(client: FlaskClient, create: Create) -> None:
    ids = [create(interval_task(name=f"task {n}"))["id"] for n in range(5)]

    response = client.get(TASKS, query_string={"page": 2, "page_size": 2})

    assert [task["id"] for task in response.get_json()] == ids[2:4]
    assert json.loads(response.headers["X-Pagination"])["total"] == 5


def test_after_id_continues_the_list_after_that_schedule(client: FlaskClient, create: Create) -> None:
    ids = [create(interval_task(name=f"task {n}"))["id"] for n in range(5)]

    response = client.get(TASKS, query_string={"afterId": ids[1], "page_size": 2})

    assert [task["id"] for task in response.get_json()] == ids[2:4]
    assert json.loads(response.headers["X-Pagination"])["total"] == 3
    assert client.get(TASKS, query_string={"afterId": -1}).status_code == 422


def test_page_size_of_1000_is_allowed(client: FlaskClient) -> None:
    assert client.get(TASKS, query_string={"page_size": 1000}).status_code == 200


@pytest.mark.parametrize("query", [{"page_size": 1001}, {"page_size": 0}, {"page": 0}, {"page": "first"}])
def test_page_outside_bounds_is_422(client: FlaskClient, query: dict[str, Any]) -> None:
    response = client.get(TASKS, query_string=query)

    assert response.status_code == 422
    assert set(query) <= set(response.get_json()["errors"]["query"])


def test_list_filters_by_enabled(client: FlaskClient, create: Create) -> None:
    on = create(cron_task(name="on"))
    off = create(cron_task(name="off", enabled=False))

    assert [t["id"] for t in client.get(TASKS, query_string={"enabled": "true"}).get_json()] == [on["id"]]
    assert [t["id"] for t in client.get(TASKS, query_string={"enabled": "false"}).get_json()] == [off["id"]]


def test_list_filters_by_task_type(client: FlaskClient, create: Create) -> None:
    create(cron_task())
    export = create(interval_task())

    response = client.get(TASKS, query_string={"taskType": "data_export"})

    assert [task["id"] for task in response.get_json()] == [export["id"]]
    assert json.loads(response.headers["X-Pagination"])["total"] == 1


def test_name_search_is_a_case_insensitive_substring(client: FlaskClient, create: Create) -> None:
    nightly = create(cron_task(name="Nightly Billing Export"))
    create(cron_task(name="Weekly digest"))

    response = client.get(TASKS, query_string={"q": "billing"})

    assert [task["id"] for task in response.get_json()] == [nightly["id"]]


def test_name_search_treats_wildcards_literally(client: FlaskClient, create: Create) -> None:
    literal = create(cron_task(name="100% done_ok"))
    create(cron_task(name="100 percent doneXok"))

    assert [t["id"] for t in client.get(TASKS, query_string={"q": "0%"}).get_json()] == [literal["id"]]
    assert [t["id"] for t in client.get(TASKS, query_string={"q": "e_o"}).get_json()] == [literal["id"]]


def test_filters_combine(client: FlaskClient, create: Create) -> None:
    wanted = create(interval_task(name="export A"))
    create(interval_task(name="export B", enabled=False))
    create(cron_task(name="export C"))

    response = client.get(TASKS, query_string={"q": "export", "enabled": "true", "taskType": "data_export"})

    assert [task["id"] for task in response.get_json()] == [wanted["id"]]


# --- Edit ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_is_partial(client: FlaskClient, create: Create, method: str) -> None:
    task = create(cron_task())

    response = getattr(client, method)(f"{TASKS}/{task['id']}", json={"name": "Renamed"})

    assert response.status_code == 200
    updated = response.get_json()
    assert updated["name"] == "Renamed"
    unchanged = TASK_FIELDS - {"name", "updatedAt"}
    assert {k: updated[k] for k in unchanged} == {k: task[k] for k in unchanged}
    assert parse_utc(updated["updatedAt"]) > parse_utc(task["updatedAt"])
    assert client.get(f"{TASKS}/{task['id']}").get_json() == updated


@pytest.mark.parametrize("method", ["put", "patch"])
def test_switch_from_cron_to_interval_sending_cron_expression_null(
    client: FlaskClient, create: Create, method: str
) -> None:
    task = create(cron_task())
    before = datetime.now(UTC) - timedelta(milliseconds=1)  # the wire keeps milliseconds

    response = getattr(client, method)(
        f"{TASKS}/{task['id']}",
        json={"scheduleType": "interval", "intervalMs": 120_000, "cronExpression": None},
    )

    assert response.status_code == 200, response.get_json()
    updated = response.get_json()
    assert (updated["scheduleType"], updated["intervalMs"], updated["cronExpression"]) == (
        "interval",
        120_000,
        None,
    )
    assert (
        before + timedelta(minutes=2)
        <= parse_utc(updated["nextRunAt"])
        <= datetime.now(UTC) + timedelta(minutes=2)
    )


def test_switching_type_drops_the_old_timing_field_when_it_is_not_sent(
    client: FlaskClient, create: Create
) -> None:
    task = create(interval_task())

    response = client.patch(
        f"{TASKS}/{task['id']}", json={"scheduleType": "cron", "cronExpression": "*/5 * * * *"}
    )

    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["cronExpression"], response.get_json()["intervalMs"]) == ("*/5 * * * *", None)


@pytest.mark.parametrize("method", ["put", "patch"])
def test_cron_expression_on_an_interval_task_is_422_and_changes_nothing(
    client: FlaskClient, create: Create, schedule_row: Callable, method: str
) -> None:
    task = create(interval_task())
    key_before = schedule_row(task["id"]).dedupe_key

    response = getattr(client, method)(
        f"{TASKS}/{task['id']}", json={"cronExpression": "* * * * *", "name": "changed"}
    )

    assert response.status_code == 422
    assert "cronExpression" in response.get_json()["errors"]["json"]
    assert client.get(f"{TASKS}/{task['id']}").get_json() == task
    assert schedule_row(task["id"]).dedupe_key == key_before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": " "}, "name"),
        ({"cronExpression": "0 0 30 2 *"}, "cronExpression"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"config": {"reportId": "nope"}}, "config.reportId"),
        ({"taskType": "data_export"}, "config.reportId"),  # the config no longer fits the new type
        ({"scheduleType": "interval"}, "intervalMs"),
    ],
    ids=[
        "blank-name",
        "impossible-date",
        "unknown-timezone",
        "config-option",
        "type-change-config",
        "no-interval",
    ],
)
def test_invalid_update_names_the_field_and_stores_nothing(
    client: FlaskClient, create: Create, body: dict[str, Any], field: str
) -> None:
    task = create(cron_task())

    response = client.put(f"{TASKS}/{task['id']}", json=body)

    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]
    assert client.get(f"{TASKS}/{task['id']}").get_json() == task


def test_malformed_json_update_is_a_400(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())

    response = client.put(f"{TASKS}/{task['id']}", data="{name:", content_type="application/json")

    assert response.status_code == 400
    assert client.get(f"{TASKS}/{task['id']}").get_json() == task


@pytest.mark.parametrize("method", ["put", "patch"])
def test_an_update_sent_as_text_plain_is_a_415_and_changes_nothing(
    client: FlaskClient, create: Create, schedule_row: Callable, method: str
) -> None:
    task = create(cron_task())
    key_before = schedule_row(task["id"]).dedupe_key

    response = getattr(client, method)(
        f"{TASKS}/{task['id']}", data=json.dumps({"name": "renamed"}), content_type="text/plain"
    )

    assert response.status_code == 415
    assert client.get(f"{TASKS}/{task['id']}").get_json() == task
    assert schedule_row(task["id"]).dedupe_key == key_before


def test_editing_the_timing_moves_the_next_run(client: FlaskClient, create: Create) -> None:
    task = create(cron_task(cronExpression="0 9 * * *", timezone="UTC"))

    updated = client.put(f"{TASKS}/{task['id']}", json={"cronExpression": "30 21 * * *"}).get_json()

    next_run = parse_utc(updated["nextRunAt"])
    assert (next_run.hour, next_run.minute) == (21, 30)
    assert updated["description"] == "At 21:30"


def test_changing_the_timezone_moves_the_next_run(client: FlaskClient, create: Create) -> None:
    task = create(cron_task(cronExpression="0 9 * * *", timezone="UTC"))

    updated = client.put(f"{TASKS}/{task['id']}", json={"timezone": "Asia/Tokyo"}).get_json()

    assert parse_utc(updated["nextRunAt"]).astimezone(ZoneInfo("Asia/Tokyo")).hour == 9


def test_a_timezone_edit_of_a_cron_task_re_arms_it(
    client: FlaskClient, create: Create, schedule_row: Callable, take_ticks: Callable
) -> None:
    task = create(cron_task(cronExpression="* * * * *", timezone="UTC"))
    armed = schedule_row(task["id"])
    take_ticks()

    assert client.patch(f"{TASKS}/{task['id']}", json={"timezone": "Asia/Kolkata"}).status_code == 200

    row = schedule_row(task["id"])
    assert row.dedupe_key != armed.dedupe_key
    assert take_ticks() == [TickSlot(task["id"], row.next_run_at, row.dedupe_key)]


def test_a_timezone_edit_of_an_interval_task_keeps_its_anchor_its_key_and_its_tick(
    client: FlaskClient, create: Create, schedule_row: Callable, take_ticks: Callable
) -> None:
    task = create(interval_task(intervalMs=60_000))
    armed = schedule_row(task["id"])
    take_ticks()

    updated = client.patch(f"{TASKS}/{task['id']}", json={"timezone": "Asia/Tokyo"}).get_json()

    assert (updated["timezone"], updated["nextRunAt"]) == ("Asia/Tokyo", task["nextRunAt"])
    row = schedule_row(task["id"])
    assert (row.next_run_at, row.dedupe_key) == (armed.next_run_at, armed.dedupe_key)
    assert row.tick_published_at == armed.tick_published_at, "the tick in flight is still the live one"
    assert take_ticks() == [], "an interval's slots do not depend on its timezone"


def test_an_edit_that_leaves_the_timing_keeps_the_slot(client: FlaskClient, create: Create) -> None:
    task = create(interval_task())

    updated = client.put(f"{TASKS}/{task['id']}", json={"config": {"format": "json"}}).get_json()

    assert updated["nextRunAt"] == task["nextRunAt"]
    assert updated["config"] == {"format": "json"}


def test_disabling_nulls_the_next_run_and_enabling_arms_it_again(client: FlaskClient, create: Create) -> None:
    task = create(interval_task())

    disabled = client.patch(f"{TASKS}/{task['id']}", json={"enabled": False}).get_json()
    assert (disabled["enabled"], disabled["nextRunAt"]) == (False, None)

    enabled = client.patch(f"{TASKS}/{task['id']}", json={"enabled": True}).get_json()
    assert enabled["enabled"] is True
    assert parse_utc(enabled["nextRunAt"]) > datetime.now(UTC)


def test_every_timing_change_gives_a_new_dedupe_key(
    client: FlaskClient, create: Create, schedule_row: Callable
) -> None:
    task = create(interval_task())
    keys = [schedule_row(task["id"]).dedupe_key]

    for change in (
        {"intervalMs": 120_000},
        {"enabled": False},
        {"enabled": True},
        {"scheduleType": "cron", "cronExpression": "*/5 * * * *"},
        {"cronExpression": "@hourly"},
        {"timezone": "Europe/Berlin"},  # a cron's slots depend on its timezone (an interval's do not)
    ):
        assert client.patch(f"{TASKS}/{task['id']}", json=change).status_code == 200
        keys.append(schedule_row(task["id"]).dedupe_key)

    assert all(keys) and len(set(keys)) == len(keys)


def test_an_edit_that_keeps_the_timing_leaves_the_armed_tick_alone(
    client: FlaskClient, create: Create, schedule_row: Callable, take_ticks: Callable
) -> None:
    task = create(interval_task(intervalMs=60_000))
    armed = schedule_row(task["id"])
    take_ticks()

    for change in ({"name": "renamed"}, {"config": {"format": "xlsx"}}):
        assert client.patch(f"{TASKS}/{task['id']}", json=change).status_code == 200

    row = schedule_row(task["id"])
    assert (row.next_run_at, row.dedupe_key) == (armed.next_run_at, armed.dedupe_key)
    assert row.tick_published_at == armed.tick_published_at, "the tick in flight is still the live one"
    assert take_ticks() == [], "no second tick for the same slot"


def test_an_edit_publishes_a_tick_with_the_new_key(
    client: FlaskClient, create: Create, schedule_row: Callable, take_ticks: Callable
) -> None:
    task = create(interval_task(intervalMs=60_000))
    take_ticks()

    client.patch(f"{TASKS}/{task['id']}", json={"intervalMs": 30_000})

    row = schedule_row(task["id"])
    assert take_ticks() == [TickSlot(task["id"], row.next_run_at, row.dedupe_key)]


def test_disabling_publishes_nothing(client: FlaskClient, create: Create, take_ticks: Callable) -> None:
    task = create(interval_task(intervalMs=60_000))
    take_ticks()

    client.patch(f"{TASKS}/{task['id']}", json={"enabled": False})

    assert take_ticks() == []


# --- Delete -------------------------------------------------------------------------------------------------


def test_delete_answers_204_and_the_task_is_gone(
    client: FlaskClient, create: Create, stored_schedules: Callable[[], int]
) -> None:
    task = create(cron_task())

    response = client.delete(f"{TASKS}/{task['id']}")

    assert response.status_code == 204
    assert response.data == b""
    assert client.get(f"{TASKS}/{task['id']}").status_code == 404
    assert client.delete(f"{TASKS}/{task['id']}").status_code == 404
    assert stored_schedules() == 0


# --- Run Now ------------------------------------------------------------------------------------------------


def test_run_now_answers_202_with_the_queued_manual_run(
    client: FlaskClient, create: Create, empty_queues: Runtime
) -> None:
    task = create(cron_task())

    response = client.post(f"{TASKS}/{task['id']}/run")

    assert response.status_code == 202
    run = response.get_json()
    assert set(run) >= HISTORY_FIELDS
    assert (run["scheduleId"], run["taskType"], run["status"], run["triggeredBy"], run["attempt"]) == (
        task["id"],
        "report_publish",
        "queued",
        "manual",
        1,
    )
    assert run["startedAt"] is None and run["completedAt"] is None and run["errorMessage"] is None
    assert client.get("/api/scheduler/history").get_json()[0]["id"] == run["id"]
    assert empty_queues.broker.get_queue_message_counts(RUN_QUEUE)[0] == 1  # dispatched for a worker


def test_run_now_leaves_the_next_slot_and_its_key_alone(
    client: FlaskClient, create: Create, schedule_row: Callable
) -> None:
    task = create(cron_task())
    key_before = schedule_row(task["id"]).dedupe_key

    client.post(f"{TASKS}/{task['id']}/run")

    assert client.get(f"{TASKS}/{task['id']}").get_json()["nextRunAt"] == task["nextRunAt"]
    assert schedule_row(task["id"]).dedupe_key == key_before


def test_run_now_runs_a_disabled_schedule_without_arming_it(client: FlaskClient, create: Create) -> None:
    task = create(cron_task(enabled=False))

    response = client.post(f"{TASKS}/{task['id']}/run")

    assert response.status_code == 202
    assert response.get_json()["status"] == "queued"
    after = client.get(f"{TASKS}/{task['id']}").get_json()
    assert (after["enabled"], after["nextRunAt"]) == (False, None)


def test_run_now_runs_a_manual_schedule(client: FlaskClient, create: Create) -> None:
    task = create(
        {
            "name": "On demand",
            "taskType": "report_publish",
            "scheduleType": "manual",
            "config": {"reportId": "compliance-weekly"},
        }
    )

    assert client.post(f"{TASKS}/{task['id']}/run").status_code == 202


@pytest.mark.parametrize("task_id", ["999999", "abc"])
def test_run_now_of_an_unknown_task_is_404_and_queues_nothing(
    client: FlaskClient, stored_runs: Callable[[], int], task_id: str
) -> None:
    assert client.post(f"{TASKS}/{task_id}/run").status_code == 404
    assert stored_runs() == 0
