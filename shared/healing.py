"""Healing: what the pump repairs after lost messages and dead workers, and history retention.

The firing path (``shared.protocol``) leaves an outbox flag unset whenever a publish fails, and a tick or a run
message may be lost in the broker; a worker may die mid-run. The pump, a system cron run every minute by any
number of beats, finds each of these in the database and puts it right. Every step is one set-based statement
over an index, bounded per cycle, and runs every cycle; concurrent pumps skip rows another one holds (two may
still send the same stuck run, whose start, a compare-and-set, runs it once).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, or_, select, update

from shared.db import insert_ignoring_conflicts, utcnow
from shared.models import FINISHED_STATUSES, RunStatus, TaskRunHistory, TaskSchedule, TickInFlight
from shared.observability import PUMP_PUBLISHED, PUMP_REARMED, RUNS_FINISHED
from shared.protocol import (
    RUNS,
    SCHEDULES,
    STARTED_RUN_COLUMNS,
    HealthEvent,
    StartedRun,
    dispatch_runs,
    has_attempts_left,
    publish_outboxes,
    record_health,
    retry_row,
    started_run,
)
from shared.runtime import Runtime

logger = logging.getLogger("cronwork.healing")

# Rows one pump step changes in one statement, and the most it changes in a cycle.
STEP_ROWS = 500
CYCLE_ROWS = 20_000
# A cycle stops publishing after this long, well inside the minute before the next pump.
CYCLE_S = 40.0
# Retention deletes this many runs per transaction, so it always makes progress and never holds long locks.
RETENTION_BATCH_ROWS = 10_000
ABANDONED = "abandoned: its worker stopped before recording an outcome (lease expired)"
# A worker told to stop at once, or whose drain outlasted its shutdown timeout, records its runs' interruption
# itself rather than leave them ``running`` until their lease runs out.
INTERRUPTED = "abandoned: its worker was stopped before the run finished (shutdown)"


def pump(runtime: Runtime) -> str:
    """Heal every chain. In order, each step bounded:

    1. mark runs whose lease ran out as abandoned (their worker died mid-run), and retry those that may be;
    2. forget ticks overdue past the grace period in the tick budget's ledger (lost, or stuck in a backlog);
    3. reopen slots whose tick is overdue past the grace period, with the same key: a tick that was only late
       still claims its slot when it arrives, so a lagging queue is never re-keyed into a livelock, and a
       slot is reopened at most once per grace period;
    4. re-dispatch runs still queued long after they were due (their message was lost);
    5. publish the ticks of unpublished slots within the horizon, earliest first, up to the budget.
    """
    started = time.monotonic()
    now = utcnow()
    abandoned = abandon_runs_of_vanished_workers(runtime, now)
    forgotten = forget_lost_ticks(runtime, now)
    reopened = reopen_overdue_ticks(runtime, now)
    PUMP_REARMED.inc(reopened)
    redispatched = redispatch_stuck_runs(runtime, now)
    PUMP_PUBLISHED.labels("run").inc(redispatched)
    published = publish_ticks_in_horizon(runtime, deadline=started + CYCLE_S)
    PUMP_PUBLISHED.labels("slot").inc(published)
    return (
        f"abandoned {abandoned} run(s), forgot {forgotten} lost tick(s), reopened {reopened} overdue slot(s), "
        f"re-dispatched {redispatched} run(s), published {published} slot(s) in "
        f"{time.monotonic() - started:.2f} s"
    )


def abandon_runs_of_vanished_workers(runtime: Runtime, now: datetime) -> int:
    """Mark ``abandoned`` the runs still ``running`` past their lease: their worker died. Returns how many."""
    expired = (
        select(TaskRunHistory.id)
        .where(TaskRunHistory.status == RunStatus.RUNNING, TaskRunHistory.lease_expires_at < now)
        .limit(CYCLE_ROWS)
        .with_for_update(skip_locked=True)
    )
    return abandon_runs(runtime, expired, ABANDONED, now)


def abandon_runs(runtime: Runtime, which: Select[Any], reason: str, now: datetime | None = None) -> int:
    """Mark ``abandoned``, with ``reason``, the runs of ``which`` (a select of run ids) still ``running``: the
    pump's for a vanished worker, a stopping worker's for the runs it could not finish. Each whose schedule and
    task type allow another attempt gets it, as a failed attempt would (so execution after a lost worker is at
    least once; handlers get the slot and attempt to be idempotent by); one that may not counts as its
    schedule's failure (``record_health``). Returns how many were abandoned."""
    now = now or utcnow()
    with runtime.sessions.begin() as session:
        abandoned = [
            started_run(row)
            for row in session.execute(
                update(RUNS)
                .where(RUNS.c.id.in_(which.scalar_subquery()), RUNS.c.status == RunStatus.RUNNING)
                .values(
                    status=RunStatus.ABANDONED,
                    completed_at=now,
                    lease_expires_at=None,
                    error_message=reason,
                )
                .returning(*STARTED_RUN_COLUMNS)
            )
        ]
        retried = {run.id for run in abandoned if _may_retry(runtime, run)}
        retries = [
            retry_row(run, now, run.retry_base_delay_ms or runtime.settings.retry_base_delay_ms)
            for run in abandoned
            if run.id in retried
        ]
        # The unique (schedule, slot, attempt) index: a late failure of the same attempt retries nothing twice.
        retry_ids = [row.id for row in insert_ignoring_conflicts(session, RUNS, retries, ())]
        record_health(
            session,
            [
                HealthEvent(run.schedule_id, failed=True, error=reason)
                for run in abandoned
                if run.schedule_id is not None and run.id not in retried
            ],
            now,
        )
    for run in abandoned:
        RUNS_FINISHED.labels(run.task_type, run.triggered_by, RunStatus.ABANDONED).inc()
        fields = {
            **run.log_fields,
            "status": RunStatus.ABANDONED,
            "error": reason,
            "retried": run.id in retried,
        }
        logger.warning("run %s %s", run.id, reason, extra=fields)
    if retry_ids:
        dispatch_runs(
            runtime,
            f"retries of abandoned runs {retry_ids}",
            select(RUNS.c.id).where(RUNS.c.id.in_(retry_ids)),
        )
    return len(abandoned)


def _may_retry(runtime: Runtime, run: StartedRun) -> bool:
    """Whether an abandoned run gets another attempt, as a failed attempt would."""
    task_type = runtime.task_types.get(run.task_type)
    return run.system_task is None and task_type is not None and has_attempts_left(run, task_type)


def forget_lost_ticks(runtime: Runtime, now: datetime) -> int:
    """Drop from the budget ledger the ticks overdue by more than the grace period: the broker lost them.
    Returns how many."""
    with runtime.sessions.begin() as session:
        result = session.execute(delete(TickInFlight).where(TickInFlight.due_at < now - runtime.grace))
    return int(result.rowcount)  # type: ignore[attr-defined]


def reopen_overdue_ticks(runtime: Runtime, now: datetime) -> int:
    """Clear the outbox flag of schedules whose tick is overdue past the grace period, so it is published
    again (same key: a tick that is only late still claims). Returns how many."""
    overdue = (
        select(TaskSchedule.id)
        .where(
            TaskSchedule.enabled,  # plain "enabled", so the partial indexes on it match
            TaskSchedule.next_run_at < now - runtime.grace,
            TaskSchedule.tick_published_at < now - runtime.grace,
        )
        .limit(CYCLE_ROWS)
        .with_for_update(key_share=True, skip_locked=True)
    )
    with runtime.sessions.begin() as session:
        result = session.execute(
            update(SCHEDULES)
            .where(SCHEDULES.c.id.in_(overdue.scalar_subquery()))
            .values(tick_published_at=None)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


def redispatch_stuck_runs(runtime: Runtime, now: datetime) -> int:
    """Send again the messages of queued runs that were never sent (past the grace period) or sent but never
    started (past a lease). Returns how many."""
    stuck = (
        select(TaskRunHistory.id)
        .where(
            TaskRunHistory.status == RunStatus.QUEUED,
            TaskRunHistory.due_at < now - runtime.grace,
            # Never sent: after the grace period. Sent but not started: only after a lease, so that a deep but
            # moving run queue is not fed one more copy of every run each minute.
            or_(TaskRunHistory.dispatched_at.is_(None), TaskRunHistory.dispatched_at < now - runtime.lease),
        )
        .order_by(TaskRunHistory.id)
        .limit(STEP_ROWS)
        .with_for_update(skip_locked=True)
    )
    total = 0
    while total < CYCLE_ROWS:
        sent = dispatch_runs(runtime, "stuck runs", stuck)
        total += sent
        if sent < STEP_ROWS:
            return total
    return total


def publish_ticks_in_horizon(runtime: Runtime, deadline: float) -> int:
    """Publish unpublished ticks within the horizon, earliest first, up to the budget, until ``deadline`` (a
    monotonic time). Returns how many slots."""
    total = 0
    while time.monotonic() < deadline:
        _runs, slots = publish_outboxes(runtime, "ticks entering the horizon", earliest_ticks=STEP_ROWS)
        total += slots
        if slots < STEP_ROWS:  # nothing more to publish, or the budget is full
            break
    return total


def delete_old_history(runtime: Runtime) -> str:
    """Delete finished runs queued more than ``HISTORY_RETENTION_DAYS`` ago, in bounded batches, for at most
    half the task time limit; what is left is deleted by the next run."""
    cutoff = utcnow() - timedelta(days=runtime.settings.history_retention_days)
    deadline = time.monotonic() + runtime.settings.task_time_limit_s / 2
    old = (
        select(TaskRunHistory.id)
        .where(TaskRunHistory.queued_at < cutoff, TaskRunHistory.status.in_(FINISHED_STATUSES))
        .limit(RETENTION_BATCH_ROWS)
    )
    deleted = 0
    while time.monotonic() < deadline:
        with runtime.sessions.begin() as session:
            batch = session.execute(delete(RUNS).where(RUNS.c.id.in_(old.scalar_subquery())))
        deleted += int(batch.rowcount)  # type: ignore[attr-defined]
        if batch.rowcount < RETENTION_BATCH_ROWS:  # type: ignore[attr-defined]
            return f"deleted {deleted} run(s) older than {runtime.settings.history_retention_days:g} days"
    return (
        f"deleted {deleted} run(s) older than {runtime.settings.history_retention_days:g} days; "
        "more are left for the next run"
    )


def republish_after_broker_loss(runtime: Runtime) -> None:
    """After a broker that lost every message (the embedded mode's in-memory one, on restart): publish every
    armed tick and dispatch every queued run again at once, instead of waiting for the pump's grace period."""
    with runtime.sessions.begin() as session:
        session.execute(delete(TickInFlight))
        session.execute(update(TaskSchedule).values(tick_published_at=None))
        session.execute(
            update(TaskRunHistory).where(TaskRunHistory.status == RunStatus.QUEUED).values(dispatched_at=None)
        )
    queued = (
        select(TaskRunHistory.id)
        .where(TaskRunHistory.status == RunStatus.QUEUED, TaskRunHistory.dispatched_at.is_(None))
        .limit(STEP_ROWS)
    )
    while dispatch_runs(runtime, "queued runs after a broker restart", queued) == STEP_ROWS:
        pass
    publish_ticks_in_horizon(runtime, deadline=time.monotonic() + CYCLE_S)
