"""`make bench`: numbers, not assertions. Slot lateness and throughput through real worker processes over the
real PostgreSQL and RabbitMQ, and the cost of the scheduling core.

    python -m tests.bench [--schedules 100] [--interval-ms 2000] [--seconds 30] [--history-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import select

from services.api.app import create_app
from shared import schedules
from shared.cron import CronSpec, iter_cron_slots
from shared.db import upgrade_to_head
from shared.messaging import QUEUES
from shared.models import TaskRunHistory, TriggeredBy
from shared.runtime import build_runtime
from shared.settings import Settings

ADMIN_URL = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe_ms(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} p50 {percentile(values, 0.5):7.1f} ms   p95 {percentile(values, 0.95):7.1f} ms   "
        f"p99 {percentile(values, 0.99):7.1f} ms   max {max(values):7.1f} ms"
    )


def bench_scheduling_core() -> None:
    print("scheduling core (next slot, in-process)")
    after = datetime(2026, 3, 1, tzinfo=UTC)
    for expression, zone in (
        ("*/5 * * * *", "UTC"),
        ("0 9 * * 1-5", "Europe/Berlin"),
        ("30 2 * * *", "America/New_York"),
        ("* * * * *", "Australia/Lord_Howe"),
    ):
        slots = iter_cron_slots(CronSpec.parse(expression), zone, after)
        count = 2000
        started = time.perf_counter()
        for _ in range(count):
            next(slots)
        per_slot_us = (time.perf_counter() - started) / count * 1e6
        print(f"  {expression:<14} {zone:<20} {per_slot_us:8.1f} us per slot")


def bench_firing_and_history(schedule_count: int, interval_ms: int, seconds: int, history_rows: int) -> None:
    run_id = uuid.uuid4().hex[:8]
    database = f"cronwork_bench_{run_id}"
    vhost = f"cronwork_bench_{run_id}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True
    )
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    settings = Settings(database_url=database_url, broker_url=f"{RABBITMQ_URL}/{vhost}", simulated_work_ms=10)
    upgrade_to_head(settings.sqlalchemy_url)
    heartbeat_dir = tempfile.mkdtemp()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        "SIMULATED_WORK_MS": "10",
        "HEARTBEAT_DIR": heartbeat_dir,
        "LOG_LEVEL": "WARNING",
    }
    worker_log = Path(heartbeat_dir) / "worker.log"
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "services", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    for queue in QUEUES:
        broker.declare_queue(queue)
    runtime = build_runtime(settings, broker=broker)
    try:
        deadline = time.monotonic() + 60
        while worker_log.read_text(errors="replace").count("is ready for action") < 2:  # both groups
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"the worker did not start:\n{worker_log.read_text(errors='replace')}")
            time.sleep(0.1)
        print(
            f"\nfiring: {schedule_count} interval schedules every {interval_ms} ms for {seconds} s, "
            f"one worker pod (defaults: 2 run processes x 4 threads, 1 tick process x 2 threads)"
        )
        for n in range(schedule_count):
            schedules.create_schedule(
                runtime,
                {
                    "name": f"bench {n}",
                    "taskType": "send_email",
                    "config": {"templateId": "weekly-digest"},
                    "scheduleType": "interval",
                    "intervalMs": interval_ms,
                },
                "bench",
            )
        started = datetime.now(UTC)
        time.sleep(seconds)
        cutoff = started + timedelta(seconds=seconds) - timedelta(milliseconds=interval_ms)
        with runtime.sessions() as session:
            runs = session.scalars(
                select(TaskRunHistory).where(
                    TaskRunHistory.triggered_by == TriggeredBy.SCHEDULE,
                    TaskRunHistory.scheduled_for <= cutoff,
                )
            ).all()
        claimed = [(r.queued_at - r.scheduled_for).total_seconds() * 1000 for r in runs]
        begun = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in runs if r.started_at]
        duplicates = sum(
            count - 1 for count in Counter((r.schedule_id, r.scheduled_for) for r in runs).values()
        )
        expected = schedule_count * int((cutoff - started).total_seconds() * 1000 // interval_ms)
        print(
            f"  slots run: {len(runs)} (about {expected} due), duplicates: {duplicates}, "
            f"missed (coalesced): {sum(r.missed_slots for r in runs)}, "
            f"throughput: {len(runs) / max(1.0, (cutoff - started).total_seconds()):.1f} slots/s"
        )
        print("  " + describe_ms("slot -> claimed", claimed))
        print("  " + describe_ms("slot -> handler started", begun))
        worker.terminate()
        worker.wait(60)
        bench_history_queries(settings.database_url, lambda: runtime, history_rows)
    finally:
        worker.terminate()
        worker.wait(60)
        broker.close()
        runtime.sessions.kw["bind"].dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


def bench_history_queries(database_url: str, runtime_factory: Callable[[], Any], rows: int) -> None:
    """The API's history endpoint on a table of ``rows`` runs: newest first, per schedule and overall."""
    schedule_count = 1000
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO task_schedules (name, task_type, schedule_type, interval_ms, config, created_by,"
            " created_at, updated_at) SELECT 'history ' || n, 'send_email', 'interval', 60000, '{}', 'bench',"
            " now(), now() FROM generate_series(1, %s) AS n",
            (schedule_count,),
        )
        first_id = connection.execute(
            "SELECT min(id) FROM task_schedules WHERE created_by = 'bench'"
        ).fetchone()[0]
        connection.execute(
            "INSERT INTO task_run_history (schedule_id, task_type, status, triggered_by, scheduled_for,"
            " queued_at, due_at, started_at, completed_at, duration_ms, attempt, missed_slots)"
            " SELECT %s + n %% %s, 'send_email', 'success', 'schedule',"
            " now() - n * interval '1 second', now() - n * interval '1 second', now() - n * interval '1 second',"
            " now() - n * interval '1 second', now() - n * interval '1 second', 10, 1, 0"
            " FROM generate_series(1, %s) AS n",
            (first_id, schedule_count, rows),
        )
        connection.execute("ANALYZE")
    client = create_app(runtime=runtime_factory()).test_client()
    some_schedule = first_id + schedule_count // 2
    print(f"\nhistory API on {rows:,} runs of {schedule_count} schedules (median of 20 requests)")
    for label, path in (
        ("one schedule, newest 50", f"/api/scheduler/history?scheduleId={some_schedule}&page_size=50"),
        ("one schedule, page 10", f"/api/scheduler/history?scheduleId={some_schedule}&page_size=50&page=10"),
        ("all, newest 50", "/api/scheduler/history?page_size=50"),
        ("all failed, newest 50", "/api/scheduler/history?status=failed&page_size=50"),
    ):
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.get_data(as_text=True)
        print(
            f"  {label:<28} {percentile(timings, 0.5):8.1f} ms   (total {response.headers['X-Pagination']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=100)
    parser.add_argument("--interval-ms", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    bench_scheduling_core()
    bench_firing_and_history(args.schedules, args.interval_ms, args.seconds, args.history_rows)


if __name__ == "__main__":
    main()
