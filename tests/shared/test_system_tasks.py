"""The system-task registry: one list, each cron valid, none that periodiq 0.14 would never fire."""

from __future__ import annotations

import pytest

from shared.system_tasks import SYSTEM_TASKS, SystemTask, _refuse_periodiq_sunday_only


def test_the_registry_has_the_seed_task_the_pump_and_retention() -> None:
    assert {task.id: task.cron_expression for task in SYSTEM_TASKS} == {
        "session_cleanup": "*/5 * * * *",
        "pump": "* * * * *",
        "history_retention": "17 3 * * *",
    }
    assert all(task.description for task in SYSTEM_TASKS)


@pytest.mark.parametrize("spec", ["0 4 * * 0", "0 4 * * 7", "0 4 * * SUN", "0 4 * * 0,7"])
def test_a_sunday_only_system_cron_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="Sunday"):
        _refuse_periodiq_sunday_only(SystemTask("weekly", "Weekly", spec, lambda runtime: None, "x"))


def test_a_cron_that_includes_sunday_among_other_days_is_accepted() -> None:
    task = SystemTask("weekend", "Weekend", "0 4 * * 0,6", lambda runtime: None, "x")
    assert _refuse_periodiq_sunday_only(task) is task
