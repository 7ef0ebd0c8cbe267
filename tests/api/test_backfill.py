"""POST /api/scheduler/tasks/{id}/backfill: each slot of a past window that has no run gets one, once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from shared.db import utcnow
from shared.messaging import RUN_QUEUE
from shared.models import TaskRunHistory
from shared.runtime import Runtime
from tests.api.conftest import HISTORY, TASKS, cron_task, interval_task, parse_utc

Create = Callable[[dict[str, Any]], dict[str, Any]]

# 02:30 every day in Berlin, over the night clocks sprang forward (30 March 2025, 02:00 CET -> 03:00 CEST): the
# 29th's slot is 02:30 CET, the 30th's falls in the gap and runs at its first instant after it (03:00 CEST),
# the 31st's is 02:30 CEST.
NIGHTLY = cron_task(name="Nightly close", cronExpression="30 2 * * *", timezone="Europe/Berlin")
WINDOW = {"from": "2025-03-29T00:00:00Z", "to": "2025-03-31T12:00:00Z"}
NIGHTLY_SLOTS = ["2025-03-29T01:30:00.000Z", "2025-03-30T01:00:00.000Z", "2025-03-31T00:30:00.000Z"]
# The window lies in 2025: these tests keep the history long enough for it to count as known.
LONG_RETENTION_DAYS = 36_500


@pytest.fixture
def app(app_with: Callable[..., Flask]) -> Flask:
    return app_with(history_retention_days=LONG_RETENTION_DAYS)


def backfill(client: FlaskClient, task_id: int | str, window: dict[str, str]) -> Any:
    return client.post(f"{TASKS}/{task_id}/backfill", json=window)


def accepted(response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.get_json()
    return dict(response.get_json())


def runs_of(runtime: Runtime, schedule_id: int) -> list[TaskRunHistory]:
    with runtime.sessions() as session:
        query = select(TaskRunHistory).where(TaskRunHistory.schedule_id == schedule_id)
        return list(session.scalars(query.order_by(TaskRunHistory.scheduled_for, TaskRunHistory.id)))


def wire(instant: datetime) -> str:
    """As the API writes instants (milliseconds)."""
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exact(instant: datetime) -> str:
    """To the microsecond, as slots are stored: an interval's grid is anchored when it is armed, to the µs."""
    return instant.isoformat().replace("+00:00", "Z")


def test_a_cron_schedule_backfilled_over_a_past_window_queues_one_run_per_slot(
    client: FlaskClient, create: Create, empty_queues: Runtime
) -> None:
    task = create(NIGHTLY)

    answer = accepted(backfill(client, task["id"], WINDOW))

    assert (answer["slots"], answer["queued"], answer["alreadyRun"]) == (3, 3, 0)
    history = client.get(HISTORY, query_string={"scheduleId": task["id"], "triggeredBy": "backfill"})
    runs = sorted(history.get_json(), key=lambda run: run["scheduledFor"])
    assert [run["scheduledFor"] for run in runs] == NIGHTLY_SLOTS
    assert [run["id"] for run in runs] == answer["runs"]  # oldest slot first
    for run in runs:
        assert (run["triggeredBy"], run["status"], run["attempt"], run["missedSlots"]) == (
            "backfill",
            "queued",
            1,
            0,
        )
        assert (run["scheduleName"], run["taskType"]) == ("Nightly close", "report_publish")
    assert empty_queues.broker.get_queue_message_counts(RUN_QUEUE)[0] == 3  # dispatched for the workers
    assert client.get(f"{TASKS}/{task['id']}").get_json()["nextRunAt"] == task["nextRunAt"], "the chain stays"


def test_a_backfilled_run_keeps_the_config_its_schedule_had_when_it_was_queued(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(NIGHTLY)
    accepted(backfill(client, task["id"], WINDOW))

    client.patch(f"{TASKS}/{task['id']}", json={"config": {"reportId": "billing-summary"}})

    assert {run.config["reportId"] for run in runs_of(runtime, task["id"])} == {"compliance-weekly"}


def test_backfilling_the_same_window_twice_queues_nothing_the_second_time(
    client: FlaskClient, create: Create, stored_runs: Callable[[], int]
) -> None:
    task = create(NIGHTLY)
    accepted(backfill(client, task["id"], WINDOW))

    again = accepted(backfill(client, task["id"], WINDOW))

    assert again == {"slots": 3, "queued": 0, "alreadyRun": 3, "runs": []}
    assert stored_runs() == 3


def test_a_slot_that_already_has_a_scheduled_run_is_left_alone(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(NIGHTLY)
    gap_slot = parse_utc(NIGHTLY_SLOTS[1])
    with runtime.sessions.begin() as session:
        session.execute(
            insert(TaskRunHistory).values(
                schedule_id=task["id"],
                schedule_name="Nightly close",
                task_type="report_publish",
                status="success",
                triggered_by="schedule",
                scheduled_for=gap_slot,
                queued_at=gap_slot,
                due_at=gap_slot,
                attempt=1,
            )
        )

    answer = accepted(backfill(client, task["id"], WINDOW))

    assert (answer["slots"], answer["queued"], answer["alreadyRun"]) == (3, 2, 1)
    runs = runs_of(runtime, task["id"])
    assert [(wire(run.scheduled_for), run.triggered_by, run.status) for run in runs] == [
        (NIGHTLY_SLOTS[0], "backfill", "queued"),
        (NIGHTLY_SLOTS[1], "schedule", "success"),  # its own run, untouched
        (NIGHTLY_SLOTS[2], "backfill", "queued"),
    ]


def test_a_window_wider_than_the_cap_is_422_naming_to_and_stores_nothing(
    app_with: Callable[..., Flask], create: Create, empty_queues: Runtime, stored_runs: Callable[[], int]
) -> None:
    client = app_with(history_retention_days=LONG_RETENTION_DAYS, backfill_max_slots=5).test_client()
    task = create(cron_task(cronExpression="0 * * * *", timezone="UTC"))  # hourly: 24 slots a day

    response = backfill(client, task["id"], {"from": "2025-06-01T00:00:00Z", "to": "2025-06-01T23:59:00Z"})

    assert response.status_code == 422
    assert list(response.get_json()["errors"]["json"]) == ["to"]
    (reason,) = response.get_json()["errors"]["json"]["to"]
    assert "more than 5 slots" in reason and "BACKFILL_MAX_SLOTS" in reason
    assert "first 5 end at 2025-06-01T04:00:00.000Z" in reason  # where to narrow it to
    assert stored_runs() == 0
    assert empty_queues.broker.get_queue_message_counts(RUN_QUEUE)[0] == 0


def test_a_window_of_exactly_the_cap_is_backfilled(app_with: Callable[..., Flask], create: Create) -> None:
    client = app_with(history_retention_days=LONG_RETENTION_DAYS, backfill_max_slots=5).test_client()
    task = create(cron_task(cronExpression="0 * * * *", timezone="UTC"))

    answer = accepted(
        backfill(client, task["id"], {"from": "2025-06-01T00:00:00Z", "to": "2025-06-01T04:00:00Z"})
    )

    assert (answer["slots"], answer["queued"]) == (5, 5)


def hours_ago(hours: float) -> str:
    return wire(utcnow() - timedelta(hours=hours))


def in_an_hour() -> str:
    return wire(utcnow() + timedelta(hours=1))


@pytest.mark.parametrize(
    ("window", "field", "reason"),
    [
        (lambda: {"from": hours_ago(2), "to": in_an_hour()}, "to", "must not be in the future"),
        (lambda: {"from": hours_ago(1), "to": hours_ago(2)}, "from", "must be before to"),
        (lambda: dict.fromkeys(("from", "to"), hours_ago(1)), "from", "must be before to"),
    ],
    ids=["to-in-the-future", "from-after-to", "empty-window"],
)
def test_a_window_that_is_not_a_past_window_is_refused_naming_the_field(
    client: FlaskClient,
    create: Create,
    stored_runs: Callable[[], int],
    window: Callable[[], dict[str, str]],
    field: str,
    reason: str,
) -> None:
    task = create(NIGHTLY)

    response = backfill(client, task["id"], window())

    assert response.status_code == 422
    errors = response.get_json()["errors"]["json"]
    assert list(errors) == [field] and reason in errors[field][0]
    assert stored_runs() == 0


def test_a_window_older_than_the_history_retention_is_refused_naming_from(
    app_with: Callable[..., Flask], create: Create, stored_runs: Callable[[], int]
) -> None:
    client = app_with(history_retention_days=90).test_client()
    task = create(NIGHTLY)

    response = backfill(client, task["id"], {"from": hours_ago(91 * 24), "to": hours_ago(89 * 24)})

    assert response.status_code == 422
    (reason,) = response.get_json()["errors"]["json"]["from"]
    assert "retention (90 days, HISTORY_RETENTION_DAYS)" in reason
    assert stored_runs() == 0


def test_a_manual_schedule_has_no_slots_to_backfill(
    client: FlaskClient, create: Create, stored_runs: Callable[[], int]
) -> None:
    task = create(
        {
            "name": "On demand",
            "taskType": "report_publish",
            "scheduleType": "manual",
            "config": {"reportId": "compliance-weekly"},
        }
    )

    response = backfill(client, task["id"], WINDOW)

    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {
        "scheduleType": ["a manual schedule has no slots to backfill (Run Now runs it)"]
    }
    assert stored_runs() == 0


@pytest.mark.parametrize("task_id", ["999999", "abc"])
def test_a_backfill_of_an_unknown_task_is_404_and_queues_nothing(
    client: FlaskClient, stored_runs: Callable[[], int], task_id: str
) -> None:
    assert backfill(client, task_id, WINDOW).status_code == 404
    assert stored_runs() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "2025-03-31T12:00:00Z"}, "from"),
        ({**WINDOW, "to": "yesterday"}, "to"),
        ({**WINDOW, "x": 1}, "x"),
    ],
)
def test_a_malformed_window_is_422_naming_the_field(
    client: FlaskClient, create: Create, body: dict[str, Any], field: str
) -> None:
    task = create(NIGHTLY)

    response = backfill(client, task["id"], body)

    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]


def test_a_disabled_schedule_is_backfilled_and_stays_disabled(client: FlaskClient, create: Create) -> None:
    task = create({**NIGHTLY, "enabled": False})

    assert accepted(backfill(client, task["id"], WINDOW))["queued"] == 3

    after = client.get(f"{TASKS}/{task['id']}").get_json()
    assert (after["enabled"], after["nextRunAt"]) == (False, None)


def test_an_interval_schedule_is_backfilled_on_its_own_grid(
    client: FlaskClient, create: Create, runtime: Runtime, schedule_row: Callable[[int], Any]
) -> None:
    task = create(interval_task(intervalMs=60_000))
    anchor = schedule_row(task["id"]).next_run_at  # the armed slot: its grid is anchor + k minutes
    minute = timedelta(minutes=1)

    answer = accepted(
        backfill(
            client,
            task["id"],
            {"from": exact(anchor - 5 * minute - timedelta(seconds=30)), "to": exact(anchor - 2 * minute)},
        )
    )

    assert [run.scheduled_for for run in runs_of(runtime, task["id"])] == [
        anchor - 5 * minute,
        anchor - 4 * minute,
        anchor - 3 * minute,
        anchor - 2 * minute,  # "to" is included
    ]
    assert answer["queued"] == 4


def test_a_disabled_interval_schedule_is_backfilled_on_the_grid_its_chain_ran_on(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(interval_task(intervalMs=3_600_000, enabled=False))
    last_claimed = datetime(2025, 6, 1, 10, 17, 23, tzinfo=UTC)
    with runtime.sessions.begin() as session:
        session.execute(
            insert(TaskRunHistory).values(
                schedule_id=task["id"],
                task_type="data_export",
                status="success",
                triggered_by="schedule",
                scheduled_for=last_claimed,
                queued_at=last_claimed,
                due_at=last_claimed,
                attempt=1,
            )
        )

    answer = accepted(
        backfill(client, task["id"], {"from": "2025-06-01T07:30:00Z", "to": "2025-06-01T10:30:00Z"})
    )

    assert (answer["slots"], answer["queued"], answer["alreadyRun"]) == (3, 2, 1)
    assert [wire(run.scheduled_for) for run in runs_of(runtime, task["id"])] == [
        "2025-06-01T08:17:23.000Z",
        "2025-06-01T09:17:23.000Z",
        "2025-06-01T10:17:23.000Z",  # the chain's own run
    ]


def test_the_history_filters_backfilled_runs(client: FlaskClient, create: Create) -> None:
    task = create(NIGHTLY)
    accepted(backfill(client, task["id"], WINDOW))
    manual = client.post(f"{TASKS}/{task['id']}/run").get_json()

    backfilled = client.get(HISTORY, query_string={"triggeredBy": "backfill"}).get_json()
    by_hand = client.get(HISTORY, query_string={"triggeredBy": "manual"}).get_json()

    assert {run["triggeredBy"] for run in backfilled} == {"backfill"} and len(backfilled) == 3
    assert [run["id"] for run in by_hand] == [manual["id"]]


def test_a_schedules_bounds_bound_its_backfill(client: FlaskClient, create: Create) -> None:
    task = create({**NIGHTLY, "startAt": "2025-03-30T00:00:00Z", "endAt": "2025-03-30T12:00:00Z"})

    answer = accepted(backfill(client, task["id"], WINDOW))

    runs = client.get(HISTORY, query_string={"scheduleId": task["id"]}).get_json()
    assert [run["scheduledFor"] for run in runs] == [
        NIGHTLY_SLOTS[1]
    ]  # the 29th's is before it, the 31st's after
    assert answer["slots"] == 1


def test_an_interval_with_a_start_is_backfilled_on_the_grid_from_its_start(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(interval_task(intervalMs=3_600_000, startAt="2025-06-01T06:45:00Z"))

    accepted(backfill(client, task["id"], {"from": "2025-06-01T05:00:00Z", "to": "2025-06-01T09:00:00Z"}))

    assert [wire(run.scheduled_for) for run in runs_of(runtime, task["id"])] == [
        "2025-06-01T06:45:00.000Z",
        "2025-06-01T07:45:00.000Z",
        "2025-06-01T08:45:00.000Z",
    ]
