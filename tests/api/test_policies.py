"""A task's policies over REST, against the real PostgreSQL and RabbitMQ: defaults, round trips, every bad value
refused with a 422 naming its field (and nothing stored), a broken task listed with its reason, the preview's
DST choice and jitter, and the ledger's entries in the history with their filter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from shared.models import TaskSchedule
from shared.runtime import Runtime
from shared.timing import jitter
from tests.api.conftest import HISTORY, TASKS, cron_task, interval_task, parse_utc

Create = Callable[[dict[str, Any]], dict[str, Any]]
PREVIEW = "/api/scheduler/cron/preview"


def test_a_task_created_without_policies_has_the_defaults(create: Create) -> None:
    task = create(cron_task())
    assert {
        key: task[key]
        for key in ("misfirePolicy", "catchUpMax", "catchUpWindowS", "overlapPolicy", "jitterS", "dstPolicy")
    } == {
        "misfirePolicy": "coalesce",
        "catchUpMax": None,
        "catchUpWindowS": None,
        "overlapPolicy": "allow",
        "jitterS": 0,
        "dstPolicy": "once",
    }
    assert task["brokenReason"] is None
    assert task["nextRunStartsAt"] == task["nextRunAt"]


def test_policies_round_trip_and_a_patch_changes_only_what_it_sends(
    client: FlaskClient, create: Create
) -> None:
    task = create(
        interval_task(
            misfirePolicy="catchUp", catchUpMax=5, catchUpWindowS=3600, overlapPolicy="skip", jitterS=30
        )
    )
    assert (task["misfirePolicy"], task["catchUpMax"], task["catchUpWindowS"]) == ("catchUp", 5, 3600)
    assert (task["overlapPolicy"], task["jitterS"]) == ("skip", 30)
    slot = parse_utc(task["nextRunAt"])
    assert parse_utc(task["nextRunStartsAt"]) == slot + jitter(task["id"], slot, 30)

    patched = client.patch(
        f"{TASKS}/{task['id']}", json={"misfirePolicy": "skip", "catchUpMax": None, "catchUpWindowS": None}
    )
    assert patched.status_code == 200, patched.get_json()
    body = patched.get_json()
    assert (body["misfirePolicy"], body["catchUpMax"], body["overlapPolicy"], body["jitterS"]) == (
        "skip",
        None,
        "skip",
        30,
    )
    assert body["nextRunAt"] == task["nextRunAt"], "a policy edit does not re-arm the chain"


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"misfirePolicy": "later"}, "misfirePolicy", "must be one of coalesce, skip, catchUp"),
        (
            {"misfirePolicy": "catchUp", "catchUpWindowS": 60},
            "catchUpMax",
            "is required when the misfire policy is catchUp",
        ),
        (
            {"misfirePolicy": "catchUp", "catchUpMax": 3},
            "catchUpWindowS",
            "is required when the misfire policy is catchUp",
        ),
        ({"catchUpMax": 3}, "catchUpMax", "applies to the catchUp misfire policy only; omit it or send null"),
        (
            {"misfirePolicy": "catchUp", "catchUpMax": 0, "catchUpWindowS": 60},
            "catchUpMax",
            "must be from 1 to 1000",
        ),
        (
            {"misfirePolicy": "catchUp", "catchUpMax": 1, "catchUpWindowS": 0},
            "catchUpWindowS",
            "must be from 1 to 31622400",
        ),
        ({"overlapPolicy": "queue"}, "overlapPolicy", "must be one of allow, skip"),
        ({"jitterS": 301}, "jitterS", "must be from 0 to 300"),
        ({"jitterS": -1}, "jitterS", "must be from 0 to 300"),
        ({"dstPolicy": "twice"}, "dstPolicy", "must be one of once, both"),
    ],
)
def test_a_bad_policy_is_a_422_naming_the_field_and_stores_nothing(
    client: FlaskClient,
    stored_schedules: Callable[[], int],
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    response = client.post(TASKS, json=cron_task(**fields))
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"]["json"][field] == [reason]
    assert stored_schedules() == 0


def test_a_bad_policy_in_an_edit_changes_nothing(
    client: FlaskClient, create: Create, schedule_row: Callable[[int], TaskSchedule | None]
) -> None:
    task = create(cron_task())
    response = client.patch(f"{TASKS}/{task['id']}", json={"jitterS": 1000, "name": "renamed"})
    assert response.status_code == 422
    assert response.get_json()["errors"]["json"] == {"jitterS": ["must be from 0 to 300"]}
    stored = schedule_row(task["id"])
    assert stored is not None and (stored.name, stored.jitter_s, stored.version) == (task["name"], 0, 1)


def test_a_broken_task_is_listed_with_its_reason_and_can_be_paused_and_mended(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(cron_task())
    with runtime.sessions.begin() as session:  # what an upgrade of the zone database could leave behind
        session.execute(
            text("UPDATE task_schedules SET timezone = 'Mars/Olympus' WHERE id = :id"), {"id": task["id"]}
        )

    listed = client.get(TASKS)
    assert listed.status_code == 200
    [broken] = listed.get_json()
    reason = (
        "its timing no longer gives slots (timezone: unknown IANA timezone 'Mars/Olympus'): "
        "edit its timing to resume it"
    )
    assert (broken["brokenReason"], broken["description"]) == (reason, "Broken")

    paused = client.patch(f"{TASKS}/{task['id']}", json={"enabled": False})
    assert paused.status_code == 200, paused.get_json()
    refused = client.patch(f"{TASKS}/{task['id']}", json={"enabled": True})
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["json"] == {"timezone": ["unknown IANA timezone 'Mars/Olympus'"]}

    mended = client.patch(f"{TASKS}/{task['id']}", json={"enabled": True, "timezone": "Europe/Berlin"})
    assert mended.status_code == 200
    assert mended.get_json()["brokenReason"] is None and mended.get_json()["nextRunAt"] is not None


def test_the_preview_shows_dst_both_and_each_runs_jittered_start(client: FlaskClient, create: Create) -> None:
    query = {"expression": "30 1 * * *", "timezone": "America/New_York", "after": "2026-11-01T00:00:00Z"}
    once = client.get(PREVIEW, query_string={**query, "count": 2}).get_json()
    both = client.get(PREVIEW, query_string={**query, "count": 2, "dstPolicy": "both"}).get_json()
    assert once["nextRuns"] == ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]
    assert both["nextRuns"] == ["2026-11-01T05:30:00.000Z", "2026-11-01T06:30:00.000Z"]

    task = create(cron_task(jitterS=90))
    jittered = client.get(PREVIEW, query_string={**query, "jitterS": 90, "taskId": task["id"]}).get_json()
    slots = [parse_utc(slot) for slot in jittered["nextRuns"]]
    assert [parse_utc(start) for start in jittered["startsAt"]] == [
        slot + jitter(task["id"], slot, 90) for slot in slots
    ]
    assert client.get(PREVIEW, query_string={**query, "jitterS": 90}).get_json()["startsAt"] is None
    assert client.get(PREVIEW, query_string={**query, "jitterS": 301}).status_code == 422
    assert client.get(PREVIEW, query_string={**query, "dstPolicy": "twice"}).status_code == 422


def test_the_history_shows_a_missed_range_and_filters_by_outcome(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(interval_task())
    first = datetime(2026, 11, 1, tzinfo=UTC)
    with runtime.sessions.begin() as session:
        session.execute(
            text(
                "INSERT INTO task_run_history (schedule_id, schedule_name, task_type, status, triggered_by,"
                " scheduled_for, last_slot, missed_slots, attempt, queued_at, due_at, completed_at, error_message)"
                " VALUES (:id, 'export', 'data_export', :status, 'schedule', :first, :last, :count, :attempt,"
                " now(), now(), now(), :why)"
            ),
            [
                {
                    "id": task["id"],
                    "status": "missed",
                    "first": first,
                    "last": first + timedelta(minutes=43_199),
                    "count": 43_200,
                    "attempt": 0,
                    "why": "passed while the schedule was disabled; misfire policy coalesce",
                },
                {
                    "id": task["id"],
                    "status": "success",
                    "first": first + timedelta(days=30),
                    "last": None,
                    "count": 0,
                    "attempt": 1,
                    "why": None,
                },
            ],
        )

    response = client.get(HISTORY, query_string={"scheduleId": task["id"], "status": "missed"})
    assert response.status_code == 200
    [missed] = response.get_json()
    assert (missed["scheduledFor"], missed["lastSlot"], missed["missedSlots"], missed["attempt"]) == (
        "2026-11-01T00:00:00.000Z",
        "2026-11-30T23:59:00.000Z",
        43_200,
        0,
    )
    everything = client.get(HISTORY, query_string={"scheduleId": task["id"]}).get_json()
    assert sorted(entry["status"] for entry in everything) == ["missed", "success"]
    assert client.get(HISTORY, query_string={"status": "lost"}).status_code == 422
