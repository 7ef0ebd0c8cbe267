"""Fixtures for the engine tests: real ``cronwork worker``/``beat`` processes over a fresh vhost per test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import select

from shared import schedules
from shared.audit import Actor
from shared.heartbeat import heartbeat_path
from shared.messaging import QUEUES
from shared.models import NOT_AN_ATTEMPT, TaskRunHistory, TaskSchedule, TriggeredBy
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings
from tests.conftest import Service, Services, environment, make_settings, truncate, wait_for

REPORT = {"task_type": "report_publish", "config": {"reportId": "compliance-weekly"}}


# The domain's write functions work in a session the caller owns (the API's is the request's); tests own one each.
def create_schedule(
    runtime: Runtime, values: dict[str, Any], created_by: str = "tests", allow_seconds: bool = False
) -> TaskSchedule:
    with runtime.sessions() as session:
        return schedules.create_schedule(runtime, session, values, Actor(created_by), allow_seconds)  # type: ignore[arg-type]


def update_schedule(
    runtime: Runtime, schedule_id: int, values: dict[str, Any], allow_seconds: bool = False
) -> TaskSchedule | None:
    with runtime.sessions() as session:
        return schedules.update_schedule(runtime, session, schedule_id, values, allow_seconds)  # type: ignore[arg-type]


def run_now(runtime: Runtime, schedule_id: int) -> TaskRunHistory | None:
    with runtime.sessions() as session:
        return schedules.run_now(runtime, session, schedule_id)


def delete_schedule(runtime: Runtime, schedule_id: int) -> bool:
    with runtime.sessions() as session:
        return schedules.delete_schedule(session, schedule_id)


@dataclass
class Engine:
    """The test's handle on the system: its settings, an in-process runtime, and helpers over the database."""

    settings: Settings
    runtime: Runtime
    services: Services
    tmp_path: Path

    def start_worker(self, **env: str) -> Service:
        heartbeat_dir = self.tmp_path / f"worker-{len(self.services.started)}"
        service = self.services.start(
            "worker", environment(self.settings, HEARTBEAT_DIR=str(heartbeat_dir), **env)
        )
        wait_for(
            lambda: (
                heartbeat_path(str(heartbeat_dir), "worker").exists() or service.process.poll() is not None
            ),
            60,
            "the worker to boot",
        )
        assert service.process.poll() is None, service.log()
        # The Dramatiq groups (ticks, system crons, runs) write the heartbeat; wait until each has booted.
        wait_for(
            lambda: service.log().count("is ready for action") >= 3, 60, "the three worker groups to be ready"
        )
        return service

    def start_beat(self) -> Service:
        return self.services.start("beat", environment(self.settings))

    def create(self, **fields: Any) -> TaskSchedule:
        return create_schedule(self.runtime, {"name": "engine test", **REPORT, **fields}, allow_seconds=True)

    def update(self, schedule_id: int, **fields: Any) -> TaskSchedule:
        updated = update_schedule(self.runtime, schedule_id, fields, allow_seconds=True)
        assert updated is not None
        return updated

    def schedule(self, schedule_id: int) -> TaskSchedule:
        with self.runtime.sessions() as session:
            found = session.get(TaskSchedule, schedule_id)
            assert found is not None
            return found

    def runs(
        self, schedule_id: int | None = None, triggered_by: str | None = None, system_task: str | None = None
    ) -> list[TaskRunHistory]:
        """Runs oldest first."""
        query = select(TaskRunHistory).order_by(TaskRunHistory.id)
        if schedule_id is not None:
            query = query.where(TaskRunHistory.schedule_id == schedule_id)
        if triggered_by is not None:
            query = query.where(TaskRunHistory.triggered_by == triggered_by)
        if system_task is not None:
            query = query.where(TaskRunHistory.system_task == system_task)
        with self.runtime.sessions() as session:
            return list(session.scalars(query).all())

    def scheduled_runs(self, schedule_id: int) -> list[TaskRunHistory]:
        """The attempts its slots' ticks made, oldest first (not the ledger's missed and skipped entries)."""
        return [run for run in self.ledger(schedule_id) if run.attempt > NOT_AN_ATTEMPT]

    def ledger(self, schedule_id: int) -> list[TaskRunHistory]:
        """Every entry its slots left: attempts, and missed and skipped entries (attempt 0), oldest first."""
        return self.runs(schedule_id, TriggeredBy.SCHEDULE)

    def wait_for_runs(
        self, schedule_id: int, count: int, timeout_s: float, status: str | None = None
    ) -> list[TaskRunHistory]:
        def enough() -> list[TaskRunHistory] | None:
            runs = [r for r in self.scheduled_runs(schedule_id) if status is None or r.status == status]
            return runs if len(runs) >= count else None

        return wait_for(enough, timeout_s, f"{count} runs of schedule {schedule_id}")  # type: ignore[return-value]

    def purge_queues(self) -> int:
        """Delete every message waiting in the vhost's queues (what a broker wipe or a bad failover does)."""
        connection = pika.BlockingConnection(pika.URLParameters(self.settings.broker_url))
        channel = connection.channel()
        purged = 0
        for queue in QUEUES:
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                purged += channel.queue_purge(name).method.message_count
        connection.close()
        return purged


@pytest.fixture
def make_engine(
    database_url: str, make_vhost: Callable[[str], str], services: Services, tmp_path: Path
) -> Iterator[Callable[..., Engine]]:
    brokers: list[RabbitmqBroker] = []

    def make(**overrides: Any) -> Engine:
        truncate(database_url)
        defaults: dict[str, Any] = {
            "simulated_work_ms": 100,
            "task_time_limit_s": 10,
            "run_lease_margin_s": 2,
            "worker_processes": 1,
            "worker_threads": 4,
        }
        settings = make_settings(
            database_url, make_vhost(f"engine{len(brokers)}"), **{**defaults, **overrides}
        )
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
        for queue in QUEUES:
            broker.declare_queue(queue)
        brokers.append(broker)
        return Engine(settings, build_runtime(settings, broker=broker), services, tmp_path)

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


LOOPBACK = (
    "127.0.0.1/32"  # the HTTP task refuses loopback unless HTTP_ALLOWED_NETWORKS opens it (the stub below)
)


@dataclass
class StubUpstream:
    """A service the HTTP task calls: answers ``status`` to every GET (503, an outage, until a test sets
    another), and counts the calls."""

    url: str = ""
    status: int = 503
    calls: int = 0


@pytest.fixture
def upstream() -> Iterator[StubUpstream]:
    stub = StubUpstream()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            stub.calls += 1
            body = b"upstream maintenance window" if stub.status >= 500 else b"ok"
            self.send_response(stub.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/health"
    yield stub
    server.shutdown()
