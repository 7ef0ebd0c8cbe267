"""When a schedule runs: one timing class per schedule type, built from a schedule's columns.

The protocol (arming, claiming), the API's preview and every description ask a ``Timing``; none of them looks
at the schedule type. A new kind of schedule is one class here and its entry in ``TIMINGS``.

A slot is computed from the previous *slot*, never from "now", so a chain never drifts; the slots between the
previous one and the first future one are the *missed* slots (nothing ran them), counted, never run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import ClassVar, NamedTuple, Protocol

from typing_extensions import override

from shared.cron import CronSpec, InvalidCron, describe_cron, iter_cron_slots, load_timezone
from shared.models import ScheduleType

MAX_INTERVAL_MS = 366 * 24 * 3600 * 1000
MIN_INTERVAL_MS = 1000
INTERVAL_UNITS = ((86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second"))
CRON_EXPRESSION_MAX_CHARS = 100  # the column width: a longer valid list ("0,1,2,...") is refused, not cut


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


class TimingFields(NamedTuple):
    """The timing columns of a schedule, as values."""

    schedule_type: str
    cron_expression: str | None
    interval_ms: int | None
    timezone: str


class InvalidTiming(ValueError):
    """A timing field holds a value no schedule can run on; ``field`` names the schedule attribute."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class NextSlot:
    """The first slot after "now" that follows a previous slot, and how many slots lie in between."""

    slot: datetime | None  # None: the schedule never runs again
    missed: int


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

    @abstractmethod
    def next_slot(self, previous_slot: datetime, now: datetime) -> NextSlot:
        """The first slot strictly after ``now`` in the chain that ``previous_slot`` belongs to."""

    @property
    @abstractmethod
    def description(self) -> str:
        """When it runs, in words."""

    def upcoming(self, now: datetime) -> Iterator[datetime]:
        """The slots a schedule armed at ``now`` would run, in order."""
        slot = self.first_slot(now)
        while slot is not None:
            yield slot
            slot = self.next_slot(slot, slot).slot


@dataclass(frozen=True)
class CronTiming(Timing):
    """Cron instants in an IANA timezone, by the DST policy of ``shared.cron``."""

    schedule_type: ClassVar[ScheduleType] = ScheduleType.CRON
    own_field: ClassVar[str | None] = "cron_expression"
    depends_on: ClassVar[tuple[str, ...]] = ("cron_expression", "timezone")
    spec: CronSpec
    timezone: str

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
        return cls(spec, columns.timezone)

    @override
    def first_slot(self, now: datetime) -> datetime | None:
        return next(iter_cron_slots(self.spec, self.timezone, now), None)

    @override
    def next_slot(self, previous_slot: datetime, now: datetime) -> NextSlot:
        missed = 0
        for slot in iter_cron_slots(self.spec, self.timezone, previous_slot):
            if slot > now:
                return NextSlot(slot, missed)
            missed += 1
        return NextSlot(None, missed)

    @property
    @override
    def description(self) -> str:
        return describe_cron(self.spec)

    @override
    def upcoming(self, now: datetime) -> Iterator[datetime]:
        return iter_cron_slots(self.spec, self.timezone, now)


@dataclass(frozen=True)
class IntervalTiming(Timing):
    """``anchor + k × interval``: the anchor is one interval after the moment the schedule was armed."""

    schedule_type: ClassVar[ScheduleType] = ScheduleType.INTERVAL
    own_field: ClassVar[str | None] = "interval_ms"
    depends_on: ClassVar[tuple[str, ...]] = ("interval_ms",)  # not the timezone: elapsed time has none
    interval_ms: int

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
        return cls(value)

    @property
    def step(self) -> timedelta:
        """The interval as a timedelta."""
        return timedelta(milliseconds=self.interval_ms)

    @override
    def first_slot(self, now: datetime) -> datetime:
        return now + self.step

    @override
    def next_slot(self, previous_slot: datetime, now: datetime) -> NextSlot:
        periods = 1 if previous_slot >= now else (now - previous_slot) // self.step + 1
        return NextSlot(previous_slot + periods * self.step, periods - 1)

    @property
    @override
    def description(self) -> str:
        """``Every 5 minutes``, ``Every 2 hours``, ``Every 1500 ms``: the largest unit that divides it."""
        for unit_ms, singular in INTERVAL_UNITS:
            if self.interval_ms % unit_ms == 0:
                count = self.interval_ms // unit_ms
                return f"Every {singular}" if count == 1 else f"Every {count} {singular}s"
        return f"Every {self.interval_ms} ms"


@dataclass(frozen=True)
class ManualTiming(Timing):
    """No slots: the schedule runs only when someone presses Run Now."""

    schedule_type: ClassVar[ScheduleType] = ScheduleType.MANUAL

    @classmethod
    @override
    def parse(cls, columns: TimingColumns, allow_seconds: bool = False) -> ManualTiming:
        return cls()

    @override
    def first_slot(self, now: datetime) -> None:
        return None

    @override
    def next_slot(self, previous_slot: datetime, now: datetime) -> NextSlot:
        return NextSlot(None, 0)

    @property
    @override
    def description(self) -> str:
        return "Manual only"


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
            schedule.schedule_type, schedule.cron_expression, schedule.interval_ms, schedule.timezone
        )
    )


@lru_cache(maxsize=4096)
def _stored_timing(fields: TimingFields) -> Timing:
    return parse_timing(fields, allow_seconds=True)


@dataclass(frozen=True)
class CronPreview:
    """What the page shows under a cron expression being typed: its words, the five fields it runs on (a
    macro's expansion) and its next slots; or why it is wrong."""

    valid: bool
    description: str | None
    expanded: str | None
    next_runs: list[datetime]
    error: str | None


def preview_cron(expression: str, timezone: str, after: datetime, count: int) -> CronPreview:
    """The next ``count`` slots of ``expression`` after ``after``, by the rules a saved schedule follows
    (five fields, the DST policy). An unknown ``timezone`` is a ``ValueError``: the caller's input is wrong."""
    load_timezone(timezone)
    try:
        timing = CronTiming.parse(TimingFields(ScheduleType.CRON, expression, None, timezone))
    except InvalidTiming as exc:
        return CronPreview(valid=False, description=None, expanded=None, next_runs=[], error=exc.reason)
    return CronPreview(
        valid=True,
        description=timing.description,
        expanded=timing.spec.expression,
        next_runs=list(islice(timing.upcoming(after), count)),
        error=None,
    )
