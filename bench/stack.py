"""The real stack for ``make bench``: a throwaway database and vhost, worker pods, a beat and an API, as deployed.

Everything it creates (database, vhost, processes, temporary folders) is removed by ``Stack.close``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import pika
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from services.__main__ import descendants
from shared.db import upgrade_to_head
from shared.messaging import QUEUES
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings, declaration

ADMIN_URL = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The bench's own connections say so, so that measurements of the system under test can leave them out.
HARNESS_APPLICATION_NAME = "cronwork-bench-harness"
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait()

    def pids(self) -> list[int]:
        """The process and all its descendants."""
        return [self.popen.pid, *descendants(self.popen.pid)]

    def rss_mb(self) -> float:
        """Resident memory of the process and all its descendants, in MB."""
        return sum(_rss_kb(pid) for pid in self.pids()) / 1024


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a cronwork process started on ``settings``: this one's, with every setting by its own
    variable (so the process runs with exactly these settings, whatever the caller's ``DATABASE_*`` and
    ``BROKER_*`` say), unbuffered output, and ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "BROKER_"))}
    env.update({declaration(f.name).env: str(getattr(settings, f.name)) for f in fields(Settings)})
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    """A database, a vhost, and the processes started on them."""

    settings: Settings
    runtime: Runtime
    database: str
    vhost: str
    directory: Path
    processes: list[Process] = field(default_factory=list)

    @classmethod
    def create(cls, **overrides: object) -> Stack:
        run_id = uuid.uuid4().hex[:8]
        database = vhost = f"cronwork_bench_{run_id}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        base = Settings(
            database_url=ADMIN_URL.rsplit("/", 1)[0] + f"/{database}",
            broker_url=f"{RABBITMQ_URL}/{vhost}",
            simulated_work_ms=0,  # the task types' handlers do nothing: we measure the scheduler
            demo_task_types="true",  # the simulated types are the no-op handlers
            log_level="WARNING",
        )
        settings = Settings(**{**base.__dict__, **overrides})
        upgrade_to_head(settings.sqlalchemy_url)
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
        for queue in QUEUES:
            broker.declare_queue(queue, ensure=True)
        runtime = build_runtime(settings, broker=broker)
        return cls(settings, runtime, database, vhost, Path(tempfile.mkdtemp(prefix="cronwork-bench-")))

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def environment(self, **extra: str) -> dict[str, str]:
        return process_environment(self.settings, **extra)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log_path = self.directory / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def start_worker_pod(self, number: int) -> Process:
        """Pod ``number`` (pods start one after another, from 1): ready once each of its three groups (ticks,
        system, runs) consumes its queue. Each pod serves its metrics on a port of its own, as pods do."""
        heartbeat = self.directory / f"pod{number}"
        pod = self.start(
            f"worker-pod{number}",
            [sys.executable, "-m", "services", "worker"],
            self.environment(HEARTBEAT_DIR=str(heartbeat), dramatiq_prom_port=str(free_port())),
        )
        deadline = time.monotonic() + 90
        while min(self.consumers().get(queue, 0) for queue in QUEUES) < number:
            if time.monotonic() > deadline or pod.popen.poll() is not None:
                raise SystemExit(f"worker pod {number} did not start:\n{pod.log()}")
            time.sleep(0.2)
        return pod

    def start_beat(self) -> Process:
        return self.start(
            "beat",
            [sys.executable, "-m", "services", "beat"],
            self.environment(HEARTBEAT_DIR=str(self.directory)),
        )

    def start_api(self, port: int) -> Process:
        return self.start(
            "api",
            [sys.executable, "-m", "services", "api"],
            self.environment(PORT=str(port), GUNICORN_WORKERS="2"),
        )

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    def sql(self, statement: str, parameters: tuple[object, ...] | dict[str, object] = ()) -> list[tuple]:
        with psycopg.connect(
            self.database_url, autocommit=True, application_name=HARNESS_APPLICATION_NAME
        ) as connection:
            cursor = connection.execute(statement, parameters)
            return cursor.fetchall() if cursor.description else []

    def consumers(self) -> dict[str, int]:
        """Consumers per queue of the vhost."""
        counts = {}
        for line in rabbitmqctl("list_queues", "-p", self.vhost, "name", "consumers").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
        return counts

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        """Ready and unacknowledged messages per queue of the vhost."""
        depths = {}
        for line in rabbitmqctl(
            "list_queues", "-p", self.vhost, "name", "messages_ready", "messages_unacknowledged"
        ).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                depths[parts[0]] = (int(parts[1]), int(parts[2]))
        return depths

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.runtime.publisher.close()
        self.runtime.broker.close()
        self.runtime.sessions.kw["bind"].dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], check=False, capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def insert_schedules(stack: Stack, timings: Iterable[tuple[str | None, int | None, datetime]]) -> None:
    """Armed, enabled schedules straight into the table (the API's create path is measured apart), one per
    ``(cron_expression, interval_ms, first_slot)``; their ticks are published by the pump or ``arm_all``."""
    now = datetime.now(UTC)
    columns = (
        "name, task_type, schedule_type, cron_expression, interval_ms, timezone, enabled, config, created_by,"
        " created_at, updated_at, next_run_at, dedupe_key, version"
    )
    with (
        psycopg.connect(stack.database_url, application_name=HARNESS_APPLICATION_NAME) as connection,
        connection.cursor() as cursor,
        cursor.copy(f"COPY task_schedules ({columns}) FROM STDIN") as copy,
    ):
        for n, (cron_expression, interval_ms, first_slot) in enumerate(timings):
            schedule_type = "cron" if cron_expression else "interval"
            copy.write_row(
                (
                    f"bench {n}",
                    "report_publish",
                    schedule_type,
                    cron_expression,
                    interval_ms,
                    "UTC",
                    True,
                    '{"reportId": "compliance-weekly"}',
                    "bench",
                    now,
                    now,
                    first_slot,
                    uuid.uuid4().hex,
                    1,
                )
            )


def reset(stack: Stack) -> None:
    """Stop every schedule, drop the backlog a measurement left, and empty the tables and queues for the next."""
    # In id order, as claims lock rows: a mass update in any other order could deadlock with them.
    stack.sql(
        "UPDATE task_schedules SET enabled = false, next_run_at = NULL"
        " WHERE id IN (SELECT id FROM task_schedules ORDER BY id FOR UPDATE)"
    )
    purge_queues(stack)
    # What is still queued will never be started by a message: settle it here rather than wait for the workers.
    stack.sql("UPDATE task_run_history SET status = 'skipped' WHERE status = 'queued'")
    deadline = time.monotonic() + 60
    while stack.sql("SELECT count(*) FROM task_run_history WHERE status = 'running'")[0][0]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(1)  # ticks already claimed publish nothing more
    stack.sql("TRUNCATE task_run_history, task_schedules, ticks_in_flight")
    purge_queues(stack)


def purge_queues(stack: Stack) -> None:
    """Drop the ready messages of every queue (over AMQP: ``rabbitmqctl`` takes a second a call)."""
    connection = pika.BlockingConnection(pika.URLParameters(stack.settings.broker_url))
    try:
        channel = connection.channel()
        for queue in QUEUES:
            for name in (queue, f"{queue}.DQ"):
                channel.queue_purge(name)
    finally:
        connection.close()
