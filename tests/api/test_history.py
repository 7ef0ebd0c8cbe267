"""/api/scheduler/history: what ran, newest first, filtered and paged, kept after its schedule is deleted."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import insert, text

from shared import schedules
from shared.models import TaskRunHistory
from shared.runtime import Runtime
from tests.api.conftest import HISTORY, TASKS, cron_task, interval_task, parse_utc

Create = Callable[[dict[str, Any]], dict[str, Any]]
SLOT = datetime(2025, 3, 30, 1, 0, tzinfo=UTC)


def store_runs(runtime: Runtime, *runs: dict[str, Any]) -> list[int]:
    """Stores finished runs as a worker would have recorded them; returns their ids in insertion order."""
    defaults = {
        "task_type": "report_publish",
        "status": "success",
        "triggered_by": "schedule",
        "attempt": 1,
        "queued_at": SLOT,
        "due_at": SLOT,
    }
    with runtime.sessions.begin() as session:
        ids = session.scalars(
            insert(TaskRunHistory).returning(TaskRunHistory.id, sort_by_parameter_order=True),
            [{**defaults, **run} for run in runs],
        ).all()
    return list(ids)


def ids_of(response: Any) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [run["id"] for run in response.get_json()]


def test_history_is_newest_first(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())
    queued = [client.post(f"{TASKS}/{task['id']}/run").get_json()["id"] for _ in range(3)]

    assert ids_of(client.get(HISTORY)) == queued[::-1]


def test_history_object_has_every_field_in_utc_with_z(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(cron_task())
    started = SLOT + timedelta(milliseconds=120)
    store_runs(
        runtime,
        {
            "schedule_id": task["id"],
            "status": "failed",
            "scheduled_for": SLOT,
            "started_at": started,
            "completed_at": started + timedelta(seconds=2),
            "duration_ms": 2000,
            "attempt": 2,
            "error_message": "HTTP 503 from the report service",
        },
    )

    (run,) = client.get(HISTORY).get_json()

    assert {
        k: run[k]
        for k in ("scheduleId", "taskType", "status", "triggeredBy", "durationMs", "attempt", "errorMessage")
    } == {
        "scheduleId": task["id"],
        "taskType": "report_publish",
        "status": "failed",
        "triggeredBy": "schedule",
        "durationMs": 2000,
        "attempt": 2,
        "errorMessage": "HTTP 503 from the report service",
    }
    assert run["scheduledFor"] == "2025-03-30T01:00:00.000Z"
    assert run["startedAt"] == "2025-03-30T01:00:00.120Z"
    assert run["completedAt"] == "2025-03-30T01:00:02.120Z"
    assert parse_utc(run["completedAt"]) - parse_utc(run["startedAt"]) == timedelta(seconds=2)


def test_history_filters_by_schedule(client: FlaskClient, create: Create) -> None:
    mine, other = create(cron_task(name="mine")), create(interval_task(name="other"))
    wanted = client.post(f"{TASKS}/{mine['id']}/run").get_json()["id"]
    client.post(f"{TASKS}/{other['id']}/run")

    assert ids_of(client.get(HISTORY, query_string={"scheduleId": mine["id"]})) == [wanted]


def test_history_filters_by_status(client: FlaskClient, create: Create, runtime: Runtime) -> None:
    task = create(cron_task())
    failed, _, _ = store_runs(
        runtime,
        *(
            {"schedule_id": task["id"], "status": status, "scheduled_for": SLOT + n * timedelta(days=1)}
            for n, status in enumerate(("failed", "success", "abandoned"))
        ),
    )

    assert ids_of(client.get(HISTORY, query_string={"status": "failed"})) == [failed]


def test_history_filters_by_trigger(client: FlaskClient, create: Create, runtime: Runtime) -> None:
    task = create(cron_task())
    (scheduled,) = store_runs(runtime, {"schedule_id": task["id"], "scheduled_for": SLOT})
    manual = client.post(f"{TASKS}/{task['id']}/run").get_json()["id"]
    (system,) = store_runs(
        runtime,
        {"task_type": "SYSTEM", "system_task": "pump", "triggered_by": "system", "scheduled_for": SLOT},
    )

    assert ids_of(client.get(HISTORY, query_string={"triggeredBy": "manual"})) == [manual]
    assert ids_of(client.get(HISTORY, query_string={"triggeredBy": "schedule"})) == [scheduled]
    assert ids_of(client.get(HISTORY, query_string={"triggeredBy": "system"})) == [system]


def test_history_filters_combine(client: FlaskClient, create: Create, runtime: Runtime) -> None:
    task = create(cron_task())
    other = create(cron_task(name="other"))
    wanted, *_ = store_runs(
        runtime,
        {"schedule_id": task["id"], "status": "failed", "scheduled_for": SLOT},
        {"schedule_id": task["id"], "status": "success", "scheduled_for": SLOT + timedelta(days=1)},
        {"schedule_id": other["id"], "status": "failed", "scheduled_for": SLOT},
        {"schedule_id": task["id"], "status": "failed", "triggered_by": "manual"},
    )

    response = client.get(
        HISTORY, query_string={"scheduleId": task["id"], "status": "failed", "triggeredBy": "schedule"}
    )

    assert ids_of(response) == [wanted]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "exploded"},
        {"triggeredBy": "cron"},
        {"scheduleId": "abc"},
        {"page_size": 1001},
        {"page": 0},
        {"beforeId": 0},
        {"beforeId": "latest"},
    ],
)
def test_history_rejects_a_bad_filter_naming_it(client: FlaskClient, query: dict[str, Any]) -> None:
    response = client.get(HISTORY, query_string=query)

    assert response.status_code == 422
    assert set(query) <= set(response.get_json()["errors"]["query"])


def test_history_pages_default_to_100_with_the_total(client: FlaskClient, runtime: Runtime) -> None:
    ids = store_runs(runtime, *({"triggered_by": "manual"} for _ in range(101)))

    response = client.get(HISTORY)

    assert ids_of(response) == ids[::-1][:100]
    assert json.loads(response.headers["X-Pagination"])["total"] == 101
    assert ids_of(client.get(HISTORY, query_string={"page": 2})) == [ids[0]]


def test_history_pages_by_page_and_page_size(client: FlaskClient, runtime: Runtime) -> None:
    ids = store_runs(runtime, *({"triggered_by": "manual"} for _ in range(5)))

    response = client.get(HISTORY, query_string={"page": 2, "page_size": 2})

    assert ids_of(response) == [ids[2], ids[1]]
    pagination = json.loads(response.headers["X-Pagination"])
    assert (pagination["total"], pagination["total_pages"], pagination["page"]) == (5, 3, 2)


def test_before_id_continues_a_listing_where_its_last_page_ended(
    client: FlaskClient, runtime: Runtime
) -> None:
    ids = store_runs(runtime, *({"triggered_by": "manual"} for _ in range(5)))
    first = ids_of(client.get(HISTORY, query_string={"page_size": 2}))

    following = client.get(HISTORY, query_string={"page_size": 2, "beforeId": first[-1]})

    assert ids_of(following) == ids_of(client.get(HISTORY, query_string={"page_size": 2, "page": 2}))
    assert ids_of(following) == [ids[2], ids[1]]
    assert json.loads(following.headers["X-Pagination"])["total"] == 3  # the runs older than the cursor


def test_a_total_past_the_exact_count_limit_is_the_planners_estimate_and_says_so(
    client: FlaskClient, runtime: Runtime
) -> None:
    rows = schedules.EXACT_COUNT_LIMIT + 500
    with runtime.sessions.begin() as session:
        session.execute(
            text(
                "INSERT INTO task_run_history (task_type, status, triggered_by, queued_at, due_at, attempt,"
                " missed_slots) SELECT 'report_publish', 'success', 'manual', now(), now(), 1, 0"
                " FROM generate_series(1, :rows)"
            ),
            {"rows": rows},
        )
        session.execute(text("ANALYZE task_run_history"))

    pagination = json.loads(client.get(HISTORY, query_string={"page_size": 10}).headers["X-Pagination"])
    small = json.loads(client.get(HISTORY, query_string={"status": "failed"}).headers["X-Pagination"])

    assert pagination["total_is_estimate"] is True
    assert schedules.EXACT_COUNT_LIMIT < pagination["total"] <= 2 * rows
    assert pagination["total_pages"] == -(-pagination["total"] // 10)
    assert small == {"total": 0, "total_pages": 0}  # under the limit: exact, and no flag


def test_history_total_counts_the_filtered_runs(client: FlaskClient, runtime: Runtime) -> None:
    store_runs(
        runtime, *({"triggered_by": "manual", "status": "success" if n % 2 else "failed"} for n in range(7))
    )

    response = client.get(HISTORY, query_string={"status": "failed", "page_size": 1})

    assert json.loads(response.headers["X-Pagination"])["total"] == 4


def test_history_survives_deleting_its_schedule(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(cron_task())
    manual = client.post(f"{TASKS}/{task['id']}/run").get_json()
    store_runs(runtime, {"schedule_id": task["id"], "schedule_name": task["name"], "scheduled_for": SLOT})

    assert client.delete(f"{TASKS}/{task['id']}").status_code == 204

    runs = client.get(HISTORY).get_json()
    assert len(runs) == 2
    # The ledger keeps whose runs they were; the schedule itself is gone.
    assert {(run["scheduleId"], run["scheduleName"]) for run in runs} == {(task["id"], task["name"])}
    assert client.get(f"{HISTORY}?scheduleId={task['id']}").get_json() == runs
    assert client.get(f"{TASKS}/{task['id']}").status_code == 404
    assert manual["id"] in [run["id"] for run in runs]
    assert {run["taskType"] for run in runs} == {"report_publish"}


def test_history_of_a_schedule_without_runs_is_empty(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())

    response = client.get(HISTORY, query_string={"scheduleId": task["id"]})

    assert response.get_json() == []
    assert json.loads(response.headers["X-Pagination"])["total"] == 0


def test_history_filters_by_when_an_entry_was_queued_both_ends_included(
    client: FlaskClient, runtime: Runtime
) -> None:
    before, first, middle, last, after = store_runs(
        runtime, *({"triggered_by": "manual", "queued_at": SLOT + n * timedelta(hours=1)} for n in range(5))
    )
    span = {"from": "2025-03-30T02:00:00Z", "to": "2025-03-30T04:00:00Z"}

    assert ids_of(client.get(HISTORY, query_string=span)) == [last, middle, first]
    assert ids_of(client.get(HISTORY, query_string={"from": span["from"]})) == [after, last, middle, first]
    assert ids_of(client.get(HISTORY, query_string={"to": span["from"]})) == [first, before]
    # An instant with an offset is the same instant in UTC.
    berlin = {"from": "2025-03-30T04:00:00+02:00", "to": "2025-03-30T06:00:00+02:00"}
    assert ids_of(client.get(HISTORY, query_string=berlin)) == [last, middle, first]


def test_history_span_total_counts_only_the_runs_within_it(client: FlaskClient, runtime: Runtime) -> None:
    store_runs(
        runtime, *({"triggered_by": "manual", "queued_at": SLOT + n * timedelta(days=1)} for n in range(6))
    )

    response = client.get(
        HISTORY, query_string={"from": "2025-03-31T00:00:00Z", "to": "2025-04-02T12:00:00Z", "page_size": 1}
    )

    assert json.loads(response.headers["X-Pagination"])["total"] == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2025-03-30T04:00:00Z", "to": "2025-03-30T02:00:00Z"}, "to"),
        ({"from": "2025-03-30T04:00:00Z", "to": "2025-03-30T04:00:00Z"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-01T00:00:00Z"}, "to"),
        ({"includeSystem": "maybe"}, "includeSystem"),
    ],
)
def test_history_rejects_a_bad_span_or_include_system_naming_the_field(
    client: FlaskClient, query: dict[str, Any], field: str
) -> None:
    response = client.get(HISTORY, query_string=query)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["query"]) == {field}


def test_history_without_system_runs_keeps_every_user_run(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    task = create(cron_task())
    scheduled, system = store_runs(
        runtime,
        {"schedule_id": task["id"], "scheduled_for": SLOT},
        {"task_type": "SYSTEM", "system_task": "pump", "triggered_by": "system", "scheduled_for": SLOT},
    )
    manual = client.post(f"{TASKS}/{task['id']}/run").get_json()["id"]

    assert ids_of(client.get(HISTORY)) == [manual, system, scheduled]
    assert ids_of(client.get(HISTORY, query_string={"includeSystem": "true"})) == [manual, system, scheduled]
    assert ids_of(client.get(HISTORY, query_string={"includeSystem": "false"})) == [manual, scheduled]
