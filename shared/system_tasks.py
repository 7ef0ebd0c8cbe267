"""The system-task registry: the crons the system runs for itself. One list, read by the beat (what to send,
when), the worker (what to run) and the API (what to show)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

from shared.cron import CronSpec, describe_cron, iter_cron_slots
from shared.healing import delete_old_history, pump
from shared.runtime import Runtime

SYSTEM_TASK_TYPE = "SYSTEM"
# System crons run in UTC: the beat runs periodiq with TZ=UTC, and everything that computes their slots says so.
SYSTEM_TIMEZONE = "UTC"


@dataclass(frozen=True)
class SystemTask:
    """A system cron. Its slots are in UTC; ``work`` returns a one-line summary for the log."""

    id: str
    name: str
    cron_expression: str
    work: Callable[[Runtime], str | None]
    summary: str

    @property
    def description(self) -> str:
        return f"{describe_cron(CronSpec.parse(self.cron_expression))}. {self.summary}"

    def slots_after(self, after: datetime) -> Iterator[datetime]:
        """This cron's slots strictly after ``after``, in UTC."""
        return iter_cron_slots(CronSpec.parse(self.cron_expression), SYSTEM_TIMEZONE, after)


def session_cleanup(runtime: Runtime) -> str:
    """The proof of concept's sample system cron, kept so operators see a system task with a body of its own:
    it does simulated work, like the demo task types. Replace its body with a real cleanup when one exists."""
    time.sleep(runtime.settings.simulated_work_ms / 1000)
    return "simulated cleanup finished"


def _refuse_periodiq_sunday_only(task: SystemTask) -> SystemTask:
    # periodiq 0.14 compares cron day-of-week 0 with isoweekday() 7, so a Sunday-only spec never fires.
    days_of_week = croniter(task.cron_expression).expanded[4]
    if days_of_week != ["*"] and set(days_of_week) <= {0, 7}:
        raise ValueError(f"system task {task.id}: periodiq 0.14 never fires Sunday-only specs")
    CronSpec.parse(task.cron_expression)
    return task


SYSTEM_TASKS: tuple[SystemTask, ...] = tuple(
    _refuse_periodiq_sunday_only(task)
    for task in (
        SystemTask(
            "session_cleanup",
            "Session Cleanup",
            "*/5 * * * *",
            session_cleanup,
            "Sample system cron from the proof of concept (simulated work).",
        ),
        SystemTask(
            "pump",
            "Tick Pump",
            "* * * * *",
            pump,
            "Marks runs of vanished workers abandoned, publishes again ticks that were lost, re-dispatches "
            "stuck runs and publishes the ticks entering the horizon, up to the tick budget.",
        ),
        SystemTask(
            "history_retention",
            "History Retention",
            "17 * * * *",
            delete_old_history,
            "Deletes finished runs older than HISTORY_RETENTION_DAYS, hourly and in bounded batches.",
        ),
    )
)
