"""A task's bounds over the API: ``startAt`` / ``endAt`` keep its slots in a window, a task past its end says why
it has no next run (``nextRunNote``), nonsense is refused naming the field and stores nothing, and a bound edit
re-arms. Against the real PostgreSQL database and RabbitMQ vhost."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.api.conftest import TASKS, cron_task, interval_task, parse_utc

Create = Callable[[dict[str, Any]], dict[str, Any]]
PREVIEW = "/api/scheduler/cron/preview"


def wire(instant: datetime) -> str:
    """An instant as the wire writes it."""
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def soon(**delta: float) -> datetime:
    """Now plus ``delta``, to the second (a bound as people write one)."""
    return (datetime.now(UTC) + timedelta(**delta)).replace(microsecond=0)


# --- Created with bounds --------------------------------------------------------------------------------------


def test_an_interval_task_with_a_future_start_first_runs_at_its_start(create: Create) -> None:
    start, end = soon(days=2), soon(days=30)

    task = create(interval_task(intervalMs=3_600_000, startAt=wire(start), endAt=wire(end)))

    assert (task["startAt"], task["endAt"]) == (wire(start), wire(end))
    assert parse_utc(task["nextRunAt"]) == start
    assert task["nextRunNote"] is None
    assert task["description"] == (
        f"Every hour, from {start.isoformat().replace('+00:00', 'Z')} until {end.isoformat().replace('+00:00', 'Z')}"
    )


def test_a_cron_task_with_a_future_start_first_runs_at_its_first_instant_after_it(create: Create) -> None:
    start = datetime(2031, 3, 5, 9, 30, tzinfo=UTC)  # after 09:00 UTC that day

    task = create(cron_task(cronExpression="0 9 * * *", timezone="UTC", startAt="2031-03-05T10:30:00+01:00"))

    assert task["startAt"] == wire(start), "read in its own offset, answered in UTC"
    assert parse_utc(task["nextRunAt"]) == datetime(2031, 3, 6, 9, tzinfo=UTC)


def test_bounds_default_to_none_and_are_kept_to_milliseconds(create: Create, schedule_row: Callable) -> None:
    plain = create(cron_task())
    precise = create(interval_task(endAt="2031-01-01T00:00:00.123456Z"))

    assert (plain["startAt"], plain["endAt"], plain["nextRunNote"]) == (None, None, None)
    assert precise["endAt"] == "2031-01-01T00:00:00.123Z"
    assert schedule_row(precise["id"]).end_at == datetime(2031, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)


# --- Why there is no next run ---------------------------------------------------------------------------------


def test_a_task_created_past_its_end_is_stored_with_no_next_run_and_says_why(
    client: FlaskClient, create: Create
) -> None:
    task = create(cron_task(endAt="2026-01-31T00:00:00Z"))

    assert task["nextRunAt"] is None
    assert task["nextRunNote"] == "ended at 2026-01-31T00:00:00Z: no slot after its end"
    assert client.get(f"{TASKS}/{task['id']}").get_json()["nextRunNote"] == task["nextRunNote"]
    [listed] = [t for t in client.get(TASKS).get_json() if t["id"] == task["id"]]
    assert listed["nextRunNote"] == task["nextRunNote"]


def test_a_task_whose_end_comes_before_its_next_instant_says_so(create: Create) -> None:
    end = soon(minutes=1)  # a yearly slot is months away at least

    task = create(cron_task(cronExpression="0 0 1 1 *", startAt=None, endAt=wire(end)))

    assert task["nextRunAt"] is None
    assert task["nextRunNote"] == f"no slot left before its end at {end.isoformat().replace('+00:00', 'Z')}"


@pytest.mark.parametrize(
    ("body", "note"),
    [
        (cron_task(scheduleType="manual", cronExpression=None), "manual: runs only when asked (Run Now)"),
        (cron_task(enabled=False), "disabled: starts no scheduled run until it is enabled"),
        # Past its end, re-enabling it would change nothing: the end is what it says.
        (
            cron_task(enabled=False, endAt="2026-01-31T00:00:00Z"),
            "ended at 2026-01-31T00:00:00Z: no slot after its end",
        ),
    ],
    ids=["manual", "disabled", "disabled-and-ended"],
)
def test_a_task_with_no_next_run_says_why(create: Create, body: dict[str, Any], note: str) -> None:
    task = create(body)

    assert (task["nextRunAt"], task["nextRunNote"]) == (None, note)


# --- Refused: 422 naming the field, nothing stored -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "field", "reason"),
    [
        (
            {"startAt": "2031-02-01T00:00:00Z", "endAt": "2031-01-01T00:00:00Z"},
            "endAt",
            "must be after the start",
        ),
        (
            {"startAt": "2031-01-01T00:00:00Z", "endAt": "2031-01-01T00:00:00Z"},
            "endAt",
            "must be after the start",
        ),
        ({"startAt": "next tuesday"}, "startAt", "Not a valid datetime."),
        ({"endAt": 1_893_456_000}, "endAt", "Not a valid datetime."),
    ],
    ids=["end-before-start", "end-at-start", "start-not-iso-8601", "end-a-number"],
)
def test_nonsense_bounds_are_refused_naming_the_field_and_store_nothing(
    client: FlaskClient,
    stored_schedules: Callable[[], int],
    take_ticks: Callable,
    bounds: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    response = client.post(TASKS, json=interval_task(**bounds))

    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"]["json"][field] == [reason]
    assert stored_schedules() == 0
    assert take_ticks() == []


def test_an_edit_that_puts_the_end_before_the_start_is_refused_and_changes_nothing(
    client: FlaskClient, create: Create, schedule_row: Callable
) -> None:
    task = create(interval_task(startAt="2031-02-01T00:00:00Z"))
    before = schedule_row(task["id"])

    response = client.patch(
        f"{TASKS}/{task['id']}", json={"endAt": "2031-01-01T00:00:00Z", "name": "changed"}
    )

    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {"endAt": ["must be after the start"]}
    after = schedule_row(task["id"])
    assert (after.name, after.end_at, after.version, after.dedupe_key) == (
        before.name,
        None,
        before.version,
        before.dedupe_key,
    )


# --- Edits ----------------------------------------------------------------------------------------------------


def test_a_bound_edit_re_arms_and_an_end_set_in_the_past_leaves_no_next_run(
    client: FlaskClient, create: Create, schedule_row: Callable
) -> None:
    task = create(interval_task())
    keys = [schedule_row(task["id"]).dedupe_key]
    start = soon(days=3)

    moved = client.patch(f"{TASKS}/{task['id']}", json={"startAt": wire(start)}).get_json()
    keys.append(schedule_row(task["id"]).dedupe_key)
    ended = client.patch(f"{TASKS}/{task['id']}", json={"startAt": None, "endAt": "2026-01-31T00:00:00Z"})
    keys.append(schedule_row(task["id"]).dedupe_key)
    reopened = client.patch(f"{TASKS}/{task['id']}", json={"endAt": None}).get_json()
    keys.append(schedule_row(task["id"]).dedupe_key)

    assert parse_utc(moved["nextRunAt"]) == start
    assert (ended.get_json()["nextRunAt"], ended.get_json()["nextRunNote"]) == (
        None,
        "ended at 2026-01-31T00:00:00Z: no slot after its end",
    )
    assert reopened["nextRunAt"] is not None and reopened["nextRunNote"] is None
    assert all(keys) and len(set(keys)) == len(keys), "each bound edit re-arms with a new key"


def test_bounds_sent_back_as_shown_change_nothing(
    client: FlaskClient, create: Create, schedule_row: Callable
) -> None:
    task = create(interval_task(startAt=wire(soon(days=2)), endAt="2031-01-01T00:00:00.123456Z"))
    before = schedule_row(task["id"])

    response = client.put(f"{TASKS}/{task['id']}", json={"startAt": task["startAt"], "endAt": task["endAt"]})

    assert response.status_code == 200
    after = schedule_row(task["id"])
    assert (after.dedupe_key, after.next_run_at) == (before.dedupe_key, before.next_run_at)


def test_a_manual_tasks_bounds_are_kept_but_re_arm_nothing(
    client: FlaskClient, create: Create, schedule_row: Callable
) -> None:
    task = create(cron_task(scheduleType="manual", cronExpression=None))
    key = schedule_row(task["id"]).dedupe_key

    edited = client.patch(f"{TASKS}/{task['id']}", json={"endAt": "2026-01-31T00:00:00Z"}).get_json()

    assert edited["endAt"] == "2026-01-31T00:00:00.000Z"
    assert edited["nextRunNote"] == "manual: runs only when asked (Run Now)"
    assert schedule_row(task["id"]).dedupe_key == key


# --- The preview ----------------------------------------------------------------------------------------------


def test_the_cron_preview_keeps_to_the_bounds_it_is_given(client: FlaskClient) -> None:
    preview = client.get(
        PREVIEW,
        query_string={
            "expression": "0 9 * * *",
            "timezone": "UTC",
            "after": "2031-03-01T00:00:00Z",
            "startAt": "2031-03-03T00:00:00Z",
            "endAt": "2031-03-05T09:00:00Z",
        },
    ).get_json()

    assert preview["nextRuns"] == [
        "2031-03-03T09:00:00.000Z",
        "2031-03-04T09:00:00.000Z",
        "2031-03-05T09:00:00.000Z",
    ]
    assert preview["description"] == "At 09:00, from 2031-03-03T00:00:00Z until 2031-03-05T09:00:00Z"


def test_the_openapi_document_names_the_bounds_and_the_note(client: FlaskClient) -> None:
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    task_in, task = schemas["TaskIn"]["properties"], schemas["Task"]["properties"]

    for properties in (task_in, task):
        assert properties["startAt"]["format"] == "date-time" and properties["startAt"]["nullable"] is True
        assert properties["endAt"]["format"] == "date-time" and properties["endAt"]["nullable"] is True
    assert task["nextRunNote"]["type"] == "string" and task["nextRunNote"]["nullable"] is True
    assert "nextRunNote" not in task_in
