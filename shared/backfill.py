"""Backfill: run each slot of a past window that has no run yet, once.

A backfill computes a schedule's slots in a window by its timing, inserts one queued run per slot with
``triggered_by = 'backfill'``, and dispatches them. The unique ``(schedule, slot, attempt)`` index covers
scheduled and backfilled runs alike (``SLOT_RUNS``), so a slot that already has a run (its tick claimed it,
or an earlier backfill did) is left alone, and a tick that comes for a slot a backfill ran finds it taken: a
slot runs once, whichever made its run. The chain of slots and its tick are not touched.

Which slots a window holds:

- a cron schedule: its instants in its zone, by the DST policy, from ``from`` to ``to`` (both included);
- an interval schedule: its grid, ``anchor + k × interval``, anchored on its ``startAt`` when it has one (its
  grid starts there), else on its armed slot (``next_run_at``), else, while it is disabled, on the last slot
  its chain claimed, else, when it never ran, on ``from``. Without a start, a re-arm (an edit of the interval,
  a disable and enable) moves the grid, so a window before the last re-arm is read on the current grid, whose
  instants the old runs do not share: they are not recognised as that window's runs;
- a manual schedule has none: a backfill of one is refused.

A schedule's ``startAt``/``endAt`` bound its slots here too. The window must be in the past and no older than
the history's retention: older runs may have been deleted, and the ledger could no longer tell a slot that
ran from one that did not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice, takewhile

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared.audit import PROCESS, Actor, jsonable, record
from shared.db import insert_ignoring_conflicts, utcnow
from shared.models import SLOT_RUNS, AuditAction, TaskRunHistory, TaskSchedule, TriggeredBy
from shared.protocol import RUNS, SCHEDULED_RUN_KEY, dispatch_runs, slot_run_row
from shared.runtime import Runtime
from shared.schedules import ValidationFailed
from shared.timing import JUST_BEFORE, IntervalTiming, ManualTiming, Timing, timing_of


@dataclass(frozen=True)
class Backfill:
    """What a backfill did: how many slots its window held, and the runs it queued (one per slot that had
    none), by id."""

    slots: int
    runs: list[int]

    @property
    def queued(self) -> int:
        """Runs queued: the slots that had no run."""
        return len(self.runs)

    @property
    def already_run(self) -> int:
        """Slots left alone: each already had a run (scheduled or backfilled, whatever its outcome)."""
        return self.slots - len(self.runs)


def backfill(
    runtime: Runtime,
    session: Session,
    schedule_id: int,
    from_: datetime,
    to: datetime,
    actor: Actor = PROCESS,
) -> Backfill | None:
    """Queue one run for each slot of ``schedule_id`` in ``[from_, to]`` (UTC, past) that has no run yet, then
    dispatch them; enabled or not (like Run Now: an operator asked for them). ``ValidationFailed`` naming the
    field (``from_``, ``to``, ``schedule_type``) when the window cannot be backfilled or holds more than
    ``BACKFILL_MAX_SLOTS`` slots; nothing is stored then. The runs name ``actor`` as who asked for them, and
    the audit trail records the backfill. None when no such schedule."""
    now = utcnow()
    with session.begin():
        schedule = session.get(TaskSchedule, schedule_id)
        if schedule is None:
            return None
        timing = timing_of(schedule)
        _check_window(runtime, timing, from_, to, now)
        slots = _slots_in_window(session, schedule, timing, from_, to, runtime.settings.backfill_max_slots)
        inserted = insert_ignoring_conflicts(
            session,
            RUNS,
            [
                {**slot_run_row(schedule, TriggeredBy.BACKFILL, slot, now), "requested_by": actor.name}
                for slot in slots
            ],
            SCHEDULED_RUN_KEY,
            index_where=text(SLOT_RUNS),
        )
        detail = {
            "from": jsonable(from_),
            "to": jsonable(to),
            "slots": len(slots),
            "queued": len(inserted),
        }
        record(session, actor, AuditAction.BACKFILL, schedule, detail=detail)
    runs = [row.id for row in sorted(inserted, key=lambda row: row.scheduled_for)]
    if runs:
        dispatch_runs(
            runtime,
            f"schedule {schedule_id}: {len(runs)} backfilled run(s)",
            select(TaskRunHistory.id).where(TaskRunHistory.id.in_(runs)),
        )
    return Backfill(len(slots), runs)


def _check_window(runtime: Runtime, timing: Timing, from_: datetime, to: datetime, now: datetime) -> None:
    errors: dict[str, list[str]] = {}
    if isinstance(timing, ManualTiming):
        errors["schedule_type"] = ["a manual schedule has no slots to backfill (Run Now runs it)"]
    if from_ >= to:
        errors["from_"] = ["must be before to"]
    retention = timedelta(days=runtime.settings.history_retention_days)
    if from_ < now - retention:
        errors.setdefault("from_", []).append(
            f"must be within the history's retention ({runtime.settings.history_retention_days:g} days, "
            "HISTORY_RETENTION_DAYS): older runs may have been deleted, so whether a slot ran is not known"
        )
    if to > now:
        errors["to"] = [
            "must not be in the future: a backfill runs past slots, the schedule runs the next ones"
        ]
    if errors:
        raise ValidationFailed(errors)


def _slots_in_window(
    session: Session, schedule: TaskSchedule, timing: Timing, from_: datetime, to: datetime, most: int
) -> list[datetime]:
    """The schedule's slots in ``[from_, to]`` within its own bounds; ``ValidationFailed`` naming ``to`` when
    there are more than ``most``."""
    first = max(from_, schedule.start_at) if schedule.start_at else from_
    last = min(to, schedule.end_at) if schedule.end_at else to
    if isinstance(timing, IntervalTiming):
        candidates = _grid(timing, _interval_anchor(session, schedule, from_), first)
    else:
        # A timing's slots are "strictly after" an instant, and the window includes its first one.
        candidates = timing.upcoming(first - JUST_BEFORE)
    slots = list(islice(takewhile(lambda slot: slot <= last, candidates), most + 1))
    if len(slots) > most:
        raise ValidationFailed(
            {
                "to": [
                    f"the window holds more than {most} slots, the most one backfill may cover "
                    f"(BACKFILL_MAX_SLOTS); its first {most} end at {_wire_time(slots[most - 1])}"
                ]
            }
        )
    return slots


def _interval_anchor(session: Session, schedule: TaskSchedule, from_: datetime) -> datetime:
    """A slot of the interval's current grid: its start (``startAt``), where its grid begins; else its armed
    slot; else the last slot its chain claimed (it is disabled); else, when it never ran, ``from_``."""
    if schedule.start_at is not None:
        return schedule.start_at
    if schedule.next_run_at is not None:
        return schedule.next_run_at
    last_claimed = session.scalar(
        select(TaskRunHistory.scheduled_for)
        .where(
            TaskRunHistory.schedule_id == schedule.id,
            TaskRunHistory.triggered_by == TriggeredBy.SCHEDULE,
        )
        .order_by(TaskRunHistory.id.desc())
        .limit(1)
    )
    return last_claimed or from_


def _grid(timing: IntervalTiming, anchor: datetime, first: datetime) -> Iterator[datetime]:
    """``anchor + k × interval``, from its first instant at or after ``first``, in order."""
    periods = -((anchor - first) // timing.step)  # ceil((first - anchor) / step), either side of the anchor
    slot = anchor + periods * timing.step
    while True:
        yield slot
        slot += timing.step


def _wire_time(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
