"""A task's ``overdue``: enabled, its next run older than the pump's grace period (the tests' PUMP_GRACE_S is 5 s),
the same rule the ``cronwork_schedules_overdue`` gauge counts by."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from shared.db import utcnow
from shared.models import TaskSchedule
from shared.runtime import Runtime
from tests.api.conftest import TASKS, cron_task

Create = Callable[[dict[str, Any]], dict[str, Any]]


def arm_at(runtime: Runtime, task_id: int, seconds_ago: float, enabled: bool = True) -> None:
    """Store the task's armed slot ``seconds_ago`` in the past, as if nothing had run it since."""
    with runtime.sessions.begin() as session:
        session.execute(
            update(TaskSchedule)
            .where(TaskSchedule.id == task_id)
            .values(next_run_at=utcnow() - timedelta(seconds=seconds_ago), enabled=enabled)
        )


def overdue_gauge(client: FlaskClient) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith("cronwork_schedules_overdue "):
            return float(line.split()[1])
    raise AssertionError("no cronwork_schedules_overdue in /metrics")


@pytest.mark.parametrize(
    ("seconds_ago", "enabled", "overdue"),
    [
        (60, True, True),  # past the 5 s grace period
        (1, True, False),  # due, within the grace period: its tick is on its way
        (-60, True, False),  # not due yet
        (60, False, False),  # disabled: nothing is expected to run it
    ],
)
def test_a_task_is_overdue_past_the_grace_period_in_the_list_the_task_and_the_gauge(
    client: FlaskClient,
    create: Create,
    runtime: Runtime,
    seconds_ago: float,
    enabled: bool,
    overdue: bool,
) -> None:
    task = create(cron_task())
    arm_at(runtime, task["id"], seconds_ago, enabled)

    (listed,) = client.get(TASKS).get_json()
    assert listed["overdue"] is overdue
    assert client.get(f"{TASKS}/{task['id']}").get_json()["overdue"] is overdue
    assert overdue_gauge(client) == (1 if overdue else 0)


def test_a_manual_task_is_never_overdue(client: FlaskClient, create: Create) -> None:
    task = create(cron_task(scheduleType="manual", cronExpression=None))

    assert client.get(f"{TASKS}/{task['id']}").get_json()["overdue"] is False
