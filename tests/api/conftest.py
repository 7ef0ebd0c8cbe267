"""Fixtures for the REST API: Flask's test client over the real PostgreSQL database and RabbitMQ vhost, and
readers of what was stored and what was published, so a test can prove "nothing was stored"."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

import dramatiq
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from services.api.app import create_app
from shared.db import create_db_engine, create_session_factory
from shared.messaging import QUEUES, TICK_QUEUE, TickSlot, tick_slots
from shared.models import ApiToken, AuditEvent, TaskRunHistory, TaskSchedule
from shared.runtime import Runtime
from shared.settings import Settings

TASKS = "/api/scheduler/tasks"
HISTORY = "/api/scheduler/history"


def cron_task(**overrides: Any) -> dict[str, Any]:
    """A valid cron schedule body; ``overrides`` replace or add fields."""
    body = {
        "name": "Weekly compliance report",
        "taskType": "report_publish",
        "scheduleType": "cron",
        "cronExpression": "0 9 * * 1",
        "timezone": "Europe/Berlin",
        "config": {"reportId": "compliance-weekly"},
    }
    return {**body, **overrides}


def interval_task(**overrides: Any) -> dict[str, Any]:
    """A valid interval schedule body; ``overrides`` replace or add fields."""
    body = {
        "name": "Export every minute",
        "taskType": "data_export",
        "scheduleType": "interval",
        "intervalMs": 60_000,
        "config": {"format": "csv"},
    }
    return {**body, **overrides}


def parse_utc(value: str) -> datetime:
    """A wire timestamp, which must be ISO 8601 UTC with a ``Z``."""
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


@pytest.fixture
def empty_queues(runtime: Runtime) -> Runtime:
    """The vhost lives for the whole run and no worker consumes it: empties its queues for a test that reads
    them, and returns the runtime whose broker to read."""
    for queue in QUEUES:
        runtime.broker.get_queue_message_counts(queue)  # declares the queue and its delay queue
        for name in (queue, f"{queue}.DQ"):
            runtime.broker.channel.queue_purge(name)
    return runtime


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime=runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_with(runtime: Runtime) -> Callable[..., Flask]:
    """Builds an app whose Settings differ by ``overrides`` (auth mode, a dead broker, a missing database),
    sharing the test's database sessions and broker unless the override names another database."""

    def build(**overrides: Any) -> Flask:
        settings: Settings = dataclasses.replace(runtime.settings, **overrides)
        sessions = runtime.sessions
        if "database_url" in overrides:
            sessions = create_session_factory(create_db_engine(settings.sqlalchemy_url))
        return create_app(runtime=dataclasses.replace(runtime, settings=settings, sessions=sessions))

    return build


@pytest.fixture
def create(client: FlaskClient) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """POSTs a schedule that must be accepted; returns the created object."""

    def post(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(TASKS, json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return post


@pytest.fixture
def stored_schedules(runtime: Runtime) -> Callable[[], int]:
    def count() -> int:
        with runtime.sessions() as session:
            return session.scalar(select(func.count()).select_from(TaskSchedule)) or 0

    return count


@pytest.fixture
def stored_state(runtime: Runtime) -> Callable[[], list[list[tuple[Any, ...]]]]:
    """Every column of every schedule, run, API token and audit event, as stored: equal before and after means
    nothing changed (and no one was recorded changing it)."""

    def read() -> list[list[tuple[Any, ...]]]:
        with runtime.sessions() as session:
            return [
                [tuple(row) for row in session.execute(select(table).order_by(*table.primary_key))]
                for table in (
                    TaskSchedule.__table__,
                    TaskRunHistory.__table__,
                    ApiToken.__table__,
                    AuditEvent.__table__,
                )
            ]

    return read


@pytest.fixture
def audit_events(client: FlaskClient) -> Callable[..., list[dict[str, Any]]]:
    """The audit trail as GET /audit answers it, newest first (``filters``: its query parameters)."""

    def read(**filters: Any) -> list[dict[str, Any]]:
        response = client.get("/api/scheduler/audit", query_string={"page_size": 1000, **filters})
        assert response.status_code == 200, response.get_json()
        events: list[dict[str, Any]] = response.get_json()
        return events

    return read


@pytest.fixture
def stored_runs(runtime: Runtime) -> Callable[[], int]:
    def count() -> int:
        with runtime.sessions() as session:
            return session.scalar(select(func.count()).select_from(TaskRunHistory)) or 0

    return count


@pytest.fixture
def schedule_row(runtime: Runtime) -> Callable[[int], TaskSchedule | None]:
    """The schedule as stored, including what the API never shows (``dedupe_key``, ``tick_published_at``)."""

    def read(schedule_id: int) -> TaskSchedule | None:
        with runtime.sessions() as session:
            return session.get(TaskSchedule, schedule_id)

    return read


@pytest.fixture
def take_ticks(empty_queues: Runtime) -> Callable[[], list[TickSlot]]:
    """Takes every tick waiting in RabbitMQ's delay queue (``cronwork.ticks.DQ``), oldest first, and returns the
    slots they name."""

    def take() -> list[TickSlot]:
        ticks: list[TickSlot] = []
        while True:
            _method, _properties, body = empty_queues.broker.channel.basic_get(
                f"{TICK_QUEUE}.DQ", auto_ack=True
            )
            if body is None:
                return ticks
            _tick_id, triples = dramatiq.Message.decode(body).args
            ticks.extend(tick_slots(triples))

    return take
