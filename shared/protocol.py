"""What happens when a schedule fires, top to bottom: arm, publish, claim, run, record, pump.

PostgreSQL is the source of truth and RabbitMQ only a transport, so every step below checks the database row
before acting, and every message may be lost, duplicated or late without a slot running twice or silently not
at all. ``../shared/docs/ARCHITECTURE.md`` (beside the checkout) states the invariants this module keeps.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from dramatiq.errors import BrokerError
from dramatiq.middleware import TimeLimitExceeded
from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Delete, Update

from shared.cron import CronSpec, iter_cron_slots, next_interval_slot
from shared.db import utcnow
from shared.messaging import send_run, send_tick
from shared.models import RunStatus, ScheduleType, TaskRunHistory, TaskSchedule, TriggeredBy
from shared.runtime import Runtime
from shared.task_types import RunContext, TaskFailed, get_task_type

logger = logging.getLogger("cronwork.protocol")
T = TypeVar("T")

RETRY_MAX_DELAY = timedelta(minutes=5)  # well under RabbitMQ's consumer_timeout, like every delay we publish
ERROR_MESSAGE_CHARS = 2000


def _rows_changed(session: Session, statement: Update | Delete) -> int:
    """Run an UPDATE or DELETE and say how many rows it changed (a compare-and-set's answer)."""
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return int(result.rowcount)


# --- Slots ------------------------------------------------------------------------------------------------


def slots_after(
    schedule: TaskSchedule, previous_slot: datetime, after: datetime
) -> tuple[datetime | None, int]:
    """The first slot of ``schedule`` strictly after ``after``, following on from ``previous_slot``, and how many
    slots lie in between (slots missed while nothing ran)."""
    if schedule.schedule_type == ScheduleType.INTERVAL:
        assert schedule.interval_ms
        step = timedelta(milliseconds=schedule.interval_ms)
        following = next_interval_slot(previous_slot, schedule.interval_ms, after)
        return following, max(0, (following - previous_slot) // step - 1)
    if schedule.schedule_type == ScheduleType.CRON:
        assert schedule.cron_expression
        # The API accepts five fields only; a stored six-field (seconds) spec comes from tests and demos.
        spec = CronSpec.parse(schedule.cron_expression, allow_seconds=True)
        missed = 0
        for slot in iter_cron_slots(spec, schedule.timezone, previous_slot):
            if slot > after:
                return slot, missed
            missed += 1
        return None, missed
    return None, 0


def first_slot(schedule: TaskSchedule, now: datetime) -> datetime | None:
    """The slot a newly armed schedule waits for: the next cron instant, or one interval from now (the anchor)."""
    if schedule.schedule_type == ScheduleType.INTERVAL:
        assert schedule.interval_ms
        return now + timedelta(milliseconds=schedule.interval_ms)
    slot, _ = slots_after(schedule, now, now)
    return slot


# --- Arm and publish ----------------------------------------------------------------------------------------


def arm(schedule: TaskSchedule, now: datetime, keep_slot: bool = False) -> None:
    """Point the row at its next slot with a fresh dedupe key, inside the caller's transaction.

    Every tick already in the broker carries the old key and becomes stale, so edits, disables and deletes
    never have to find messages. ``keep_slot`` re-arms the same slot (a lost tick, or an edit that does not
    touch the timing). The tick itself is published after the commit, by ``publish_tick``.
    """
    schedule.dedupe_key = uuid.uuid4().hex
    schedule.tick_published_at = None
    if not schedule.enabled or schedule.schedule_type == ScheduleType.MANUAL:
        schedule.next_run_at = None
        return
    if not keep_slot or schedule.next_run_at is None:
        schedule.next_run_at = first_slot(schedule, now)


def lock_schedule(session: Session, schedule_id: int, skip_locked: bool = False) -> TaskSchedule | None:
    """The schedule row, locked for this transaction. ``FOR NO KEY UPDATE`` (key_share), so run inserts, whose
    foreign-key check takes a key-share lock on it, neither block nor are blocked by it."""
    return session.execute(
        select(TaskSchedule)
        .where(TaskSchedule.id == schedule_id)
        .with_for_update(key_share=True, skip_locked=skip_locked)
    ).scalar_one_or_none()


def lock_run(session: Session, history_id: int, skip_locked: bool = False) -> TaskRunHistory | None:
    return session.execute(
        select(TaskRunHistory)
        .where(TaskRunHistory.id == history_id)
        .with_for_update(key_share=True, skip_locked=skip_locked)
    ).scalar_one_or_none()


def publish_tick(runtime: Runtime, schedule_id: int, skip_locked: bool = False) -> bool:
    """Hand the broker the tick for a schedule's armed slot, once, if the slot is within the horizon.

    The row lock makes the API, the claiming worker and any number of pumps agree on who publishes (pumps skip
    rows someone else holds; the others wait); the flag is set in the same transaction, so a failed publish
    (broker down, publish not confirmed, database gone) leaves it unset for the pump to retry.
    """
    return _in_outbox_transaction(
        runtime,
        f"schedule {schedule_id}: tick",
        lambda session: _send_tick_of(runtime, lock_schedule(session, schedule_id, skip_locked)),
    )


def dispatch_run(runtime: Runtime, history_id: int, skip_locked: bool = False) -> bool:
    """Hand the broker the message that starts a queued run, and record that it was sent (the run's outbox);
    a failed publish leaves the run queued for the pump to dispatch again."""
    return _in_outbox_transaction(
        runtime,
        f"run {history_id}: start message",
        lambda session: _send_run_of(runtime, lock_run(session, history_id, skip_locked)),
    )


def _in_outbox_transaction(runtime: Runtime, what: str, send: Callable[[Session], bool]) -> bool:
    """Run ``send`` (lock a row, publish, set its outbox flag) in one transaction. A failed publish or commit
    leaves the flag unset, which is what the pump looks for: log it and carry on."""
    try:
        with runtime.sessions.begin() as session:
            return send(session)
    except (BrokerError, SQLAlchemyError) as exc:
        logger.warning("%s not published (%s); the pump will retry", what, exc)
        return False


def _ms_until(instant: datetime, now: datetime) -> int:
    return int((instant - now).total_seconds() * 1000)


def _send_tick_of(runtime: Runtime, schedule: TaskSchedule | None) -> bool:
    """Publish the locked schedule's tick unless it was published already or its slot is beyond H."""
    if schedule is None or schedule.tick_published_at is not None or schedule.next_run_at is None:
        return False
    now = utcnow()
    if schedule.next_run_at > now + runtime.horizon:
        return False  # the pump publishes it when it enters the horizon
    assert schedule.dedupe_key
    send_tick(
        runtime.broker,
        schedule.id,
        schedule.next_run_at,
        schedule.dedupe_key,
        _ms_until(schedule.next_run_at, now),
    )
    schedule.tick_published_at = now
    return True


def _send_run_of(runtime: Runtime, run: TaskRunHistory | None) -> bool:
    """Publish the message that starts the locked run, if it is still queued."""
    if run is None or run.status != RunStatus.QUEUED:
        return False
    now = utcnow()
    send_run(runtime.broker, run.id, _ms_until(run.due_at, now))
    run.dispatched_at = now
    return True


def republish_after_broker_loss(runtime: Runtime) -> None:
    """After a broker that lost every message (the embedded mode's in-memory one, on restart): publish every
    armed tick and dispatch every queued run again at once, instead of waiting for the pump's grace period."""
    with runtime.sessions.begin() as session:
        session.execute(update(TaskSchedule).values(tick_published_at=None))
        queued = session.scalars(
            select(TaskRunHistory.id).where(TaskRunHistory.status == RunStatus.QUEUED)
        ).all()
    pump(runtime)
    for history_id in queued:
        dispatch_run(runtime, history_id)


# --- Claim ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    schedule_id: int
    history_id: int
    missed_slots: int


def claim_slot(runtime: Runtime, schedule_id: int, slot: datetime, dedupe_key: str) -> Claim | None:
    """Turn a tick into exactly one run of its slot, and move the schedule to its next slot.

    In one transaction: lock the row; drop the tick unless its key and slot are the row's (stale: edited,
    disabled, deleted, re-armed or already claimed); coalesce slots missed while nothing ran into this run;
    insert the run; advance the row. Then publish the next tick and dispatch the run. Returns None for a
    stale tick.
    """
    now = utcnow()
    if slot > now:
        # Early (another host's clock, or a broker that honoured the delay loosely): wait out the rest, unclaimed.
        send_tick(runtime.broker, schedule_id, slot, dedupe_key, _ms_until(slot, now))
        return None
    try:
        with runtime.sessions.begin() as session:
            schedule = lock_schedule(session, schedule_id)
            if schedule is None or not schedule.enabled:
                return None
            if schedule.dedupe_key != dedupe_key or schedule.next_run_at != slot:
                return None
            claim = record_due_slot(session, schedule, now)
    except IntegrityError:
        # The unique (schedule, slot, attempt) index: this slot already has its run, so the row was re-armed
        # onto a slot that ran (an edit re-timed it while hosts' clocks disagreed). Move past it, or the pump
        # would re-arm the same slot forever.
        logger.warning("schedule %s slot %s already has a run; moving past it", schedule_id, slot.isoformat())
        _move_past_slot_that_ran(runtime, schedule_id, slot, dedupe_key)
        return None
    publish_claim(runtime, claim)
    return claim


def publish_claim(runtime: Runtime, claim: Claim) -> None:
    """Both outboxes of a claim in one transaction (the tick is the hot path): the run's message, then the
    next tick. A failure leaves both flags unset; the pump sends them again, and a duplicate is harmless."""

    def send_both(session: Session) -> bool:
        _send_run_of(runtime, lock_run(session, claim.history_id))
        return _send_tick_of(runtime, lock_schedule(session, claim.schedule_id))

    _in_outbox_transaction(runtime, f"schedule {claim.schedule_id}: run or next tick", send_both)


def record_due_slot(session: Session, schedule: TaskSchedule, now: datetime) -> Claim:
    """Insert the run of the schedule's due slot, coalescing the slots missed since, and advance the row to
    the next future slot. The caller holds the row lock and commits, then publishes and dispatches."""
    slot = schedule.next_run_at
    assert slot is not None
    following, missed = slots_after(schedule, slot, now)
    run = TaskRunHistory(
        schedule_id=schedule.id,
        task_type=schedule.task_type,
        status=RunStatus.QUEUED,
        triggered_by=TriggeredBy.SCHEDULE,
        scheduled_for=slot,
        queued_at=now,
        due_at=now,
        attempt=1,
        missed_slots=missed,
    )
    session.add(run)
    schedule.next_run_at = following
    schedule.tick_published_at = None
    session.flush()
    if missed:
        logger.info("schedule %s: %d slot(s) after %s were missed and coalesced", schedule.id, missed, slot)
    return Claim(schedule.id, run.id, missed)


def _move_past_slot_that_ran(runtime: Runtime, schedule_id: int, slot: datetime, dedupe_key: str) -> None:
    with runtime.sessions.begin() as session:
        schedule = lock_schedule(session, schedule_id)
        if schedule is None or schedule.dedupe_key != dedupe_key or schedule.next_run_at != slot:
            return
        schedule.next_run_at, _ = slots_after(schedule, slot, slot)
        schedule.tick_published_at = None
    publish_tick(runtime, schedule_id)


# --- Run ------------------------------------------------------------------------------------------------------


def queue_manual_run(session: Session, schedule: TaskSchedule, now: datetime) -> TaskRunHistory:
    """Insert a Run Now request; the caller commits, then calls ``dispatch_run``. The chain is not touched."""
    run = TaskRunHistory(
        schedule_id=schedule.id,
        task_type=schedule.task_type,
        status=RunStatus.QUEUED,
        triggered_by=TriggeredBy.MANUAL,
        queued_at=now,
        due_at=now,
        attempt=1,
    )
    session.add(run)
    session.flush()
    return run


def start_run(runtime: Runtime, history_id: int) -> tuple[TaskRunHistory, dict[str, Any]] | None:
    """Move a run ``queued -> running`` by compare-and-set: of any number of deliveries, one starts it.

    Returns the run and its schedule's config, or None when the message is a duplicate or early.
    """
    now = utcnow()
    with runtime.sessions.begin() as session:
        run = session.get(TaskRunHistory, history_id)
        if run is None or run.status != RunStatus.QUEUED:
            return None
        if run.due_at > now:
            send_run(runtime.broker, history_id, _ms_until(run.due_at, now))
            return None
        task_type = get_task_type(run.task_type)
        started = _rows_changed(
            session,
            update(TaskRunHistory)
            .where(TaskRunHistory.id == history_id, TaskRunHistory.status == RunStatus.QUEUED)
            .values(status=RunStatus.RUNNING, started_at=now, lease_expires_at=now + runtime.lease),
        )
        if started != 1:
            return None
        schedule = session.get(TaskSchedule, run.schedule_id) if run.schedule_id else None
        if task_type is None or schedule is None:
            reason = "its schedule was deleted before it started" if task_type else "unknown task type"
            _record_outcome(session, run.id, now, RunStatus.ABANDONED, reason)
            return None
        if run.triggered_by == TriggeredBy.SCHEDULE and not schedule.enabled:
            # A disabled schedule starts no new run; Run Now (manual) still does, as the operator asked for it.
            _record_outcome(
                session, run.id, now, RunStatus.SKIPPED, "its schedule was disabled before it started"
            )
            return None
        # "Last run" is the latest start of any run of the schedule, scheduled, manual or retry.
        session.execute(
            update(TaskSchedule)
            .where(TaskSchedule.id == schedule.id)
            .where(or_(TaskSchedule.last_run_at.is_(None), TaskSchedule.last_run_at < now))
            .values(last_run_at=now)
        )
        session.refresh(run)
        return run, dict(schedule.config or {})


def execute_run(runtime: Runtime, history_id: int) -> str | None:
    """Start a queued run, run its handler, record the outcome, and queue a retry after a failure.

    Returns the final status of this attempt, or None when this delivery had nothing to do.
    """
    started = start_run(runtime, history_id)
    if started is None:
        return None
    run, config = started
    task_type = get_task_type(run.task_type)
    assert task_type is not None
    begun = time.monotonic()
    error: str | None = None
    try:
        task_type.handler(RunContext(config=config, simulated_work_ms=runtime.settings.simulated_work_ms))
    except TaskFailed as exc:
        error = str(exc)
    except TimeLimitExceeded:  # Dramatiq interrupts the thread with this BaseException at the actor's limit
        error = f"time limit exceeded ({runtime.settings.task_time_limit_s} s)"
    except Exception as exc:  # a handler bug is a failed run, not a crashed worker
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = int((time.monotonic() - begun) * 1000)
    status = RunStatus.FAILED if error else RunStatus.SUCCESS

    def record() -> int | None:
        with runtime.sessions.begin() as session:
            recorded = _record_outcome(session, run.id, utcnow(), status, error, duration_ms)
            if recorded and error and run.attempt < task_type.max_attempts:
                return _queue_retry(session, run, runtime.settings.retry_base_delay_ms)
        return None

    retry_id = _retrying_while_database_is_away(record, give_up_after_s=runtime.settings.run_lease_margin_s)
    if retry_id is not None:
        dispatch_run(runtime, retry_id)
    return status


def _retrying_while_database_is_away(work: Callable[[], T], give_up_after_s: float) -> T:
    """Record an outcome through a database blip (a restart, a failover): the work has run, and losing its
    outcome would leave the run to be called abandoned. Keep trying for as long as the lease's margin allows."""
    deadline = time.monotonic() + give_up_after_s
    pause_s = 0.25
    while True:
        try:
            return work()
        except (OperationalError, InterfaceError):
            if time.monotonic() + pause_s > deadline:
                raise
            logger.warning("database unavailable while recording an outcome; retrying in %.2f s", pause_s)
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, 5.0)


def _record_outcome(
    session: Session,
    history_id: int,
    now: datetime,
    status: str,
    error: str | None,
    duration_ms: int | None = None,
) -> bool:
    """Finish a running run; a run the pump already marked abandoned stays abandoned."""
    return bool(
        _rows_changed(
            session,
            update(TaskRunHistory)
            .where(TaskRunHistory.id == history_id, TaskRunHistory.status == RunStatus.RUNNING)
            .values(
                status=status,
                completed_at=now,
                duration_ms=duration_ms,
                error_message=(error or None) and error[:ERROR_MESSAGE_CHARS],
                lease_expires_at=None,
            ),
        )
    )


def retry_delay(attempt: int, base_delay_ms: int) -> timedelta:
    """Exponential backoff after failed ``attempt`` (1-based): base, 2x base, 4x base..., capped."""
    return min(timedelta(milliseconds=base_delay_ms * 2 ** (attempt - 1)), RETRY_MAX_DELAY)


def _queue_retry(session: Session, failed: TaskRunHistory, base_delay_ms: int) -> int:
    now = utcnow()
    retry = TaskRunHistory(
        schedule_id=failed.schedule_id,
        task_type=failed.task_type,
        system_task=failed.system_task,
        status=RunStatus.QUEUED,
        triggered_by=failed.triggered_by,
        scheduled_for=failed.scheduled_for,
        queued_at=now,
        due_at=now + retry_delay(failed.attempt, base_delay_ms),
        attempt=failed.attempt + 1,
    )
    session.add(retry)
    session.flush()
    return retry.id


# --- System tasks --------------------------------------------------------------------------------------------


def run_system_slot(
    runtime: Runtime, task_id: str, task_type: str, slot: datetime, work: Callable[[Runtime], str | None]
) -> str | None:
    """Run one slot of a system cron once, however many beats sent it: the insert of its run is the claim."""
    now = utcnow()
    try:
        with runtime.sessions.begin() as session:
            run = TaskRunHistory(
                task_type=task_type,
                system_task=task_id,
                status=RunStatus.RUNNING,
                triggered_by=TriggeredBy.SYSTEM,
                scheduled_for=slot,
                queued_at=now,
                due_at=slot,
                started_at=now,
                lease_expires_at=now + runtime.lease,
                attempt=1,
            )
            session.add(run)
    except IntegrityError:
        logger.info("system task %s slot %s already claimed", task_id, slot.isoformat())
        return None
    begun = time.monotonic()
    error = None
    try:
        summary = work(runtime)
        if summary:
            logger.info("system task %s: %s", task_id, summary)
    except Exception as exc:
        logger.exception("system task %s failed", task_id)
        error = f"{type(exc).__name__}: {exc}"
    status = RunStatus.FAILED if error else RunStatus.SUCCESS
    duration_ms = int((time.monotonic() - begun) * 1000)

    def record() -> None:
        with runtime.sessions.begin() as session:
            _record_outcome(session, run.id, utcnow(), status, error, duration_ms)

    _retrying_while_database_is_away(record, give_up_after_s=runtime.settings.run_lease_margin_s)
    return status


# --- Pump -----------------------------------------------------------------------------------------------------


def pump(runtime: Runtime) -> str:
    """Heal every chain; safe with any number of concurrent pumps (row locks with SKIP LOCKED).

    1. publish ticks for slots that entered the horizon, or whose publish never happened;
    2. re-arm, with a new key, schedules whose slot is overdue past the grace period (the tick was lost);
    3. re-dispatch runs still queued long after they were due (their message was lost);
    4. mark runs whose lease ran out as abandoned (their worker died mid-run).
    """
    now = utcnow()
    with runtime.sessions() as session:
        unpublished = session.scalars(
            select(TaskSchedule.id).where(
                TaskSchedule.enabled.is_(True),
                TaskSchedule.next_run_at <= now + runtime.horizon,
                TaskSchedule.tick_published_at.is_(None),
            )
        ).all()
        lost = session.scalars(
            select(TaskSchedule.id).where(
                TaskSchedule.enabled.is_(True),
                TaskSchedule.next_run_at < now - runtime.grace,
                TaskSchedule.tick_published_at < now - runtime.grace,
            )
        ).all()
        stuck_runs = session.scalars(
            select(TaskRunHistory.id).where(
                TaskRunHistory.status == RunStatus.QUEUED,
                TaskRunHistory.due_at < now - runtime.grace,
                # Never sent: after the grace period. Sent but not started: only after a lease, so that a deep
                # but moving run queue is not fed one more copy of every run each minute.
                or_(
                    TaskRunHistory.dispatched_at.is_(None), TaskRunHistory.dispatched_at < now - runtime.lease
                ),
            )
        ).all()
    published = sum(publish_tick(runtime, schedule_id, skip_locked=True) for schedule_id in unpublished)
    rearmed = sum(_rearm_lost(runtime, schedule_id, now) for schedule_id in lost)
    redispatched = sum(dispatch_run(runtime, history_id, skip_locked=True) for history_id in stuck_runs)
    with runtime.sessions.begin() as session:
        abandoned = _rows_changed(
            session,
            update(TaskRunHistory)
            .where(TaskRunHistory.status == RunStatus.RUNNING, TaskRunHistory.lease_expires_at < now)
            .values(
                status=RunStatus.ABANDONED,
                completed_at=now,
                lease_expires_at=None,
                error_message="abandoned: its worker stopped before recording an outcome (lease expired)",
            ),
        )
    return (
        f"published {published} tick(s), re-armed {rearmed} lost chain(s), "
        f"re-dispatched {redispatched} run(s), abandoned {abandoned} run(s)"
    )


def _rearm_lost(runtime: Runtime, schedule_id: int, now: datetime) -> bool:
    with runtime.sessions.begin() as session:
        schedule = lock_schedule(session, schedule_id, skip_locked=True)
        if schedule is None or schedule.next_run_at is None or schedule.next_run_at >= now - runtime.grace:
            return False
        if schedule.tick_published_at is None or schedule.tick_published_at >= now - runtime.grace:
            return False
        logger.warning(
            "schedule %s: tick for %s overdue past grace; re-arming",
            schedule.id,
            schedule.next_run_at.isoformat(),
        )
        arm(schedule, now, keep_slot=True)  # same slot, new key: claim coalesces whatever was missed
    return publish_tick(runtime, schedule_id, skip_locked=True)


def delete_old_history(runtime: Runtime) -> str:
    """Delete finished runs queued more than ``HISTORY_RETENTION_DAYS`` ago."""
    cutoff = utcnow() - timedelta(days=runtime.settings.history_retention_days)
    with runtime.sessions.begin() as session:
        deleted = _rows_changed(
            session,
            delete(TaskRunHistory).where(
                TaskRunHistory.queued_at < cutoff, TaskRunHistory.status.in_(RunStatus.FINISHED)
            ),
        )
    return f"deleted {deleted} run(s) older than {runtime.settings.history_retention_days} days"
