"""The system-task registry: one list, each cron valid, none that periodiq 0.14 would never fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

import pytest

from shared.system_tasks import SYSTEM_TASKS, SystemTask, _refuse_periodiq_sunday_only


def gaps_between_slots(task_id: str, count: int = 30) -> set[timedelta]:
    [task] = [task for task in SYSTEM_TASKS if task.id == task_id]
    slots = list(islice(task.upcoming(datetime(2026, 3, 28, tzinfo=UTC)), count))
    return {later - earlier for earlier, later in pairwise(slots)}


def test_the_pump_heals_every_minute() -> None:
    # Slots beyond the horizon are published, and lost ticks healed, only when the pump runs.
    assert gaps_between_slots("pump") == {timedelta(minutes=1)}


def test_retention_runs_hourly_so_that_each_run_deletes_an_hour_of_history() -> None:
    # Each run deletes in bounded batches for a bounded time; a daily run at volume would fall behind.
    assert gaps_between_slots("history_retention") == {timedelta(hours=1)}


@pytest.mark.parametrize("spec", ["0 4 * * 0", "0 4 * * 7", "0 4 * * SUN", "0 4 * * 0,7"])
def test_a_sunday_only_system_cron_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="Sunday"):
        _refuse_periodiq_sunday_only(SystemTask("weekly", "Weekly", spec, lambda runtime: None, "x"))


def test_a_cron_that_includes_sunday_among_other_days_is_accepted() -> None:
    task = SystemTask("weekend", "Weekend", "0 4 * * 0,6", lambda runtime: None, "x")
    assert _refuse_periodiq_sunday_only(task) is task
