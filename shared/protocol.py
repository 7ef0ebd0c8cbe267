"""What happens when a schedule fires, top to bottom: arm, publish, claim, start, record.

PostgreSQL is the source of truth and RabbitMQ only a transport, so every step below checks the database row
before acting, and every message may be lost, duplicated or late without a slot running twice or silently not
at all. ``docs/ARCHITECTURE.md`` states the invariants this module keeps;
``shared.healing`` (the pump) repairs what a lost message or a dead worker leaves behind.

At volume the work is done in batches: a tick names every slot due in one short bucket, a worker's tick
threads hand their slots to one claimer (``shared.batching``) that claims them in one transaction, and the
runs and next ticks that follow go to the broker in one commit. A run's outcome is recorded the same way.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, TypeVar, cast

from dramatiq.errors import BrokerError
from dramatiq.middleware import TimeLimitExceeded
from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from shared.db import (
    UTCDateTime,
    insert_ignoring_conflicts,
    is_postgresql,
    lock_for_transaction,
    retrying_a_stale_connection,
    update_rows,
    utcnow,
)
from shared.messaging import Outgoing, TickSlot, run_message, tick_message
from shared.models import (
    NOT_AN_ATTEMPT,
    SLOT_RUNS,
    OverlapPolicy,
    RunStatus,
    ScheduleHealth,
    TaskRunHistory,
    TaskSchedule,
    TickInFlight,
    TriggeredBy,
)
from shared.observability import (
    RUNS_FINISHED,
    RUNS_STARTED,
    SLOT_LATENESS,
    SLOTS_MISSED,
    SLOTS_SKIPPED,
)
from shared.policies import MisfireRule, Settlement, settle
from shared.runtime import Runtime
from shared.secrets import hidden_secrets, reveal_secrets
from shared.task_types import OUTPUT_CHARS, RunContext, TaskFailed, TaskType
from shared.timing import (
    JUST_BEFORE,
    BoundedTiming,
    InvalidTiming,
    Timing,
    instant_text,
    jitter,
    timing_of,
)

logger = logging.getLogger("cronwork.protocol")
T = TypeVar("T")

# Core tables for set-based statements: the ORM's per-object bookkeeping costs more than they do, and its
# session synchronisation turns an UPDATE or DELETE with a subquery into one that returns every id it changed.
SCHEDULES = cast(Table, TaskSchedule.__table__)
RUNS = cast(Table, TaskRunHistory.__table__)
TICKS = cast(Table, TickInFlight.__table__)
HEALTH = cast(Table, ScheduleHealth.__table__)

RETRY_MAX_DELAY = timedelta(minutes=5)  # well under RabbitMQ's consumer_timeout, like every delay we publish
ERROR_MESSAGE_CHARS = 2000
# The most slots one tick carries: a minute's burst of 10,000 schedules is 20 messages for Dramatiq's delay
# queue to move, instead of 10,000 (it moves them one confirmed publish at a time).
TICK_MAX_SLOTS = 500
# Serialises everyone who publishes ticks, so that the count of ticks in flight and the ticks added to it are
# one decision: the budget is never exceeded, whatever the number of workers, pumps and API processes.
TICK_BUDGET_LOCK = 0x63726F6E  # "cron"
SCHEDULED_RUN_KEY = ("schedule_id", "scheduled_for", "attempt")  # uq_task_run_history_schedule_slot


# --- Arm and publish ----------------------------------------------------------------------------------------


def arm(schedule: TaskSchedule, now: datetime, resume_from: datetime | None = None) -> None:
    """Point the row at its first slot from now (or at ``resume_from``, the first slot a pause passed, which
    its claim settles by the misfire policy) with a fresh dedupe key, inside the caller's transaction.

    Every tick already in the broker carries the old key and becomes stale, so timing edits, disables and
    deletes never have to find messages. The tick itself is published after the commit, by ``publish_tick``.
    """
    schedule.dedupe_key = secrets.token_hex(16)
    schedule.tick_published_at = None
    schedule.broken_reason = None  # armed from a timing that parses
    if schedule.enabled:
        schedule.next_run_at = resume_from or timing_of(schedule).first_slot(now)
    else:
        schedule.next_run_at = None


def record_unclaimed_slots(
    session: Session, schedule: TaskSchedule, now: datetime, action: str
) -> datetime | None:
    """A disable or a delete (``action``: "disabled", "deleted") landing after the schedule's armed slot fell
    due, before its tick was claimed: the slot is recorded ``skipped``, any later ones already past ``missed``,
    rather than left without a trace. Returns the chain's first slot after now (None: none). The caller holds
    the row lock."""
    armed = schedule.next_run_at
    if not schedule.enabled or armed is None or armed > now:
        return armed if schedule.enabled else None
    why = f"the schedule was {action} after this slot fell due, before it was claimed"
    entries = [not_an_attempt(schedule, RunStatus.SKIPPED, armed, now, why)]
    try:
        timing = timing_of(schedule)
    except (InvalidTiming, ValueError):  # broken: the armed slot is all that is known of its chain
        insert_ignoring_conflicts(session, RUNS, entries, SCHEDULED_RUN_KEY, index_where=text(SLOT_RUNS))
        return None
    assert isinstance(timing, BoundedTiming)
    later = next(timing.slots_from(armed, armed + JUST_BEFORE), None)
    latest = timing.latest_slot(armed, now)
    if later is not None and latest is not None and later <= latest:
        entries.append(
            not_an_attempt(
                schedule,
                RunStatus.MISSED,
                later,
                now,
                f"passed unclaimed, then the schedule was {action}",
                last_slot=latest,
                count=timing.count_slots(later, latest),
            )
        )
    insert_ignoring_conflicts(session, RUNS, entries, SCHEDULED_RUN_KEY, index_where=text(SLOT_RUNS))
    return next(timing.slots_from(armed, now + JUST_BEFORE), None)


def lock_schedule(session: Session, schedule_id: int) -> TaskSchedule | None:
    """The schedule row, locked for this transaction. ``FOR NO KEY UPDATE`` (key_share), so run inserts, whose
    foreign-key check takes a key-share lock on it, neither block nor are blocked by it."""
    return session.execute(
        select(TaskSchedule).where(TaskSchedule.id == schedule_id).with_for_update(key_share=True)
    ).scalar_one_or_none()


def publish_tick(runtime: Runtime, schedule_id: int) -> bool:
    """Publish the tick of one schedule's armed slot, alone (an API create or edit), if it is within the
    horizon and the budget allows; otherwise the pump publishes it in slot order. True when published."""
    _runs, slots = publish_outboxes(runtime, f"schedule {schedule_id}: tick", tick_schedule_ids=[schedule_id])
    return slots > 0


def dispatch_runs(runtime: Runtime, what: str, candidates: Select[Any]) -> int:
    """Publish the start messages of the queued runs whose ids ``candidates`` selects; the number sent."""
    runs, _slots = publish_outboxes(runtime, what, run_candidates=candidates)
    return runs


def publish_outboxes(
    runtime: Runtime,
    what: str,
    run_candidates: Select[Any] | None = None,
    tick_schedule_ids: Sequence[int] = (),
    earliest_ticks: int = 0,
) -> tuple[int, int]:
    """Empty the outboxes with one broker commit; return (runs, tick slots) published.

    ``run_candidates`` selects queued runs to send; ``tick_schedule_ids`` names schedules whose tick to send
    (waiting for their row locks); ``earliest_ticks`` adds up to that many other unpublished slots, earliest
    first, skipping rows someone else holds.

    Nothing is locked while the broker is waited on, so that neither the budget (one lock, fleet-wide) nor a
    run's start waits for a broker round trip. Ticks are marked, then sent: one short transaction locks the
    unpublished rows it can take (a row another publisher holds or flagged is skipped, so a schedule's tick
    is never sent twice: invariant 5) and, under the budget lock, records the ticks in ``ticks_in_flight`` and
    flags the rows; if the broker then refuses them, the flags and the ledger rows are given back for the pump
    (a worker killed in between leaves them to the pump's grace period, its redelivered tick finding them
    taken). Runs are sent, then marked: a run may be sent twice (the mark failed, or two publishers raced),
    and its start, a compare-and-set, still starts it once.
    """

    def take() -> tuple[datetime, dict[int, Outgoing], list[TakenTick]]:
        with runtime.sessions.begin() as session:
            now = utcnow()
            runs = _unsent_runs(runtime, session, now, run_candidates) if run_candidates is not None else {}
            return now, runs, _take_ticks(session, runtime, now, tick_schedule_ids, earliest_ticks)

    try:
        now, runs, ticks = retrying_a_stale_connection(take)
    except SQLAlchemyError as exc:
        logger.warning("%s not published (%s); the pump will retry", what, exc)
        return 0, 0
    try:
        runtime.publisher.publish([*runs.values(), *(tick.outgoing for tick in ticks)])
    except BrokerError as exc:
        logger.warning("%s not published (%s); the pump will retry", what, exc)
        _give_back(runtime, ticks, now)
        return 0, 0
    if runs:
        try:
            with runtime.sessions.begin() as session:
                session.execute(MARK_DISPATCHED, {"ids": list(runs), "now": now})
        except SQLAlchemyError as exc:  # the runs went out; the pump sends them once more, harmlessly
            logger.warning("%s: runs sent but not marked (%s)", what, exc)
            runs = {}  # counted as not sent, so that a pump's loop stops rather than send them again
    return len(runs), sum(len(tick.slots) for tick in ticks)


@dataclass(frozen=True)
class TakenTick:
    """A tick recorded in ``ticks_in_flight`` and flagged on its rows, ready to send."""

    id: int
    slots: list[TickSlot]
    outgoing: Outgoing


def _give_back(runtime: Runtime, ticks: Sequence[TakenTick], flagged_at: datetime) -> None:
    """Undo ``_take_ticks`` for ticks the broker did not take, so the pump publishes them at its next cycle."""
    if not ticks:
        return
    try:
        with runtime.sessions.begin() as session:
            session.execute(TICKS.delete().where(TICKS.c.id.in_([tick.id for tick in ticks])))
            session.execute(
                update(SCHEDULES)
                .where(
                    SCHEDULES.c.id.in_([slot.schedule_id for tick in ticks for slot in tick.slots]),
                    SCHEDULES.c.tick_published_at == flagged_at,
                )
                .values(tick_published_at=None)
            )
    except SQLAlchemyError as exc:  # the pump reopens them after its grace period
        logger.warning("%d tick(s) not given back (%s)", len(ticks), exc)


MARK_DISPATCHED = (
    update(RUNS)
    .where(RUNS.c.id.in_(bindparam("ids", expanding=True)))
    .values(dispatched_at=bindparam("now", type_=UTCDateTime()))
)


def _ms_until(instant: datetime, now: datetime) -> int:
    return int((instant - now).total_seconds() * 1000)


def _unsent_runs(
    runtime: Runtime, session: Session, now: datetime, candidates: Select[Any]
) -> dict[int, Outgoing]:
    """The start messages of the selected runs that are still queued, by run id."""
    queued = session.execute(
        select(RUNS.c.id, RUNS.c.due_at, RUNS.c.task_type, RUNS.c.time_limit_s).where(
            RUNS.c.id.in_(candidates.scalar_subquery()), RUNS.c.status == RunStatus.QUEUED
        )
    ).all()
    return {
        history_id: Outgoing(
            run_message(history_id, time_limit_s(runtime, task_type, own_limit_s)), _ms_until(due_at, now)
        )
        for history_id, due_at, task_type, own_limit_s in queued
    }


def time_limit_exceeded(limit_s: int) -> str:
    """The error of an attempt Dramatiq interrupted at its time limit."""
    return f"time limit exceeded ({limit_s} s)"


def time_limit_s(runtime: Runtime, task_type_id: str, run_limit_s: int | None) -> int:
    """How long one attempt of a run may take: its schedule's limit, else its task type's, never more than the
    worker-wide ``TASK_TIME_LIMIT_S`` (which the run's lease is made of)."""
    task_type = runtime.task_types.get(task_type_id)
    wanted = (
        run_limit_s or (task_type.time_limit_s if task_type else None) or runtime.settings.task_time_limit_s
    )
    return min(wanted, runtime.settings.task_time_limit_s)


def _take_ticks(
    session: Session, runtime: Runtime, now: datetime, schedule_ids: Sequence[int], earliest: int
) -> list[TakenTick]:
    """Lock unpublished slots within the horizon (skipping rows others hold: a claim, an edit or another
    publisher then publishes them itself), group them into ticks by bucket, and, under the budget lock, keep
    the earliest ticks that fit in the budget, record them in ``ticks_in_flight`` and flag their rows. The
    fleet-wide lock is taken only when there is something to publish, and after the rows, so no row lock is
    ever waited for while holding it."""
    if not schedule_ids and not earliest:
        return []
    unpublished = select(TaskSchedule.id, TaskSchedule.next_run_at, TaskSchedule.dedupe_key).where(
        TaskSchedule.enabled,  # plain "enabled", so the partial indexes on it match
        TaskSchedule.tick_published_at.is_(None),
        TaskSchedule.next_run_at.is_not(None),
        TaskSchedule.next_run_at <= now + runtime.horizon,
    )
    queries = []
    if schedule_ids:
        named = unpublished.where(TaskSchedule.id.in_(schedule_ids)).order_by(TaskSchedule.id)
        queries.append(named.with_for_update(key_share=True, skip_locked=True))
    if earliest:  # others' slots too, earliest first, so that the budget goes in slot order
        others = unpublished.order_by(TaskSchedule.next_run_at).limit(earliest)
        queries.append(others.with_for_update(key_share=True, skip_locked=True))
    found: dict[int, TickSlot] = {}
    for query in queries:
        for schedule_id, slot, key in session.execute(query):
            assert slot is not None and key is not None  # an enabled, armed row
            found[schedule_id] = TickSlot(schedule_id, slot, key)
    if not found:
        return []
    lock_for_transaction(session, TICK_BUDGET_LOCK)
    in_flight = session.scalar(select(func.count()).select_from(TickInFlight)) or 0
    room = max(0, runtime.settings.tick_budget - in_flight)
    ticks = group_into_ticks(sorted(found.values(), key=lambda s: s.slot), runtime.settings.tick_bucket_ms)
    ticks = ticks[:room]
    if not ticks:
        return []
    ids = [secrets.randbits(62) for _ in ticks]
    session.execute(
        insert(TickInFlight),
        [
            {"id": i, "due_at": tick[-1].slot, "slot_count": len(tick)}
            for i, tick in zip(ids, ticks, strict=True)
        ],
    )
    published = [slot.schedule_id for tick in ticks for slot in tick]
    session.execute(update(TaskSchedule).where(TaskSchedule.id.in_(published)).values(tick_published_at=now))
    return [
        TakenTick(i, tick, Outgoing(tick_message(i, tick), _ms_until(tick[-1].slot, now)))
        for i, tick in zip(ids, ticks, strict=True)
    ]


def group_into_ticks(slots: Sequence[TickSlot], bucket_ms: int) -> list[list[TickSlot]]:
    """Slots (in slot order) grouped into ticks: those due in the same ``bucket_ms`` share one, up to
    ``TICK_MAX_SLOTS``. A tick is delivered at its latest slot, so none of its slots is claimed early; the
    earliest is late by less than a bucket."""

    def bucket(slot: TickSlot) -> int:
        return int(slot.slot.timestamp() * 1000) // bucket_ms if bucket_ms else id(slot)

    ticks: list[list[TickSlot]] = []
    for _bucket, together in groupby(slots, key=bucket):
        same = list(together)
        ticks.extend(same[start : start + TICK_MAX_SLOTS] for start in range(0, len(same), TICK_MAX_SLOTS))
    return ticks


# --- Claim ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimRequest:
    """One slot of a delivered tick, handed to the claimer."""

    tick_id: int
    slot: TickSlot


@dataclass(frozen=True)
class ArmedRow:
    """The columns a claim reads from a locked schedule row."""

    id: int
    enabled: bool
    dedupe_key: str | None
    next_run_at: datetime | None
    schedule_type: str
    cron_expression: str | None
    interval_ms: int | None
    timezone: str
    start_at: datetime | None  # the bounds: part of its timing, so the next slot honours them
    end_at: datetime | None
    dst_policy: str
    task_type: str
    time_limit_s: int | None
    name: str
    config: dict[str, Any]
    misfire_policy: str
    catch_up_max: int | None
    catch_up_window_s: int | None
    overlap_policy: str
    jitter_s: int
    paused_slot: datetime | None

    @property
    def misfire_rule(self) -> MisfireRule:
        """Its misfire policy, with a catch-up's cap and window."""
        window = self.catch_up_window_s
        return MisfireRule(
            self.misfire_policy, self.catch_up_max, None if window is None else timedelta(seconds=window)
        )

    @classmethod
    def of(cls, schedule: TaskSchedule) -> ArmedRow:
        """The armed columns of a loaded schedule."""
        return cls(**{name: getattr(schedule, name) for name in cls.__dataclass_fields__})


ARMED_COLUMNS = [SCHEDULES.c[name] for name in ArmedRow.__dataclass_fields__]


def claim_ticks(runtime: Runtime, requests: list[ClaimRequest]) -> list[bool]:
    """Turn the slots of delivered ticks into exactly one run each, move each schedule to its next slot, and
    publish the runs and the next ticks: ``claim_slots``, then ``publish_claimed``. Returns, per request,
    whether it claimed its slot."""
    claimed = claim_slots(runtime, requests)
    publish_claimed(runtime, requests)
    return claimed


def claim_slots(runtime: Runtime, requests: list[ClaimRequest]) -> list[bool]:
    """One transaction claims every slot whose key and slot are still its row's (the others are stale:
    edited, disabled, deleted, re-armed, already claimed, or a duplicate) and forgets the ticks in
    ``ticks_in_flight``. Returns, per request, whether it claimed its slot; a failure raises, so the ticks are
    delivered again. The worker's claimer batch (``shared.batching``)."""
    with runtime.sessions.begin() as session:
        now = utcnow()
        rows = lock_armed_rows(session, requests)
        claim = _claim_locked(session, rows, requests, now, runtime.misfire_grace)
        session.execute(TICKS.delete().where(TICKS.c.id.in_({r.tick_id for r in requests})))
    # Counted once committed: a claim that rolled back recorded nothing.
    SLOTS_MISSED.inc(claim.missed_slots)
    SLOTS_SKIPPED.inc(claim.skipped_slots)
    return claim.verdicts


def publish_claimed(runtime: Runtime, requests: Sequence[ClaimRequest]) -> list[None]:
    """Publish the runs and next ticks of the requests' schedules, in one broker commit, once they are claimed.

    Every run of those schedules never sent (the slots their settlements run, claimed now or by an earlier
    delivery that was killed before its publish: a redelivery completes them; a next tick already flagged by
    the killed delivery waits for the pump's grace period). A failure leaves the outboxes to the pump. The
    worker's publisher batch, which overlaps the claimer's next batch.
    """
    schedule_ids = sorted({r.slot.schedule_id for r in requests})
    publish_outboxes(
        runtime,
        f"{len(requests)} claimed slot(s): runs or next ticks",
        run_candidates=undispatched_runs_of(schedule_ids),
        tick_schedule_ids=schedule_ids,
        earliest_ticks=len(requests),
    )
    return [None] * len(requests)


def undispatched_runs_of(schedule_ids: Sequence[int]) -> Select[Any]:
    """The scheduled runs of these schedules still queued whose start message was never sent (an index probe
    each: ``ix_task_run_history_schedule_unfinished``)."""
    return select(TaskRunHistory.id).where(
        TaskRunHistory.schedule_id.in_(schedule_ids),
        TaskRunHistory.status == RunStatus.QUEUED,
        TaskRunHistory.triggered_by == TriggeredBy.SCHEDULE,
        TaskRunHistory.dispatched_at.is_(None),
    )


def lock_armed_rows(session: Session, requests: Sequence[ClaimRequest]) -> dict[int, ArmedRow]:
    """The schedule rows the requests name, locked in id order (so concurrent claims never deadlock)."""
    ids = sorted({request.slot.schedule_id for request in requests})
    rows = session.execute(
        select(*ARMED_COLUMNS)
        .where(SCHEDULES.c.id.in_(ids))
        .order_by(SCHEDULES.c.id)
        .with_for_update(key_share=True)
    ).all()
    return {row.id: ArmedRow(*row) for row in rows}


def claim_locked_slots(
    session: Session,
    rows: dict[int, ArmedRow],
    requests: Sequence[ClaimRequest],
    now: datetime,
    grace: timedelta,
) -> list[bool]:
    """Inside the caller's transaction, holding the rows' locks: settle each current request's due slots by its
    schedule's policies (``shared.policies``: the runs queued, the ranges missed, the slots an overlap skips, all
    in the ledger) and advance its row to its next future slot. Returns, per request, whether it claimed."""
    return _claim_locked(session, rows, requests, now, grace).verdicts


@dataclass(frozen=True)
class Claim:
    """What a claim did: per request, whether it claimed its slot; and the slots its ledger entries recorded
    missed and skipped (for the metrics, counted by the caller once the claim commits)."""

    verdicts: list[bool]
    missed_slots: int = 0
    skipped_slots: int = 0


def _claim_locked(
    session: Session,
    rows: dict[int, ArmedRow],
    requests: Sequence[ClaimRequest],
    now: datetime,
    grace: timedelta,
) -> Claim:
    settled: dict[tuple[Timing, datetime, MisfireRule], Settlement] = {}
    claimed: dict[int, tuple[ArmedRow, Settlement, str | None]] = {}
    verdicts = []
    for request in requests:
        row = rows.get(request.slot.schedule_id)
        is_current = (
            row is not None
            and row.enabled
            and row.dedupe_key == request.slot.dedupe_key
            and row.next_run_at == request.slot.slot
            and row.id not in claimed  # the same slot twice in one batch (a duplicated tick)
        )
        verdicts.append(is_current)
        if not is_current:
            continue
        assert row is not None and row.next_run_at is not None
        try:
            timing = timing_of(row)
            assert isinstance(timing, BoundedTiming)  # an armed slot belongs to a kind with slots
            # Schedules that share a timing and policy share their settlement: a minute's burst computes it once.
            key = (timing, row.next_run_at, row.misfire_rule)
            if key not in settled:
                settled[key] = settle(timing, row.next_run_at, now, row.misfire_rule, grace)
            claimed[row.id] = (row, settled[key], None)
        except (InvalidTiming, ValueError) as exc:
            # Its stored timing no longer parses (a library upgrade refuses it): the slot armed when it did runs,
            # and the chain stops there, the schedule marked broken, rather than every claim failing.
            reason = f"its timing no longer gives slots ({exc}): edit its timing to resume it"
            logger.error("schedule %s is broken: %s", row.id, reason)
            claimed[row.id] = (row, Settlement([row.next_run_at]), reason)
    if not claimed:
        return Claim(verdicts)
    update_rows(
        session,
        SCHEDULES,
        [
            {
                "id": row.id,
                "next_run_at": settlement.next_slot,
                "tick_published_at": None,
                "broken_reason": broken,
                "paused_slot": None,
            }
            for row, settlement, broken in claimed.values()
        ],
    )
    entries = _ledger_entries(session, list(claimed.values()), now)
    inserted = insert_ignoring_conflicts(
        session, RUNS, entries, SCHEDULED_RUN_KEY, index_where=text(SLOT_RUNS)
    )
    if len(inserted) < len(entries):
        # The unique (schedule, slot, attempt) index: a slot that already has its run, because a backfill ran it
        # first, or it was armed again (an edit re-timed it while hosts' clocks disagreed). The row has moved past
        # it anyway.
        logger.info("%d slot(s) already had their entry; moved past them", len(entries) - len(inserted))
    recorded = {(row.schedule_id, row.scheduled_for, row.attempt) for row in inserted}
    not_run = [
        entry
        for entry in entries
        if entry["attempt"] == NOT_AN_ATTEMPT
        and (entry["schedule_id"], entry["scheduled_for"], entry["attempt"]) in recorded
    ]
    return Claim(
        verdicts,
        missed_slots=sum(entry["missed_slots"] for entry in not_run if entry["status"] == RunStatus.MISSED),
        skipped_slots=sum(1 for entry in not_run if entry["status"] == RunStatus.SKIPPED),
    )


def _ledger_entries(
    session: Session, claimed: list[tuple[ArmedRow, Settlement, str | None]], now: datetime
) -> list[dict[str, Any]]:
    """The rows a claim adds to the ledger: a queued run per slot that runs (or a ``skipped`` entry, when the
    overlap policy skips it), and a ``missed`` entry per range of slots that do not."""
    overlap_skips = [
        row.id for row, _settlement, _broken in claimed if row.overlap_policy == OverlapPolicy.SKIP
    ]
    busy = _unfinished_slot_runs(session, overlap_skips)
    entries = []
    for row, settlement, _broken in claimed:
        for missed in settlement.missed:
            why = "passed while the schedule was disabled" if row.paused_slot else "passed unclaimed"
            entries.append(
                not_an_attempt(
                    row,
                    RunStatus.MISSED,
                    missed.first,
                    now,
                    f"{why}; misfire policy {row.misfire_policy}",
                    last_slot=missed.last,
                    count=missed.count,
                )
            )
        for slot in settlement.runs:
            if row.id in busy:
                why = f"overlap policy skip: {busy[row.id]} of this schedule was still queued or running"
                entries.append(not_an_attempt(row, RunStatus.SKIPPED, slot, now, why))
                continue
            start = max(now, slot + jitter(row.id, slot, row.jitter_s))
            entries.append({**slot_run_row(row, TriggeredBy.SCHEDULE, slot, now), "due_at": start})
            if row.overlap_policy == OverlapPolicy.SKIP:
                busy[row.id] = f"the run of slot {instant_text(slot)}"
    return entries


def _unfinished_slot_runs(session: Session, schedule_ids: list[int]) -> dict[int, str]:
    """Of these schedules, those with a slot's run still queued or running, and which run it is."""
    if not schedule_ids:
        return {}
    rows = session.execute(
        select(RUNS.c.schedule_id, func.min(RUNS.c.id))
        .where(
            RUNS.c.schedule_id.in_(schedule_ids),
            RUNS.c.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)),
            RUNS.c.triggered_by.in_((TriggeredBy.SCHEDULE, TriggeredBy.BACKFILL)),
        )
        .group_by(RUNS.c.schedule_id)
    )
    return {schedule_id: f"run {run_id}" for schedule_id, run_id in rows}


def not_an_attempt(
    schedule: ArmedRow | TaskSchedule,
    status: RunStatus,
    slot: datetime,
    now: datetime,
    why: str,
    last_slot: datetime | None = None,
    count: int = 1,
) -> dict[str, Any]:
    """A ledger entry for slots that did not run (``missed``, ``skipped``): ``slot`` to ``last_slot`` (``count``
    of them), finished when recorded, ``why`` in its error message. Attempt 0: no place taken from a run of the
    slot, such as a backfill's."""
    return {
        **slot_run_row(schedule, TriggeredBy.SCHEDULE, slot, now),
        "status": status,
        "attempt": NOT_AN_ATTEMPT,
        "last_slot": last_slot,
        "missed_slots": count if status == RunStatus.MISSED else 0,
        "completed_at": now,
        "error_message": why[:ERROR_MESSAGE_CHARS],
    }


def slot_run_row(
    schedule: ArmedRow | TaskSchedule,
    triggered_by: TriggeredBy,
    slot: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The queued first attempt of ``schedule``'s ``slot``, due now. It carries what its schedule says when it is
    queued (task type, config, name, time limit): an edit takes effect from the next slot, retries included."""
    return {
        "schedule_id": schedule.id,
        "task_type": schedule.task_type,
        "status": RunStatus.QUEUED,
        "triggered_by": triggered_by,
        "scheduled_for": slot,
        "queued_at": now,
        "due_at": now,
        "attempt": 1,
        "time_limit_s": schedule.time_limit_s,
        "config": schedule.config,
        "schedule_name": schedule.name,
        # What a ledger entry that is no run fills in (``not_an_attempt``): one set of columns for every row of
        # a claim's insert.
        "last_slot": None,
        "missed_slots": 0,
        "completed_at": None,
        "error_message": None,
    }


# --- Run ------------------------------------------------------------------------------------------------------


def queue_manual_run(
    session: Session, schedule: TaskSchedule, now: datetime, config_override: dict[str, Any] | None = None
) -> TaskRunHistory:
    """Insert a Run Now request (with a one-off config override, laid over the schedule's config when it
    starts); the caller commits, then dispatches it. The chain is not touched."""
    run = TaskRunHistory(
        **slot_run_row(schedule, TriggeredBy.MANUAL, None, now), config_override=config_override
    )
    session.add(run)
    session.flush()
    return run


@dataclass(frozen=True)
class StartedRun:
    """A run this worker moved to ``running``, with what its handler and its outcome need."""

    id: int
    schedule_id: int | None
    task_type: str
    system_task: str | None
    triggered_by: str
    scheduled_for: datetime | None
    attempt: int
    schedule_name: str | None
    config: dict[str, Any]  # its schedule's when it was queued
    config_override: dict[str, Any] | None  # Run Now's, laid over ``config`` for this run
    time_limit_s: int | None  # the run's own (its schedule's), if any
    max_attempts: int | None  # its schedule's, if any
    retry_base_delay_ms: int | None  # its schedule's, if any
    # Its schedule was failing (a failure streak) when it started: only then has its success a streak to end.
    schedule_was_failing: bool = False

    @property
    def log_fields(self) -> dict[str, Any]:
        """Who this run is, as the fields of its log lines."""
        return {
            "run_id": self.id,
            "schedule_id": self.schedule_id,
            "system_task": self.system_task,
            "slot": self.scheduled_for and self.scheduled_for.isoformat().replace("+00:00", "Z"),
            "attempt": self.attempt,
            "trigger": self.triggered_by,
            "task_type": self.task_type,
        }


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: its status, error or result line, and ``may_retry`` when a failure should be
    followed by another attempt."""

    run: StartedRun
    status: str
    error: str | None
    duration_ms: int | None
    may_retry: bool = False
    output: str | None = None


SCHEDULE_OF_RUN = SCHEDULES.c.id == RUNS.c.schedule_id
IS_RUNNING = RUNS.c.status == RunStatus.RUNNING
IS_ABANDONED = RUNS.c.status == RunStatus.ABANDONED
_schedule_enabled = select(SCHEDULES.c.enabled).where(SCHEDULE_OF_RUN).scalar_subquery()
# Runs queued before revision 0004 carry no config of their own: theirs is their schedule's at start.
_run_config = func.coalesce(
    RUNS.c.config, select(SCHEDULES.c.config).where(SCHEDULE_OF_RUN).scalar_subquery()
)
_schedule_max_attempts = select(SCHEDULES.c.max_attempts).where(SCHEDULE_OF_RUN).scalar_subquery()
_schedule_retry_base_delay_ms = (
    select(SCHEDULES.c.retry_base_delay_ms).where(SCHEDULE_OF_RUN).scalar_subquery()
)
_schedule_jitter_s = select(SCHEDULES.c.jitter_s).where(SCHEDULE_OF_RUN).scalar_subquery()
_schedule_failure_streak = (
    select(HEALTH.c.failure_streak).where(HEALTH.c.schedule_id == RUNS.c.schedule_id).scalar_subquery()
)
_is_orphan = _schedule_enabled.is_(None)  # its schedule was deleted before it started
_is_disabled_slot = and_(RUNS.c.triggered_by == TriggeredBy.SCHEDULE, _schedule_enabled.is_(false()))
# What a worker needs of a run it started (and the pump of a run it retries), read in the statement that
# changes the run's status.
STARTED_RUN_COLUMNS = (
    RUNS.c.id,
    RUNS.c.schedule_id,
    RUNS.c.task_type,
    RUNS.c.system_task,
    RUNS.c.triggered_by,
    RUNS.c.scheduled_for,
    RUNS.c.attempt,
    RUNS.c.schedule_name,
    _run_config.label("config"),
    RUNS.c.config_override,
    RUNS.c.time_limit_s,
    _schedule_max_attempts.label("max_attempts"),
    _schedule_retry_base_delay_ms.label("retry_base_delay_ms"),
)


def started_run(row: Any) -> StartedRun:
    """A ``StartedRun`` from a row of ``STARTED_RUN_COLUMNS``."""
    return StartedRun(
        row.id,
        row.schedule_id,
        row.task_type,
        row.system_task,
        row.triggered_by,
        row.scheduled_for,
        row.attempt,
        row.schedule_name,
        dict(row.config or {}),
        row.config_override,
        row.time_limit_s,
        row.max_attempts,
        row.retry_base_delay_ms,
    )


DELETED_BEFORE_START = "its schedule was deleted before it started"
DISABLED_BEFORE_START = "its schedule was disabled before it started"
WHY_NOT_STARTED = case(
    (_is_orphan, DELETED_BEFORE_START),
    # A disabled schedule starts no new scheduled run; Run Now and backfill still do, as an operator asked.
    (_is_disabled_slot, DISABLED_BEFORE_START),
)


def start_run(runtime: Runtime, history_id: int) -> StartedRun | None:
    """Move a run ``queued -> running`` by compare-and-set: of any number of deliveries, one starts it.

    One statement, its own transaction, decides and records the start, or that the run will never start (its
    schedule deleted or, for a scheduled run, disabled); it touches no schedule row, which claims lock.
    Returns the started run, or None when this delivery has nothing to run.
    """
    now = utcnow()
    parameters = {"history_id": history_id, "now": now, "lease_expires_at": now + runtime.lease}

    def start() -> Any:
        if runtime.on_postgresql:
            with runtime.single_statements.connect() as connection:
                return connection.execute(START, parameters).first()
        with runtime.sessions.begin() as session:  # SQLite takes its write lock with the transaction
            return session.execute(START, parameters).first()

    started = retrying_a_stale_connection(start)
    if started is None:
        _resend_if_early(runtime, history_id, now)
        return None
    if started.status != RunStatus.RUNNING:
        return None
    run = replace(started_run(started), schedule_was_failing=bool(started.failure_streak))
    lateness = _lateness(run, started.due_at, started.jitter_s, now)
    if lateness is not None:
        SLOT_LATENESS.labels(run.triggered_by).observe(max(0.0, lateness.total_seconds()))
    _count_start(run)
    return run


def _lateness(run: StartedRun, due_at: datetime, jitter_s: int | None, now: datetime) -> timedelta | None:
    """How late a first attempt started (``cronwork_slot_lateness_seconds``): a scheduled run after its slot plus
    its jitter (a late claim counts: the run is due then however late its tick came), a backfilled one after it
    was queued (its slot is in the past by design); None for the others (a retry waits for its backoff, a Run
    Now has no slot)."""
    if run.attempt != 1 or run.scheduled_for is None:
        return None
    if run.triggered_by == TriggeredBy.SCHEDULE and run.schedule_id is not None:
        return now - (run.scheduled_for + jitter(run.schedule_id, run.scheduled_for, jitter_s or 0))
    if run.triggered_by == TriggeredBy.BACKFILL:
        return now - due_at
    return None


def _count_start(run: StartedRun) -> None:
    """A run started (its start committed): counted and logged."""
    RUNS_STARTED.labels(run.task_type, run.triggered_by).inc()
    logger.info("run %s started (attempt %s)", run.id, run.attempt, extra=run.log_fields)


# The start's statements are built once: building a statement of this size costs more CPU than running it.
_now = bindparam("now", type_=UTCDateTime())
START = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("history_id"), RUNS.c.status == RunStatus.QUEUED, RUNS.c.due_at <= _now)
    .values(
        status=case(
            (_is_orphan, RunStatus.ABANDONED),
            (_is_disabled_slot, RunStatus.SKIPPED),
            else_=RunStatus.RUNNING,
        ),
        started_at=_now,
        completed_at=case((WHY_NOT_STARTED.is_not(None), _now)),
        error_message=WHY_NOT_STARTED,
        lease_expires_at=case(
            (WHY_NOT_STARTED.is_(None), bindparam("lease_expires_at", type_=UTCDateTime()))
        ),
    )
    .returning(
        RUNS.c.status,
        *STARTED_RUN_COLUMNS,
        RUNS.c.due_at,
        _schedule_jitter_s.label("jitter_s"),
        _schedule_failure_streak.label("failure_streak"),
    )
)


def _resend_if_early(runtime: Runtime, history_id: int, now: datetime) -> None:
    """A start message that came before its run's due time (another host's clock): send it again for then."""
    with runtime.sessions() as session:
        early = _unsent_runs(runtime, session, now, select(RUNS.c.id).where(RUNS.c.id == history_id))
    if history_id in early and (early[history_id].delay_ms or 0) > 0:
        runtime.publisher.publish([early[history_id]])


class RunsInProgress:
    """The runs this process started whose outcome is not recorded yet: what a worker that stops before they
    finish records as interrupted (``shared.healing.abandon_runs``) instead of leaving them to their lease."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, run_id: int) -> Iterator[None]:
        """``run_id`` is in progress for the block."""
        with self._lock:
            self._ids.add(run_id)
        try:
            yield
        finally:
            with self._lock:
                self._ids.discard(run_id)

    def ids(self) -> list[int]:
        """The runs in progress now."""
        with self._lock:
            return sorted(self._ids)


def execute_run(
    runtime: Runtime,
    history_id: int,
    record: Callable[[list[Outcome]], list[bool]] | None = None,
    in_progress: RunsInProgress | None = None,
) -> str | None:
    """Start a queued run, run its handler, and hand its outcome to ``record`` (the worker's completer; by
    default recorded at once), holding the run in ``in_progress`` from its start until its outcome is recorded.
    Returns the final status of this attempt, or None when this delivery had nothing to do."""
    run = start_run(runtime, history_id)
    if run is None:
        return None
    with in_progress.holding(run.id) if in_progress else nullcontext():
        task_type = runtime.task_types.get(run.task_type)
        if task_type is None:
            # Its plugin was uninstalled (or is a demo type, turned off): the run fails, saying so; no retry.
            outcome = Outcome(
                run, RunStatus.FAILED, f"task type {run.task_type!r} is not installed on this worker", 0
            )
        else:
            outcome = _run_handler(runtime, task_type, run)
        (record or (lambda outcomes: record_outcomes(runtime, outcomes)))([outcome])
    return outcome.status


def _run_handler(runtime: Runtime, task_type: TaskType, run: StartedRun) -> Outcome:
    limit_s = time_limit_s(runtime, run.task_type, run.time_limit_s)
    context = RunContext(
        config=reveal_secrets(runtime.settings, task_type, {**run.config, **(run.config_override or {})}),
        run_id=run.id,
        attempt=run.attempt,
        schedule_id=run.schedule_id,
        scheduled_for=run.scheduled_for,
        time_limit_s=limit_s,
        settings=runtime.settings,
    )
    begun = time.monotonic()
    output = error = None
    worth_retrying = True
    try:
        output = task_type.handler(context)
    except TaskFailed as exc:
        error, worth_retrying = str(exc), exc.retry
    except TimeLimitExceeded:  # Dramatiq interrupts the thread with this BaseException at the run's limit
        error = time_limit_exceeded(limit_s)
    except Exception as exc:  # a handler bug is a failed run, not a crashed worker
        error = f"{type(exc).__name__}: {exc}"
    status = RunStatus.FAILED if error else RunStatus.SUCCESS
    hide = hidden_secrets(context.config, task_type)
    return Outcome(
        run,
        status,
        hide(error),
        int((time.monotonic() - begun) * 1000),
        may_retry=status == RunStatus.FAILED and worth_retrying and has_attempts_left(run, task_type),
        output=hide(output),
    )


def has_attempts_left(run: StartedRun, task_type: TaskType) -> bool:
    """Whether a failed attempt of ``run`` may be followed by another: its schedule's ``maxAttempts``, else its
    task type's."""
    return run.attempt < (run.max_attempts or task_type.max_attempts)


LATE = "recorded after it was called abandoned (and retried if it could be)"


def _outcome_row(outcome: Outcome, now: datetime, late: bool = False) -> dict[str, Any]:
    error = "; ".join(part for part in (outcome.error, LATE if late else None) if part) or None
    return {
        "id": outcome.run.id,
        "status": outcome.status,
        "completed_at": now,
        "duration_ms": outcome.duration_ms,
        "error_message": error and error[:ERROR_MESSAGE_CHARS],
        "output": (outcome.output or None) and outcome.output[:OUTPUT_CHARS],
        "lease_expires_at": None,
    }


def record_outcomes(runtime: Runtime, outcomes: list[Outcome]) -> list[bool]:
    """Finish running runs in one transaction, queue the retries of failures that may retry, then dispatch
    those. An outcome that comes after the pump called its run abandoned (its worker was silent past the lease)
    is recorded too, saying it was late; the pump has retried that run already if it could. Returns, per
    outcome, whether it was recorded. This is the completer's batch; a database blip is waited out (the work
    has run, and losing its outcome would leave the run to be called abandoned) for as long as the lease's
    margin allows."""

    def record() -> tuple[list[bool], list[int], set[int]]:
        with runtime.sessions.begin() as session:
            now = utcnow()
            rows = [_outcome_row(outcome, now) for outcome in outcomes]
            finished = set(update_rows(session, RUNS, rows, only_if=IS_RUNNING))
            late = [
                _outcome_row(outcome, now, late=True)
                for outcome in outcomes
                if outcome.run.id not in finished
            ]
            recorded_late = set(update_rows(session, RUNS, late, only_if=IS_ABANDONED)) if late else set()
            retries = [
                retry_row(
                    outcome.run, now, outcome.run.retry_base_delay_ms or runtime.settings.retry_base_delay_ms
                )
                for outcome in outcomes
                if outcome.may_retry and outcome.run.id in finished
            ]
            retry_ids = (
                [row.id for row in insert_ignoring_conflicts(session, RUNS, retries, ())] if retries else []
            )
            record_health(
                session,
                [
                    HealthEvent(outcome.run.schedule_id, outcome.status != RunStatus.SUCCESS, outcome.error)
                    for outcome in outcomes
                    if outcome.run.schedule_id is not None
                    and outcome.run.id in finished
                    and not outcome.may_retry
                    # A success of a schedule that was not failing has no streak to end: most outcomes, and
                    # no write. (Two runs of one schedule finishing apart: a success can miss a failure
                    # recorded after it started; the streak then ends with the schedule's next success.)
                    and (outcome.status != RunStatus.SUCCESS or outcome.run.schedule_was_failing)
                ],
                now,
            )
        return [outcome.run.id in finished | recorded_late for outcome in outcomes], retry_ids, finished

    recorded, retry_ids, finished = _retrying_while_database_is_away(
        record, give_up_after_s=runtime.settings.run_lease_margin_s
    )
    for outcome, was_recorded in zip(outcomes, recorded, strict=True):
        _count_outcome(outcome, was_recorded, late=outcome.run.id not in finished)
    if retry_ids:
        dispatch_runs(
            runtime, f"retries {retry_ids}", select(TaskRunHistory.id).where(TaskRunHistory.id.in_(retry_ids))
        )
    return recorded


def _count_outcome(outcome: Outcome, recorded: bool, late: bool) -> None:
    """An outcome, once its transaction committed: counted (a late one's run was counted abandoned by the
    pump already) and logged."""
    run = outcome.run
    fields = {
        **run.log_fields,
        "status": outcome.status,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error,
        "retried": outcome.may_retry,
    }
    if not recorded:
        logger.warning(
            "run %s: outcome %s not recorded (the run was not running)", run.id, outcome.status, extra=fields
        )
        return
    if late:
        logger.warning("run %s %s, recorded late: %s", run.id, outcome.status, LATE, extra=fields)
        return
    RUNS_FINISHED.labels(run.task_type, run.triggered_by, outcome.status).inc()
    level = logging.INFO if outcome.status == RunStatus.SUCCESS else logging.WARNING
    logger.log(level, "run %s %s in %s ms", run.id, outcome.status, outcome.duration_ms, extra=fields)


# --- Schedule health -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthEvent:
    """A finished run that tells on its schedule's health: a success, or a failure that will not be retried
    (its last attempt failed, or a ``TaskFailed(retry=False)``, or it was abandoned with no attempt left)."""

    schedule_id: int
    failed: bool
    error: str | None


def record_health(session: Session, events: Sequence[HealthEvent], now: datetime) -> None:
    """Write the ``schedule_health`` rows of ``events`` (in the order they finished), inside the caller's
    transaction: a failure adds one to the streak and becomes the last error; a success sets the streak to 0
    (the last error stays: it is history). The streak therefore counts runs that failed for good in a row,
    whatever their trigger, not attempts: a failed attempt that is retried changes nothing.

    A batch's events are folded per schedule first (PostgreSQL refuses to upsert one row twice in a statement).
    A schedule whose last event is a success costs nothing unless it had a streak to end: most outcomes are
    successes of healthy schedules, and a write per run would be a cost on the hottest path for no news. The
    others are upserted: set, after a success in the batch; added to, otherwise. Rows go in schedule order (so
    concurrent batches never deadlock)."""
    folded: dict[int, dict[str, Any]] = {}
    reset: set[int] = set()
    for event in events:
        row = folded.setdefault(
            event.schedule_id,
            {
                "schedule_id": event.schedule_id,
                "failure_streak": 0,
                "last_error": None,
                "last_error_at": None,
            },
        )
        if event.failed:
            row["failure_streak"] += 1
            row["last_error"] = (event.error or "failed")[:ERROR_MESSAGE_CHARS]
            row["last_error_at"] = now
        else:
            row["failure_streak"] = 0
            reset.add(event.schedule_id)
    ended = sorted(schedule_id for schedule_id, row in folded.items() if row["failure_streak"] == 0)
    if ended:
        session.execute(
            update(HEALTH)
            .where(HEALTH.c.schedule_id.in_(ended), HEALTH.c.failure_streak > 0)
            .values(failure_streak=0)
        )
    for after_a_success in (True, False):
        rows = [
            row
            for schedule_id, row in sorted(folded.items())
            if row["failure_streak"] > 0 and (schedule_id in reset) == after_a_success
        ]
        if rows:
            session.execute(_health_upsert(is_postgresql(session), after_a_success), rows)


def _health_upsert(on_postgresql: bool, after_a_success: bool) -> Any:
    statement = (postgresql.insert if on_postgresql else sqlite.insert)(HEALTH)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[HEALTH.c.schedule_id],
        set_={
            "failure_streak": new.failure_streak
            if after_a_success
            else HEALTH.c.failure_streak + new.failure_streak,
            "last_error": func.coalesce(new.last_error, HEALTH.c.last_error),
            "last_error_at": func.coalesce(new.last_error_at, HEALTH.c.last_error_at),
        },
    )


def retry_delay(attempt: int, base_delay_ms: int) -> timedelta:
    """Exponential backoff after failed ``attempt`` (1-based): base, 2x base, 4x base..., capped."""
    return min(timedelta(milliseconds=base_delay_ms * 2 ** (attempt - 1)), RETRY_MAX_DELAY)


def retry_row(failed: StartedRun, now: datetime, base_delay_ms: int) -> dict[str, Any]:
    """The queued row of the attempt after ``failed``: the same slot, config and settings, after the backoff."""
    return {
        "schedule_id": failed.schedule_id,
        "task_type": failed.task_type,
        "system_task": failed.system_task,
        "status": RunStatus.QUEUED,
        "triggered_by": failed.triggered_by,
        "scheduled_for": failed.scheduled_for,
        "queued_at": now,
        "due_at": now + retry_delay(failed.attempt, base_delay_ms),
        "attempt": failed.attempt + 1,
        "config": failed.config,
        "config_override": failed.config_override,
        "time_limit_s": failed.time_limit_s,
        "schedule_name": failed.schedule_name,
    }


def _retrying_while_database_is_away(work: Callable[[], T], give_up_after_s: float) -> T:
    """Do ``work`` through a database blip (a restart, a failover), retrying for up to ``give_up_after_s``."""
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


# --- System tasks --------------------------------------------------------------------------------------------


def run_system_slot(
    runtime: Runtime,
    task_id: str,
    task_type: str,
    slot: datetime,
    work: Callable[[Runtime], str | None],
    in_progress: RunsInProgress | None = None,
) -> str | None:
    """Run one slot of a system cron once, however many beats sent it: the insert of its run is the claim.
    The run is held in ``in_progress`` from its claim until its outcome is recorded, as ``execute_run`` holds
    a task's."""
    now = utcnow()

    def claim_system_slot() -> list[Any]:
        with runtime.sessions.begin() as session:
            return insert_ignoring_conflicts(
                session,
                RUNS,
                [
                    {
                        "task_type": task_type,
                        "system_task": task_id,
                        "status": RunStatus.RUNNING,
                        "triggered_by": TriggeredBy.SYSTEM,
                        "scheduled_for": slot,
                        "queued_at": now,
                        "due_at": slot,
                        "started_at": now,
                        "lease_expires_at": now + runtime.lease,
                        "attempt": 1,
                    }
                ],
                ("system_task", "scheduled_for"),
                index_where=text("triggered_by = 'system'"),
            )

    inserted = retrying_a_stale_connection(claim_system_slot)
    if not inserted:
        logger.info("system task %s slot %s already claimed", task_id, slot.isoformat())
        return None
    run = StartedRun(
        inserted[0].id,
        None,
        task_type,
        task_id,
        TriggeredBy.SYSTEM,
        slot,
        1,
        None,
        {},
        None,
        None,
        None,
        None,
    )
    _count_start(run)
    with in_progress.holding(run.id) if in_progress else nullcontext():
        begun = time.monotonic()
        error = summary = None
        try:
            summary = work(runtime)
            if summary:
                logger.info("system task %s: %s", task_id, summary)
        except TimeLimitExceeded:  # a BaseException: uncaught, the run stayed running until its lease
            error = time_limit_exceeded(runtime.settings.task_time_limit_s)
            logger.warning("system task %s: %s", task_id, error)
        except Exception as exc:
            logger.exception("system task %s failed", task_id)
            error = f"{type(exc).__name__}: {exc}"
        status = RunStatus.FAILED if error else RunStatus.SUCCESS
        duration_ms = int((time.monotonic() - begun) * 1000)
        record_outcomes(runtime, [Outcome(run, status, error, duration_ms, output=summary)])
    return status
