"""Both databases keep times in UTC and hand them back timezone-aware, and keep config as JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.db import create_db_engine, create_session_factory, retrying_a_stale_connection, upgrade_to_head
from shared.models import TaskSchedule
from shared.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/cronwork.sqlite3"
    else:  # asked for here, not in the signature, so that the SQLite variant never needs PostgreSQL
        make_database: Callable[[str], str] = request.getfixturevalue("make_database")
        url = Settings(database_url=make_database("dbtypes"), broker_url="amqp://x").sqlalchemy_url
    upgrade_to_head(url)
    return url


def test_times_come_back_aware_in_utc_and_config_as_a_document(database: str) -> None:
    sessions = create_session_factory(create_db_engine(database))
    paris_evening = datetime(2026, 7, 1, 21, 30, tzinfo=timezone(timedelta(hours=2)))
    with sessions.begin() as session:
        session.add(
            TaskSchedule(
                name="t",
                task_type="report_publish",
                schedule_type="cron",
                cron_expression="0 9 * * *",
                config={"reportId": "compliance-weekly", "nested": {"n": [1, 2]}},
                created_by="tests",
                next_run_at=paris_evening,
            )
        )
    with sessions() as session:
        stored = session.query(TaskSchedule).one()
    assert stored.next_run_at == paris_evening and stored.next_run_at.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None
    assert stored.config == {"reportId": "compliance-weekly", "nested": {"n": [1, 2]}}
    assert stored.timezone == "UTC" and stored.enabled is True


def test_a_naive_time_is_refused_rather_than_guessed(database: str) -> None:
    sessions = create_session_factory(create_db_engine(database))
    with pytest.raises(Exception, match="naive"), sessions.begin() as session:
        session.add(
            TaskSchedule(
                name="t",
                task_type="report_publish",
                schedule_type="manual",
                config={},
                created_by="tests",
                next_run_at=datetime(2026, 1, 1),
            )
        )


def test_migrating_twice_is_harmless(database: str) -> None:
    upgrade_to_head(database)


def test_work_that_failed_on_a_dead_pooled_connection_is_done_once_more() -> None:
    attempts: list[int] = []

    def work() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise DBAPIError(
                "SELECT 1", {}, OperationalError("SELECT 1", {}, None), connection_invalidated=True
            )
        return "done"

    assert retrying_a_stale_connection(work) == "done"
    assert len(attempts) == 2


def test_any_other_database_error_is_not_retried() -> None:
    attempts: list[int] = []

    def work() -> None:
        attempts.append(1)
        raise DBAPIError("SELECT 1", {}, OperationalError("SELECT 1", {}, None))

    with pytest.raises(DBAPIError):
        retrying_a_stale_connection(work)
    assert len(attempts) == 1
