"""What the API and the beat tell operators: the API's request metrics (by URL rule, summed over gunicorn's
processes), the scheduler's health gauges and the broker's queues on /metrics, each task's failure streak and
last error, and the beat's heartbeat on its own port."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from shared.db import utcnow
from shared.models import RunStatus, ScheduleHealth, TaskRunHistory, TriggeredBy
from shared.runtime import Runtime
from shared.settings import Settings
from shared.system_tasks import SYSTEM_TASK_TYPE
from tests.api.conftest import TASKS, cron_task
from tests.conftest import Services, environment, free_port, http_ok, wait_for

Create = Callable[[dict[str, Any]], dict[str, Any]]
TASK_ROUTE = "/api/scheduler/tasks/<task_id:task_id>"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_counted(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], route: str, status: str
) -> float:
    labels = frozenset({("method", "GET"), ("route", route), ("status", status)})
    return found.get(("cronwork_http_requests_total", labels), 0.0)


def test_requests_are_counted_by_url_rule_never_by_raw_path(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())
    before = samples(client.get("/metrics").get_data(as_text=True))

    for _ in range(3):
        assert client.get(f"{TASKS}/{task['id']}").status_code == 200
    assert client.get("/no/such/page/12345").status_code == 404

    after = samples(client.get("/metrics").get_data(as_text=True))
    assert requests_counted(after, TASK_ROUTE, "200") - requests_counted(before, TASK_ROUTE, "200") == 3
    assert requests_counted(after, "unmatched", "404") - requests_counted(before, "unmatched", "404") == 1
    assert not any("12345" in value for _name, labels in after for _key, value in labels)
    duration = (
        "cronwork_http_request_duration_seconds_count",
        frozenset({("method", "GET"), ("route", TASK_ROUTE)}),
    )
    assert after[duration] - before.get(duration, 0.0) == 3


def test_a_task_shows_its_failure_streak_and_last_error_and_the_metrics_count_it(
    client: FlaskClient, create: Create, runtime: Runtime
) -> None:
    failing = create(cron_task(name="failing"))
    healthy = create(cron_task(name="healthy"))
    failed_at = utcnow().replace(microsecond=0)
    with runtime.sessions.begin() as session:
        session.add(
            ScheduleHealth(
                schedule_id=failing["id"],
                failure_streak=4,
                last_error="HTTP 503 from the report service",
                last_error_at=failed_at,
            )
        )

    shown = client.get(f"{TASKS}/{failing['id']}").get_json()
    listed = {item["id"]: item for item in client.get(TASKS).get_json()}

    for task in (shown, listed[failing["id"]]):
        assert (task["failureStreak"], task["lastError"]) == (4, "HTTP 503 from the report service")
        assert task["lastErrorAt"].startswith(failed_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert (listed[healthy["id"]]["failureStreak"], listed[healthy["id"]]["lastError"]) == (0, None)
    text = client.get("/metrics").get_data(as_text=True)
    assert "cronwork_schedules_failing_repeatedly 1.0" in text
    assert "cronwork_schedule_failure_streak_max 4.0" in text


def test_metrics_show_the_system_crons_last_runs_and_the_queues(
    client: FlaskClient, empty_queues: Runtime
) -> None:
    finished = utcnow() - timedelta(minutes=3)
    with empty_queues.sessions.begin() as session:
        session.add(
            TaskRunHistory(
                task_type=SYSTEM_TASK_TYPE,
                system_task="pump",
                status=RunStatus.SUCCESS,
                triggered_by=TriggeredBy.SYSTEM,
                scheduled_for=finished,
                queued_at=finished,
                due_at=finished,
                started_at=finished,
                completed_at=finished,
                attempt=1,
            )
        )

    found = samples(client.get("/metrics").get_data(as_text=True))

    pump = ("cronwork_system_task_last_run_timestamp_seconds", frozenset({("task", "pump")}))
    assert found[pump] == finished.timestamp()
    for queue in ("cronwork.runs", "cronwork.runs.DQ", "cronwork.ticks", "cronwork.system.DQ"):
        assert found[("cronwork_queue_messages", frozenset({("queue", queue)}))] == 0
        assert ("cronwork_queue_consumers", frozenset({("queue", queue)})) in found


def test_an_unreachable_broker_leaves_the_queues_out_but_the_scrape_answers(
    app_with: Callable[..., Any],
) -> None:
    client = app_with(broker_url="amqp://guest:guest@127.0.0.1:1/%2F").test_client()

    response = client.get("/metrics")

    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "cronwork_queue_messages{" not in text
    assert "cronwork_schedules_failing_repeatedly" in text


def test_gunicorn_sums_every_process_and_the_beat_serves_its_heartbeat(
    services: Services, settings: Settings
) -> None:
    served = dataclasses.replace(
        settings, port=free_port(), gunicorn_workers=3, beat_metrics_port=free_port()
    )
    env = {**environment(served), "GUNICORN_WORKERS": "3"}
    services.start("api", env)
    services.start("beat", env)
    base_url = f"http://127.0.0.1:{served.port}"
    wait_for(lambda: http_ok(f"{base_url}/healthz"), 30, "gunicorn to answer /healthz")

    def healthz_counted() -> float:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
            found = samples(response.read().decode())
        assert ("cronwork_slots_missed_total", frozenset()) not in found  # the workers count slots and runs
        return requests_counted(found, "/healthz", "200")

    before = healthz_counted()
    for _ in range(20):  # answered by whichever of the processes accepts first
        assert http_ok(f"{base_url}/healthz")
    assert healthz_counted() - before == 20  # every process's count, summed

    beat_metrics = f"http://127.0.0.1:{served.beat_metrics_port}/metrics"
    wait_for(lambda: http_ok(beat_metrics), 30, "the beat to serve its metrics")
    with urllib.request.urlopen(beat_metrics, timeout=5) as response:
        beat = samples(response.read().decode())
    assert time.time() - beat[("cronwork_beat_heartbeat_timestamp_seconds", frozenset())] < 60
