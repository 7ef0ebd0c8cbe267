"""The system-task registry: the crons the system runs for itself. One list, read by the beat (what to send,
when), the worker (what to run) and the API (what to show)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from croniter import croniter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.cron import CronSpec
from shared.healing import delete_old_history, pump
from shared.models import TaskRunHistory
from shared.runtime import Runtime
from shared.settings import Settings
from shared.timing import CronTiming

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
    demo: bool = False  # the proof of concept's sample, run only with DEMO_TASK_TYPES=true

    @cached_property
    def timing(self) -> CronTiming:
        """The cron's timing, in UTC."""
        return CronTiming(CronSpec.parse(self.cron_expression), SYSTEM_TIMEZONE)

    @property
    def description(self) -> str:
        """When it runs and what it does, in words."""
        return f"{self.timing.description}. {self.summary}"

    def upcoming(self, after: datetime) -> Iterator[datetime]:
        """This cron's slots strictly after ``after``, in UTC."""
        return self.timing.upcoming(after)


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
            demo=True,
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


@dataclass(frozen=True)
class SystemTaskStatus:
    """A system cron as operators see it: what it is, when it runs, how its last run went."""

    task: SystemTask
    last_run: TaskRunHistory | None
    next_run_at: datetime | None

    @property
    def last_run_at(self) -> datetime | None:
        """When its newest run started (None: never)."""
        return self.last_run.started_at if self.last_run else None

    @property
    def last_status(self) -> str | None:
        """The status of its newest run (None: never ran)."""
        return self.last_run.status if self.last_run else None


def offered_system_tasks(settings: Settings) -> tuple[SystemTask, ...]:
    """The system crons this deployment runs: every real one, the demo sample only when turned on."""
    return tuple(task for task in SYSTEM_TASKS if settings.offers_demo_task_types or not task.demo)


def system_task_statuses(session: Session, settings: Settings, now: datetime) -> list[SystemTaskStatus]:
    """Every system cron this deployment runs, with its newest run (one query) and its next slot after ``now``."""
    tasks = offered_system_tasks(settings)
    newest = (
        select(func.max(TaskRunHistory.id))
        .where(TaskRunHistory.system_task.in_([task.id for task in tasks]))
        .group_by(TaskRunHistory.system_task)
    )
    last_runs = {
        run.system_task: run
        for run in session.scalars(select(TaskRunHistory).where(TaskRunHistory.id.in_(newest)))
    }
    return [SystemTaskStatus(task, last_runs.get(task.id), next(task.upcoming(now), None)) for task in tasks]
