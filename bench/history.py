"""The history API on a large table: the first page, a deep page and one schedule's page, through gunicorn."""

from __future__ import annotations

from typing import Any

from bench.http import ApiClient
from bench.stack import Stack

SCHEDULES = 1000
REQUESTS = 100
HISTORY = "/api/scheduler/history"


def fill_history(stack: Stack, rows: int) -> None:
    """``rows`` finished runs of ``SCHEDULES`` schedules, one a second back in time, then ANALYZE."""
    first_id = stack.sql(
        "INSERT INTO task_schedules (name, task_type, schedule_type, interval_ms, timezone, enabled, config,"
        " created_by, created_at, updated_at, version) SELECT 'history ' || n, 'report_publish', 'interval', 60000,"
        " 'UTC', false, '{}', 'bench', now(), now(), 1 FROM generate_series(1, %s) AS n RETURNING id",
        (SCHEDULES,),
    )[0][0]
    batch = 1_000_000
    for start in range(0, rows, batch):
        stack.sql(
            "INSERT INTO task_run_history (schedule_id, task_type, status, triggered_by, scheduled_for, queued_at,"
            " due_at, started_at, completed_at, duration_ms, attempt, missed_slots)"
            " SELECT %s + n %% %s, 'report_publish', CASE WHEN n %% 100 = 0 THEN 'failed' ELSE 'success' END,"
            " 'schedule', t, t, t, t, t, 10, 1, 0"
            " FROM generate_series(%s, %s) AS n, LATERAL (SELECT now() - n * interval '1 second' AS t) AS at",
            (first_id, SCHEDULES, start + 1, min(rows, start + batch)),
        )
    stack.sql("VACUUM ANALYZE task_run_history")


def history_latencies(stack: Stack, port: int, rows: int) -> dict[str, Any]:
    newest, oldest, some_schedule = stack.sql(
        "SELECT max(id), min(id), min(schedule_id) + %s FROM task_run_history", (SCHEDULES // 2,)
    )[0]
    middle = (newest + oldest) // 2
    client = ApiClient(port)
    try:
        pages = {
            "first page (50)": f"{HISTORY}?page_size=50",
            "deep page (50, beforeId mid-table)": f"{HISTORY}?page_size=50&beforeId={middle}",
            "one schedule's first page (50)": f"{HISTORY}?page_size=50&scheduleId={some_schedule}",
            "one schedule's deep page (50)": f"{HISTORY}?page_size=50&scheduleId={some_schedule}&beforeId={middle}",
            "page 20 by offset (50)": f"{HISTORY}?page_size=50&page=20",
            "failed runs, first page (50)": f"{HISTORY}?page_size=50&status=failed",
        }
        return {"rows": rows, **{label: client.timed("GET", path, REQUESTS) for label, path in pages.items()}}
    finally:
        client.close()
