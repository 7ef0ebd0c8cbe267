"""When a schedule runs: one timing class per schedule type, built from a schedule's columns.

The protocol (arming, claiming), the API's preview and every description ask a ``Timing``; none of them looks
at the schedule type. A new kind of schedule is one class here and its entry in ``TIMINGS``.

A slot is computed from the previous *slot*, never from "now", so a chain never drifts; the slots between the
previous one and the first future one are the *missed* slots (nothing ran them), counted, never run.

A kind with slots (``BoundedTiming``: cron, interval) carries the schedule's bounds as its own fields, so that
two schedules share a timing (and the claim's next slot) only when their bounds are the same: no slot is before
``start_at`` (an interval's grid starts there: ``start_at + k × interval``), none after ``end_at`` (both
included); past its end a chain has no next slot.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice, takewhile
from typing import ClassVar, NamedTuple, Protocol

from typing_extensions import override

from shared.cron import (
    CronSpec,
    InvalidCron,
    count_cron_slots,
    describe_cron,
    iter_cron_slots,
    load_timezone,
)
from shared.models import DstPolicy, ScheduleType

MAX_INTERVAL_MS = 366 * 24 * 3600 * 1000
MIN_INTERVAL_MS = 1000
INTERVAL_UNITS = ((86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second"))
CRON_EXPRESSION_MAX_CHARS = 100  # the column width: a longer valid list ("0,1,2,...") is refused, not cut
BOUND_FIELDS = ("start_at", "end_at")
# Slots are "strictly after" an instant; the first slot at or after ``start`` is the first after the instant just
# before it (no stored time is finer than a microsecond).
JUST_BEFORE = timedelta(microseconds=1)
DST_POLICIES = tuple(DstPolicy)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The instants a schedule's bounds and a preview may name: slots are searched hours to years past an instant, and
# Python's datetimes end with the year 9999.
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)
INSTANT_RANGE_REASON = "must be from 1900-01-01T00:00:00Z to 9000-01-01T00:00:00Z"


class TimingColumns(Protocol):
    """What a timing is built from: a schedule row, or the columns a claim reads of one."""

    @property
    def schedule_type(self) -> str:
        """cron, interval or manual."""

    @property
    def cron_expression(self) -> str | None:
        """The cron expression of a cron schedule."""

    @property
    def interval_ms(self) -> int | None:
        """The interval of an interval schedule."""

    @property
    def timezone(self) -> str:
        """The IANA zone its cron instants are read in."""

    @property
    def start_at(self) -> datetime | None:
        """No slot before it (None: unbounded)."""

    @property
    def end_at(self) -> datetime | None:
        """No slot after it (None: unbounded)."""

    @property
    def dst_policy(self) -> str:
        """once or both: how a fixed-hour cron slot runs in an hour a fall-back night repeats."""


class TimingFields(NamedTuple):
    """The timing columns of a schedule, as values."""

    schedule_type: str
    cron_expression: str | None
    interval_ms: int | None
    timezone: str
    start_at: datetime | None = None
    end_at: datetime | None = None
    dst_policy: str = "once"


class InvalidTiming(ValueError):
    """A timing field holds a value no schedule can run on; ``field`` names the schedule attribute."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Timing(ABC):
    """The slots of one kind of schedule. ``own_field`` is the schedule attribute only this kind uses;
    ``depends_on`` the attributes its slots are computed from: an edit of any other leaves them as they are."""

    schedule_type: ClassVar[ScheduleType]
    own_field: ClassVar[str | None] = None
    depends_on: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def parse(cls, columns: TimingColumns, allow_seconds: bool = False) -> Timing:
        """The timing of ``columns``; ``InvalidTiming`` naming the field and the reason when it cannot run.
        The timezone, which every schedule carries, is the caller's to check."""

    @abstractmethod
    def first_slot(self, now: datetime) -> datetime | None:
        """The slot a schedule armed at ``now`` waits for (None: it only runs when asked)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """When it runs, in words."""

    @abstractmethod
    def why_no_slot(self, now: datetime) -> str | None:
        """Why a schedule of this timing armed at ``now`` has no slot, in words; None when it has one."""

    @abstractmethod
    def upcoming(self, now: datetime) -> Iterator[datetime]:
        """The slots a schedule armed at ``now`` would run, in order."""


def instant_text(instant: datetime) -> str:
    """An instant as the wire writes it, ISO 8601 in UTC with a ``Z`` (milliseconds only when it has any)."""
    timespec = "milliseconds" if instant.microsecond else "seconds"
    return instant.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


class BoundedTiming(Timing):
    """A kind with slots, between the schedule's bounds: none before ``start_at``, none after ``end_at`` (both
    included when set). Each kind says where its slots fall, unbounded (``_first_slot``, ``_chain_from``) and
    from a start (``_first_slot_from``); this class keeps them within the bounds, once for every kind."""

    start_at: datetime | None
    end_at: datetime | None

    @abstractmethod
    def _first_slot(self, now: datetime) -> datetime | None:
        """The first slot strictly after ``now``, as if unbounded."""

    @abstractmethod
    def _first_slot_from(self, start: datetime, now: datetime) -> datetime | None:
        """The first slot at or after ``start`` and strictly after ``now``, as if unbounded after ``start``."""

    @abstractmethod
    def _chain_from(self, first: datetime, since: datetime) -> Iterator[datetime]:
        """The slots of the chain ``first`` belongs to (``first`` one of them) at or after both, in order, as if
        unbounded."""

    def slots_from(self, first: datetime, since: datetime) -> Iterator[datetime]:
        """The slots of ``first``'s chain at or after ``first`` and ``since``, in order, up to the end."""
        return takewhile(lambda slot: not self._is_past_end(slot), self._chain_from(first, since))

    def count_slots(self, first: datetime, last: datetime) -> int:
        """How many slots of ``first``'s chain lie from ``first`` to ``last``, both included."""
        return sum(1 for _slot in takewhile(lambda slot: slot <= last, self.slots_from(first, first)))

    def latest_slot(self, first: datetime, until: datetime) -> datetime | None:
        """The last slot of ``first``'s chain at or before ``until`` (None: ``first`` is after it). Searched
        backwards from ``until`` over a doubling span, so it costs the slots of about one gap, not of the chain."""
        if first > until:
            return None
        span = timedelta(minutes=1)
        while True:
            since = max(first, until - span)
            found = None
            for slot in takewhile(lambda slot: slot <= until, self.slots_from(first, since)):
                found = slot
            if found is not None or since == first:
                return found
            span *= 2

    @override
    def first_slot(self, now: datetime) -> datetime | None:
        slot = self._first_slot_from(self.start_at, now) if self.start_at else self._first_slot(now)
        return None if slot is None or self._is_past_end(slot) else slot

    @override
    def upcoming(self, now: datetime) -> Iterator[datetime]:
        first = self.first_slot(now)
        return self.slots_from(first, first) if first else iter(())

    @override
    def why_no_slot(self, now: datetime) -> str | None:
        if self.first_slot(now) is not None:
            return None
        if self.end_at is None:
            return "no slot after now"
        if self.end_at <= now:
            return f"ended at {instant_text(self.end_at)}: no slot after its end"
        return f"no slot left before its end at {instant_text(self.end_at)}"

    def _is_past_end(self, slot: datetime) -> bool:
        return self.end_at is not None and slot > self.end_at

    def _with_bounds(self, words: str) -> str:
        """``words`` (when it runs) followed by its bounds, if any: ``Every hour, from ... until ...``."""
        bounds = [
            f"{word} {instant_text(bound)}"
            for word, bound in (("from", self.start_at), ("until", self.end_at))
            if bound is not None
        ]
        return ", ".join([words, " ".join(bounds)]) if bounds else words


@dataclass(frozen=True)
class CronTiming(BoundedTiming):
    """Cron instants in an IANA timezone, by the DST policy of ``shared.cron``."""

    schedule_type: ClassVar[ScheduleType] = ScheduleType.CRON
    own_field: ClassVar[str | None] = "cron_expression"
    depends_on: ClassVar[tuple[str, ...]] = ("cron_expression", "timezone", "dst_policy", *BOUND_FIELDS)
    spec: CronSpec
    timezone: str
    start_at: datetime | None = None
    end_at: datetime | None = None
    repeated_twice: bool = False  # the schedule's DST choice ``both``

    def _slots_after(self, after: datetime) -> Iterator[datetime]:
        return iter_cron_slots(self.spec, self.timezone, after, self.repeated_twice)

    @classmethod
    @override
    def parse(cls, columns: TimingColumns, allow_seconds: bool = False) -> CronTiming:
        expression = columns.cron_expression or ""
        try:
            spec = CronSpec.parse(expression, allow_seconds=allow_seconds)
        except InvalidCron as exc:
            raise InvalidTiming("cron_expression", str(exc)) from None
        # The column keeps the expression as written (a macro unexpanded), its spaces tidied.
        if len(" ".join(expression.split())) > CRON_EXPRESSION_MAX_CHARS:
            raise InvalidTiming("cron_expression", f"must be at most {CRON_EXPRESSION_MAX_CHARS} characters")
        try:
            load_timezone(columns.timezone)
        except ValueError as exc:
            raise InvalidTiming("timezone", str(exc)) from None
        if columns.dst_policy not in DST_POLICIES:
            raise InvalidTiming("dst_policy", f"must be one of {', '.join(DST_POLICIES)}")
        both = columns.dst_policy == DstPolicy.BOTH
        return cls(spec, columns.timezone, columns.start_at, columns.end_at, both)

    @override
    def _first_slot(self, now: datetime) -> datetime | None:
        return next(self._slots_after(now), None)

    @override
    def _first_slot_from(self, start: datetime, now: datetime) -> datetime | None:
        return self._first_slot(max(now, start - JUST_BEFORE))

    @property
    @override
    def description(self) -> str:
        return self._with_bounds(describe_cron(self.spec))

    @override
    def upcoming(self, now: datetime) -> Iterator[datetime]:
        after = max(now, self.start_at - JUST_BEFORE) if self.start_at else now
        return takewhile(lambda slot: not self._is_past_end(slot), self._slots_after(after))

    @override
    def _chain_from(self, first: datetime, since: datetime) -> Iterator[datetime]:
        return self._slots_after(max(first, since) - JUST_BEFORE)  # every cron instant is in the chain

    @override
    def count_slots(self, first: datetime, last: datetime) -> int:
        """Counted in time that grows with the range's days, not its slots (a claim counts a paused month of a
        minutely schedule inside its transaction); none after ``end_at``."""
        until = min(last, self.end_at) if self.end_at else last
        return count_cron_slots(self.spec, self.timezone, first, until, self.repeated_twice)


@dataclass(frozen=True)
class IntervalTiming(BoundedTiming):
    """``anchor + k × interval``: the anchor is ``start_at`` when the schedule has one (its first slot is its
    start, or the first of that grid after the moment it was armed), else one interval after that moment."""

    schedule_type: ClassVar[ScheduleType] = ScheduleType.INTERVAL
    own_field: ClassVar[str | None] = "interval_ms"
    # Not the timezone: elapsed time has none.
    depends_on: ClassVar[tuple[str, ...]] = ("interval_ms", *BOUND_FIELDS)
    interval_ms: int
    start_at: datetime | None = None
    end_at: datetime | None = None

    @classmethod
    @override
    def parse(cls, columns: TimingColumns, allow_seconds: bool = False) -> IntervalTiming:
        value = columns.interval_ms
        if value is None:
            raise InvalidTiming("interval_ms", "is required for an interval schedule")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTiming("interval_ms", "must be a whole number of milliseconds")
        if value < MIN_INTERVAL_MS:
            raise InvalidTiming("interval_ms", f"must be at least {MIN_INTERVAL_MS} ms")
        if value > MAX_INTERVAL_MS:
            raise InvalidTiming("interval_ms", f"must be at most 366 days ({MAX_INTERVAL_MS} ms)")
        return cls(value, columns.start_at, columns.end_at)

    @property
    def step(self) -> timedelta:
        """The interval as a timedelta."""
        return timedelta(milliseconds=self.interval_ms)

    @override
    def _first_slot(self, now: datetime) -> datetime:
        return now + self.step

    @override
    def _first_slot_from(self, start: datetime, now: datetime) -> datetime:
        if start > now:
            return start
        return start + ((now - start) // self.step + 1) * self.step  # the grid from the start, past now

    @override
    def _chain_from(self, first: datetime, since: datetime) -> Iterator[datetime]:
        skipped = max(0, -((first - since) // self.step))  # ceil((since - first) / step) periods
        slot = first + skipped * self.step
        while True:
            yield slot
            slot += self.step

    @override
    def count_slots(self, first: datetime, last: datetime) -> int:
        return 0 if last < first else (last - first) // self.step + 1

    @override
    def latest_slot(self, first: datetime, until: datetime) -> datetime | None:
        until = min(until, self.end_at) if self.end_at else until
        return None if first > until else first + ((until - first) // self.step) * self.step

    @property
    @override
    def description(self) -> str:
        """``Every 5 minutes``, ``Every 2 hours``, ``Every 1500 ms``: the largest unit that divides it; then its
        bounds, if any."""
        return self._with_bounds(self._every())

    def _every(self) -> str:
        for unit_ms, singular in INTERVAL_UNITS:
            if self.interval_ms % unit_ms == 0:
                count = self.interval_ms // unit_ms
                return f"Every {singular}" if count == 1 else f"Every {count} {singular}s"
        return f"Every {self.interval_ms} ms"


@dataclass(frozen=True)
class ManualTiming(Timing):
    """No slots: the schedule runs only when someone presses Run Now. Bounds, which bound slots, change
    nothing (Run Now runs when asked), so they are not part of it."""

    schedule_type: ClassVar[ScheduleType] = ScheduleType.MANUAL

    @classmethod
    @override
    def parse(cls, columns: TimingColumns, allow_seconds: bool = False) -> ManualTiming:
        return cls()

    @override
    def first_slot(self, now: datetime) -> None:
        return None

    @override
    def upcoming(self, now: datetime) -> Iterator[datetime]:
        return iter(())

    @property
    @override
    def description(self) -> str:
        return "Manual only"

    @override
    def why_no_slot(self, now: datetime) -> str:
        return "manual: runs only when asked (Run Now)"


TIMINGS: dict[str, type[Timing]] = {
    kind.schedule_type: kind for kind in (CronTiming, IntervalTiming, ManualTiming)
}


def parse_timing(columns: TimingColumns, allow_seconds: bool = False) -> Timing:
    """The timing of schedule values about to be stored; ``InvalidTiming`` naming the field that is wrong.

    ``allow_seconds`` admits a sixth (seconds) cron field: tests and demos use it, the API never does.
    """
    kind = TIMINGS.get(columns.schedule_type)
    if kind is None:
        raise InvalidTiming("schedule_type", f"must be one of {', '.join(TIMINGS)}")
    return kind.parse(columns, allow_seconds)


def timing_of(schedule: TimingColumns) -> Timing:
    """The timing of a stored schedule (valid when stored; it may carry a seconds field). Cached: a minute's
    burst of schedules that share a timing parses it once."""
    return _stored_timing(
        TimingFields(
            schedule.schedule_type,
            schedule.cron_expression,
            schedule.interval_ms,
            schedule.timezone,
            schedule.start_at,
            schedule.end_at,
            schedule.dst_policy or DstPolicy.ONCE,  # a row not yet flushed has no column defaults
        )
    )


@lru_cache(maxsize=4096)
def _stored_timing(fields: TimingFields) -> Timing:
    return parse_timing(fields, allow_seconds=True)


def jitter(schedule_id: int, slot: datetime, jitter_s: int) -> timedelta:
    """How long after ``slot`` its run starts: from 0 to ``jitter_s`` seconds (in whole milliseconds), the same
    for the same schedule and slot on every host and after every restart (a hash, not a random draw), so a
    redelivered tick or a retried claim starts it at the same moment, and the preview shows the real one."""
    if jitter_s <= 0:
        return timedelta(0)
    # The slot to the millisecond, as the wire shows it: a client computes the same offset from what it reads.
    slot_ms = (slot - EPOCH) // timedelta(milliseconds=1)
    digest = hashlib.blake2b(f"{schedule_id}:{slot_ms}".encode(), digest_size=8).digest()
    return timedelta(milliseconds=int.from_bytes(digest, "big") % (jitter_s * 1000 + 1))


@dataclass(frozen=True)
class CronPreview:
    """What the page shows under a cron expression being typed: its words, the five fields it runs on (a
    macro's expansion) and its next slots; or why it is wrong."""

    valid: bool
    description: str | None
    expanded: str | None
    next_runs: list[datetime]
    starts_at: (
        list[datetime] | None
    )  # each slot's run start, its jitter added (None: jitter with no schedule)
    error: str | None


def preview_cron(
    expression: str,
    timezone: str,
    after: datetime,
    count: int,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    dst_policy: str = DstPolicy.ONCE,
    jitter_s: int = 0,
    schedule_id: int | None = None,
) -> CronPreview:
    """The next ``count`` slots of ``expression`` after ``after`` (and within ``start_at`` and ``end_at``, when
    given), by the rules a saved schedule follows (five fields, the DST policy and choice), and when each run
    starts with ``jitter_s`` (known for a ``schedule_id``: an offset is fixed per schedule and slot). An unknown
    ``timezone`` is a ``ValueError``: the caller's input is wrong."""
    load_timezone(timezone)
    try:
        timing = CronTiming.parse(
            TimingFields(ScheduleType.CRON, expression, None, timezone, start_at, end_at, dst_policy)
        )
    except InvalidTiming as exc:
        return CronPreview(False, None, None, [], None, exc.reason)
    slots = list(islice(timing.upcoming(after), count))
    if jitter_s and schedule_id is None:
        starts_at = None
    else:
        starts_at = [slot + jitter(schedule_id or 0, slot, jitter_s) for slot in slots]
    return CronPreview(True, timing.description, timing.spec.expression, slots, starts_at, None)
