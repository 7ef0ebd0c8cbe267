"""Migrations upgrade a database that holds schedules and history, on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from shared.db import alembic_config, create_db_engine, create_session_factory
from shared.models import TaskRunHistory, TaskSchedule
from shared.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at revision 0003 (before runs kept their schedule), holding a schedule with a run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/cronwork.sqlite3"
    else:
        make_database: Callable[[str], str] = request.getfixturevalue("make_database")
        url = Settings(database_url=make_database("migrations"), broker_url="amqp://x").sqlalchemy_url
    command.upgrade(alembic_config(url), "head")  # a database made by the test fixtures is at head already
    command.downgrade(alembic_config(url), "0003")
    with create_engine(url).begin() as connection:
        for name in ("older", "nightly"):  # the newest schedule's id is the one SQLite would give again
            connection.execute(
                text(
                    "INSERT INTO task_schedules (name, task_type, schedule_type, timezone, enabled, config,"
                    " created_by, created_at, updated_at, version, labels)"
                    " VALUES (:name, 'report_publish', 'manual', 'UTC', true, '{}', 'tests',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, '{}')"
                ),
                {"name": name},
            )
        connection.execute(
            text(
                "INSERT INTO task_run_history (schedule_id, task_type, status, triggered_by, queued_at, due_at,"
                " attempt, missed_slots) SELECT id, 'report_publish', 'success', 'manual', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP, 1, 0 FROM task_schedules WHERE name = 'nightly'"
            )
        )
    return url


def nightly_id(url: str) -> int:
    with create_engine(url).connect() as connection:
        return int(connection.execute(text("SELECT max(id) FROM task_schedules")).scalar_one())


def test_runs_keep_their_schedules_name_and_a_delete_leaves_them_as_they_are(database_at_0003: str) -> None:
    nightly = nightly_id(database_at_0003)
    command.upgrade(alembic_config(database_at_0003), "head")
    sessions = create_session_factory(create_db_engine(database_at_0003))

    with sessions.begin() as session:
        session.delete(session.get(TaskSchedule, nightly))
    with sessions() as session:
        [run] = session.query(TaskRunHistory).all()
    assert (run.schedule_id, run.schedule_name, run.config) == (nightly, "nightly", None)


def test_a_deleted_schedules_id_is_never_given_to_a_new_one(database_at_0003: str) -> None:
    nightly = nightly_id(database_at_0003)
    command.upgrade(alembic_config(database_at_0003), "head")
    sessions = create_session_factory(create_db_engine(database_at_0003))
    with sessions.begin() as session:
        session.delete(session.get(TaskSchedule, nightly))
    with sessions.begin() as session:
        newer = TaskSchedule(
            name="new", task_type="report_publish", schedule_type="manual", config={}, created_by="t"
        )
        session.add(newer)
        session.flush()
        assert newer.id > nightly  # the deleted schedule's runs would otherwise look like the new one's


def test_downgrading_and_upgrading_again_keeps_the_history(database_at_0003: str) -> None:
    command.upgrade(alembic_config(database_at_0003), "head")
    command.downgrade(alembic_config(database_at_0003), "0003")
    command.upgrade(alembic_config(database_at_0003), "head")
    sessions = create_session_factory(create_db_engine(database_at_0003))
    with sessions() as session:
        [run] = session.query(TaskRunHistory).all()
    assert (run.schedule_id, run.schedule_name) == (nightly_id(database_at_0003), "nightly")
