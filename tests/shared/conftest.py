"""The unit tier's system: the protocol in this process, on a temporary SQLite file and Dramatiq's in-memory
broker, as the embedded mode runs it. No PostgreSQL, no RabbitMQ, no other process: a test calls the protocol's
functions and reads the rows and the messages they leave behind.

Time is driven by the ``now`` the functions take; where they read the clock themselves, a test arranges the
rows' timestamps around the real now instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from queue import Empty
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from sqlalchemy import func, select

from shared import protocol
from shared.db import create_db_engine, create_session_factory, upgrade_to_head
from shared.messaging import RUN_QUEUE, TICK_QUEUE, Publisher, TickSlot, build_broker, tick_slots
from shared.models import TaskRunHistory, TaskSchedule, TickInFlight
from shared.runtime import Runtime
from shared.settings import Settings

REPORT_CONFIG = {"reportId": "compliance-weekly"}
UNIT_SETTINGS = Settings(
    simulated_work_ms=0, demo_task_types="true"
)  # embedded: no DATABASE_URL, no BROKER_URL


@dataclass(frozen=True)
class Tick:
    """A tick message as a worker receives it."""

    id: int
    slots: list[TickSlot]


@dataclass
class Embedded:
    """The test's handle on the system: the runtime, and readers and writers of its rows and queues."""

    runtime: Runtime

    @property
    def broker(self) -> StubBroker:
        assert isinstance(self.runtime.broker, StubBroker)
        return self.runtime.broker

    # --- Schedules ---

    def add_schedule(
        self,
        now: datetime,
        *,
        interval_ms: int | None = None,
        cron: str | None = None,
        timezone: str = "UTC",
        enabled: bool = True,
    ) -> TaskSchedule:
        """Store a schedule armed at ``now`` (its first slot and a fresh key), its tick not yet published."""
        schedule_type = "cron" if cron else "interval" if interval_ms else "manual"
        with self.runtime.sessions.begin() as session:
            schedule = TaskSchedule(
                name="unit",
                task_type="report_publish",
                schedule_type=schedule_type,
                cron_expression=cron,
                interval_ms=interval_ms,
                timezone=timezone,
                enabled=enabled,
                config=REPORT_CONFIG,
                created_by="tests",
            )
            protocol.arm(schedule, now)
            session.add(schedule)
        return schedule

    def schedule(self, schedule_id: int) -> TaskSchedule | None:
        with self.runtime.sessions() as session:
            return session.get(TaskSchedule, schedule_id)

    def set_columns(self, schedule_id: int, **columns: Any) -> TaskSchedule:
        """Write columns of a schedule row as they are (to place its slot or its outbox flag in time)."""
        with self.runtime.sessions.begin() as session:
            schedule = session.get(TaskSchedule, schedule_id)
            assert schedule is not None
            for name, value in columns.items():
                setattr(schedule, name, value)
        return schedule

    def edit_timing(self, schedule_id: int, now: datetime, **columns: Any) -> TaskSchedule:
        """A timing edit as the protocol makes it: the row locked, changed and armed again (a new key)."""
        with self.runtime.sessions.begin() as session:
            schedule = protocol.lock_schedule(session, schedule_id)
            assert schedule is not None
            for name, value in columns.items():
                setattr(schedule, name, value)
            protocol.arm(schedule, now)
        return schedule

    def delete(self, schedule_id: int) -> None:
        with self.runtime.sessions.begin() as session:
            session.delete(session.get(TaskSchedule, schedule_id))

    # --- Claims ---

    def claim(self, *slots: TickSlot, tick_id: int = 0) -> list[bool]:
        """Deliver one tick naming ``slots`` to the claimer (claim, then publish); whether each claimed."""
        return protocol.claim_ticks(self.runtime, [protocol.ClaimRequest(tick_id, slot) for slot in slots])

    # --- Runs ---

    def runs(self) -> list[TaskRunHistory]:
        """Every run row, oldest first."""
        with self.runtime.sessions() as session:
            return list(session.scalars(select(TaskRunHistory).order_by(TaskRunHistory.id)))

    def run(self, history_id: int) -> TaskRunHistory:
        with self.runtime.sessions() as session:
            run = session.get(TaskRunHistory, history_id)
            assert run is not None
            return run

    def add_run(self, **columns: Any) -> TaskRunHistory:
        """Store a run row as given (a manual report_publish run unless said otherwise)."""
        values: dict[str, Any] = {
            "task_type": "report_publish",
            "triggered_by": "manual",
            "attempt": 1,
            **columns,
        }
        with self.runtime.sessions.begin() as session:
            run = TaskRunHistory(**values)
            session.add(run)
        return run

    def ticks_in_flight(self) -> int:
        """Rows of the tick budget's ledger."""
        with self.runtime.sessions() as session:
            return session.scalar(select(func.count()).select_from(TickInFlight)) or 0

    # --- The broker ---

    def take_ticks(self) -> list[Tick]:
        """Take every tick waiting in the broker, due or delayed, in the order they were sent."""
        return [Tick(tick_id, tick_slots(triples)) for tick_id, triples in self._take_args(TICK_QUEUE)]

    def take_run_messages(self) -> list[int]:
        """Take every run message waiting in the broker: the run ids they ask a worker to start."""
        return [history_id for (history_id,) in self._take_args(RUN_QUEUE)]

    def _take_args(self, queue_name: str) -> list[tuple[Any, ...]]:
        messages = []
        for name in (queue_name, dq_name(queue_name)):
            queue = self.broker.queues[name]
            while True:
                try:
                    messages.append(dramatiq.Message.decode(queue.get_nowait()))
                except Empty:
                    break
        return [tuple(message.args) for message in sorted(messages, key=lambda m: m.message_timestamp)]


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, migrated once per run as ``cronwork migrate`` does; tests copy it."""
    path = tmp_path_factory.mktemp("schema") / "cronwork.sqlite3"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def make_embedded(migrated_sqlite: Path, tmp_path: Path) -> Iterator[Callable[..., Embedded]]:
    """Builds an embedded system on a fresh copy of the migrated database; ``overrides`` change its Settings,
    ``publisher`` replaces the one that hands batches to the in-memory broker."""
    engines = []

    def make(publisher: Callable[[dramatiq.Broker], Publisher] = Publisher, **overrides: Any) -> Embedded:
        database = tmp_path / f"cronwork{len(engines)}.sqlite3"
        shutil.copyfile(migrated_sqlite, database)
        engine = create_db_engine(f"sqlite:///{database}")
        engines.append(engine)
        settings = replace(UNIT_SETTINGS, **overrides)
        broker = build_broker(settings)  # Dramatiq's StubBroker, its queues declared, not made the global one
        runtime = Runtime(settings, create_session_factory(engine), broker, publisher(broker))
        return Embedded(runtime)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def embedded(make_embedded: Callable[..., Embedded]) -> Embedded:
    return make_embedded()
