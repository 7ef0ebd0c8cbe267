"""The handles every part of the protocol needs, built once per process from Settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property

import dramatiq
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db import create_db_engine, create_session_factory
from shared.messaging import Publisher, build_broker
from shared.settings import Settings
from shared.task_types import TaskType, offered_task_types


@dataclass(frozen=True)
class Runtime:
    """Settings, a session factory, the broker, and the publisher that hands it batches."""

    settings: Settings
    sessions: sessionmaker[Session]
    broker: dramatiq.Broker
    publisher: Publisher

    @cached_property
    def single_statements(self) -> Engine:
        """Connections for a statement that is a transaction by itself (PostgreSQL's autocommit): one round
        trip, where ``BEGIN``, the statement and ``COMMIT`` would be three."""
        engine: Engine = self.sessions.kw["bind"]
        return engine.execution_options(isolation_level="AUTOCOMMIT")

    @cached_property
    def task_types(self) -> Mapping[str, TaskType]:
        """The task types this process offers and runs, by id (installed plugins, demo types if turned on)."""
        return offered_task_types(self.settings)

    @property
    def on_postgresql(self) -> bool:
        """Whether the database is PostgreSQL (otherwise the embedded SQLite)."""
        return bool(self.sessions.kw["bind"].dialect.name == "postgresql")

    @property
    def horizon(self) -> timedelta:
        """H: ticks are published only for slots at most this far ahead."""
        return timedelta(seconds=self.settings.tick_horizon_s)

    @property
    def grace(self) -> timedelta:
        """How overdue a slot or a queued run may get before the pump assumes its message was lost."""
        return timedelta(seconds=self.settings.pump_grace_s)

    @property
    def misfire_grace(self) -> timedelta:
        """How late a slot may be claimed and still be on time, whatever its misfire policy."""
        return timedelta(seconds=self.settings.misfire_grace_s)

    @property
    def lease(self) -> timedelta:
        """How long a started run may stay silent before the pump calls it abandoned: its time limit and more."""
        return timedelta(seconds=self.settings.task_time_limit_s + self.settings.run_lease_margin_s)


def build_runtime(
    settings: Settings, broker: dramatiq.Broker | None = None, ping_on_checkout: bool = True
) -> Runtime:
    """Connect to the database and the broker named by ``settings`` (the broker becomes Dramatiq's global).
    ``ping_on_checkout``: see ``shared.db.create_db_engine``."""
    if broker is None:
        broker = build_broker(settings)
        dramatiq.set_broker(broker)
    engine = create_db_engine(settings.sqlalchemy_url, ping_on_checkout)
    return Runtime(
        settings=settings, sessions=create_session_factory(engine), broker=broker, publisher=Publisher(broker)
    )
