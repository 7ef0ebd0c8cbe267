"""A schedule's misfire policy: which of its due slots run now, which are missed, and where its chain goes on.
(Its overlap policy, a question to the database, is the claim's; its jitter, when a run starts, is timing's.)

Slots pass unrun while no worker claims them (workers down, a backlog) or while their schedule is disabled. When a
claim (or an edit, or a resume) finds more than one slot due, or its one slot late by more than the misfire grace,
the schedule's misfire policy decides:

- ``coalesce`` (the default): the latest due slot runs now, however late; the earlier ones are missed;
- ``skip``: the latest due slot runs only if it is late by at most the grace; every other one is missed;
- ``catchUp``: the due slots within the window, oldest first, at most the cap, run now (with the latest, when it
  is on time); the others are missed.

Missed slots are recorded as ranges (first slot, last slot, count), one ledger entry per range however many slots
it covers, and the chain goes on at its first slot after now. A slot late by at most the grace is not a misfire:
under every policy it runs, as if on time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice, takewhile

from shared.models import MisfirePolicy
from shared.timing import JUST_BEFORE, BoundedTiming


@dataclass(frozen=True)
class MisfireRule:
    """A schedule's misfire policy, with a catch-up's cap and window."""

    policy: str = MisfirePolicy.COALESCE
    catch_up_max: int | None = None
    catch_up_window: timedelta | None = None


@dataclass(frozen=True)
class SlotRange:
    """Consecutive slots of a chain, ``first`` to ``last``, ``count`` of them."""

    first: datetime
    last: datetime
    count: int


@dataclass(frozen=True)
class Settlement:
    """The slots to run now (oldest first), the ranges missed, and the chain's next slot (None: it has none)."""

    runs: list[datetime]
    missed: list[SlotRange] = field(default_factory=list)
    next_slot: datetime | None = None


def settle(
    timing: BoundedTiming, first_due: datetime, now: datetime, rule: MisfireRule, grace: timedelta
) -> Settlement:
    """Settle the slots of ``timing``'s chain from ``first_due`` (its armed slot) to ``now`` by ``rule``. When
    only ``first_due`` is due, and on time, this costs two slot lookups: the hot path of every claim."""
    until = max(now, first_due)  # a tick early by a clock's skew still claims its slot
    latest = timing.latest_slot(first_due, until)
    assert latest is not None
    next_slot = next(timing.slots_from(first_due, until + JUST_BEFORE), None)
    latest_on_time = now - latest <= grace
    if latest == first_due and (latest_on_time or rule.policy == MisfirePolicy.COALESCE):
        return Settlement([first_due], [], next_slot)  # the one due slot, on time (or coalesced)
    if rule.policy == MisfirePolicy.COALESCE:
        runs = [latest]
    elif rule.policy == MisfirePolicy.SKIP:
        runs = [latest] if latest_on_time else []
    else:
        runs = _catch_up(timing, first_due, latest, now, rule)
        if latest_on_time and latest not in runs:
            runs.append(latest)
    return Settlement(runs, _gaps(timing, first_due, latest, runs), next_slot)


def _catch_up(
    timing: BoundedTiming, first_due: datetime, latest: datetime, now: datetime, rule: MisfireRule
) -> list[datetime]:
    """The due slots within the window, oldest first, at most the cap."""
    assert rule.catch_up_max is not None and rule.catch_up_window is not None  # validated when stored
    within = timing.slots_from(first_due, now - rule.catch_up_window)
    return list(islice(takewhile(lambda slot: slot <= latest, within), rule.catch_up_max))


def _gaps(timing: BoundedTiming, first: datetime, last: datetime, runs: list[datetime]) -> list[SlotRange]:
    """The ranges of the chain's slots from ``first`` to ``last`` that are not in ``runs`` (slots of it, in
    order)."""
    gaps = []
    start: datetime | None = first
    for run in runs:
        before = timing.latest_slot(first, run - JUST_BEFORE)
        if start is not None and before is not None and start <= before:
            gaps.append(SlotRange(start, before, timing.count_slots(start, before)))
        start = next(timing.slots_from(first, run + JUST_BEFORE), None)
    if start is not None and start <= last:
        gaps.append(SlotRange(start, last, timing.count_slots(start, last)))
    return gaps
