"""The scheduling core: a schedule's slots, in UTC, under Vixie cron's DST policy.

A slot is computed from the previous *slot*, never from "now", so a chain never drifts.

DST policy (as Vixie cron):
- a fixed-hour spec (hour field not starting with ``*``) whose wall time falls in a spring-forward gap runs
  once, at the first instant after the gap;
- a fixed-hour spec whose wall time repeats on a fall-back night runs once, at its first occurrence (a schedule
  may choose ``both``: at each occurrence);
- a wildcard-hour spec (``*``, ``*/2``) follows real elapsed time: it skips wall times that do not exist and
  runs in both occurrences of a repeated hour.
Day-of-month and day-of-week combine with OR when both are restricted; Sunday is 0 or 7.

The macros Vixie cron and Kubernetes CronJobs accept (``@hourly``, ``@daily``/``@midnight``, ``@weekly``,
``@monthly``, ``@yearly``/``@annually``, in any case) stand for five fields and follow the same policy as those
fields: ``@hourly`` is a wildcard-hour spec, the others fixed-hour. The schedule keeps the macro as written.

croniter is used on *naive wall-clock* times, where it is pure calendar arithmetic; mapping wall times to UTC
instants is done here, once, so the policy above lives in one place.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left, bisect_right
from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from itertools import takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

# The largest DST shift in tzdata today (Antarctica/Troll: +00 <-> +02). Wall-clock order and real order can
# only disagree within this distance of a backward transition.
MAX_DST_SHIFT = timedelta(hours=2)
_PROBE_STEP = timedelta(minutes=15)


# The five fields each macro stands for, as Vixie cron and Kubernetes expand them.
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Macros other crons know that have no slots here, and why.
REFUSED_MACROS = {
    "@reboot": "@reboot runs when a machine's cron daemon starts, and a scheduler shared by many machines has no "
    "such moment: use a manual schedule and Run Now",
    "@every": "@every is not cron: use an interval schedule",
}


class InvalidCron(ValueError):
    """The expression is not a cron expression this scheduler can run; the message says why."""


@cache
def all_timezones() -> tuple[str, ...]:
    """The IANA zone names a schedule may carry, sorted."""
    return tuple(sorted(name for name in available_timezones() if "/" in name or name == "UTC"))


def load_timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name; ``ValueError`` naming it when unknown."""
    if not isinstance(name, str) or name not in all_timezones():
        raise ValueError(f"unknown IANA timezone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {name!r}") from None


@dataclass(frozen=True)
class CronSpec:
    """A validated cron expression: 5 fields, or 6 with a trailing seconds field when allowed. ``expression``
    is what runs: a macro's five fields, not the macro."""

    expression: str
    has_seconds: bool

    @property
    def is_wildcard_hour(self) -> bool:
        """Whether the hour field starts with ``*`` (the DST policy follows real time for these)."""
        return self.expression.split()[1].startswith("*")

    @classmethod
    def parse(cls, expression: str, allow_seconds: bool = False) -> CronSpec:
        """Validate ``expression``; raise ``InvalidCron`` with a reason a person can act on."""
        if not isinstance(expression, str) or not expression.strip():
            raise InvalidCron("a cron expression is required")
        fields = expression.split()
        if fields[0].startswith("@"):
            return cls(_expand_macro(fields), has_seconds=False)
        expected = "5 or 6" if allow_seconds else "5"
        if len(fields) not in ((5, 6) if allow_seconds else (5,)):
            raise InvalidCron(
                f"expected {expected} fields (minute hour day-of-month month day-of-week), got {len(fields)}"
            )
        normalised = " ".join(fields)
        try:
            iterator = croniter(normalised, datetime(2000, 1, 1), day_or=True)
        except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
            raise InvalidCron(f"not a valid cron expression: {exc}") from None
        try:
            # croniter searches decades ahead before giving up, so this catches specs such as "0 0 31 2 *".
            iterator.get_next(datetime)
        except CroniterBadDateError:
            raise InvalidCron("the expression never matches a real date") from None
        return cls(normalised, has_seconds=len(fields) == 6)


def _expand_macro(fields: list[str]) -> str:
    """The five fields of a macro written alone (in any case, as Kubernetes accepts it)."""
    macro = fields[0].lower()
    if macro in REFUSED_MACROS:
        raise InvalidCron(REFUSED_MACROS[macro])
    if macro not in CRON_MACROS:
        raise InvalidCron(f"unknown macro {fields[0]!r}: use one of {', '.join(CRON_MACROS)}, or five fields")
    if len(fields) > 1:
        raise InvalidCron(f"{fields[0]} stands alone: a macro takes no other fields")
    return CRON_MACROS[macro]


def describe_cron(spec: CronSpec) -> str:
    """English, 24-hour text for the expression, e.g. ``At 09:00, Monday through Friday``."""
    options = Options()
    options.locale_code = "en_US"
    options.use_24hour_time_format = True
    expression = spec.expression
    if spec.has_seconds:  # croniter puts seconds last, cron-descriptor first.
        fields = expression.split()
        expression = " ".join([fields[5], *fields[:5]])
    return str(ExpressionDescriptor(expression, options).get_description())


def _utc_offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _gap_end(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first real instant after the spring-forward gap that swallows the naive ``wall`` time."""
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # read with the offset after the gap: too early
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # read with the offset before: too late
    after_offset = _utc_offset(zone, high)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _utc_offset(zone, middle) == after_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _instants_for_wall_time(
    spec: CronSpec, zone: ZoneInfo, wall: datetime, repeated_twice: bool
) -> list[datetime]:
    """The UTC instants at which the naive ``wall`` time runs, by the DST policy (``repeated_twice``: a
    fixed-hour wall time that a fall-back night repeats runs at both occurrences)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
    if not exists:  # spring-forward gap
        return [] if spec.is_wildcard_hour else [_gap_end(zone, wall)]
    if spec.is_wildcard_hour or repeated_twice:  # repeated hour: real time passes through it twice
        return [first.astimezone(UTC), second.astimezone(UTC)]
    return [first.astimezone(UTC)]


def _offsets_near(zone: ZoneInfo, instant: datetime, direction: int) -> list[timedelta]:
    """UTC offsets sampled from ``instant`` to MAX_DST_SHIFT later (direction 1) or earlier (-1)."""
    steps = int(MAX_DST_SHIFT / _PROBE_STEP)
    return [_utc_offset(zone, instant + direction * k * _PROBE_STEP) for k in range(steps + 1)]


def iter_cron_slots(
    spec: CronSpec, timezone: str, after: datetime, repeated_twice: bool = False
) -> Iterator[datetime]:
    """Yield the slots strictly after ``after`` (an aware datetime), in UTC, strictly increasing;
    ``repeated_twice``: the ``both`` choice for a fixed-hour time that a fall-back night repeats."""
    zone = load_timezone(timezone)
    after = after.astimezone(UTC)
    # A wall time up to one backward shift earlier than after's own wall time can still be a later instant.
    start_wall = after.astimezone(zone).replace(tzinfo=None) - (
        _utc_offset(zone, after) - min(_offsets_near(zone, after, 1))
    )
    walls = croniter(spec.expression, start_wall, day_or=True)
    pending: list[datetime] = []
    frontier = start_wall
    last_yielded = after
    while True:
        # Pop only when no wall time still to come can map to an earlier instant than the heap's smallest.
        while pending:
            candidate = pending[0]
            # A later wall time maps to an earlier instant only after a backward shift: wait that much longer.
            needed_frontier = candidate.astimezone(zone).replace(tzinfo=None) + (
                max(_offsets_near(zone, candidate, -1)) - _utc_offset(zone, candidate)
            )
            if frontier < needed_frontier:
                break
            heapq.heappop(pending)
            if candidate > last_yielded:
                last_yielded = candidate
                yield candidate
        try:
            frontier = walls.get_next(datetime)
        except CroniterBadDateError:
            return
        for instant in _instants_for_wall_time(spec, zone, frontier, repeated_twice):
            heapq.heappush(pending, instant)


# --- Counting slots: arithmetic on plain stretches, iteration only around offset changes ---------------------
#
# Away from a change of the zone's UTC offset every wall time exists once, so the slots in a stretch of constant
# offset are exactly the wall times there that match the spec, one instant each: their number is (the matching
# dates) x (the matching times of day). The wall times a change repeats run at instants less than its shift away
# from it, and those it swallows run at the change itself or not at all, so the slots within its shift (and a
# margin) of a change are counted by iterating them: the DST policy lives in ``iter_cron_slots`` alone.

# Offsets are sampled this far apart, and a change is located between two samples that differ. Since 1900 no zone
# changes its offset twice within 95 hours (tzdata 2025b and 2026f), so no change can hide between two samples.
_OFFSET_SAMPLE_STEP = timedelta(days=1)
_SAMPLE_REACH = timedelta(days=2)  # changes this far outside the range still reach it (Samoa skipped a day)
_EXACT_MARGIN = timedelta(minutes=15)  # iterated beyond a change's shift on each side, as a safety margin
_JUST_AFTER = timedelta(microseconds=1)
_RANDOM_VALUE = re.compile(r"(?:^|,)r", re.IGNORECASE)  # croniter's "R": a value drawn anew by each iterator


@dataclass(frozen=True)
class _CountPlan:
    """What counting needs of a spec: its times of day, sorted, and its dates, told from croniter's expanded
    fields, or by croniter itself (``croniter_dates``) for ``#`` and ``W``."""

    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    months: frozenset[int] | None  # None: every month
    month_days: frozenset[int] | None  # None: every day of the month
    last_month_day: bool  # "L" in the day-of-month field
    weekdays: frozenset[int] | None  # 0 = Sunday; None: every day of the week
    day_or: bool  # both day fields restricted: a date matches either (croniter's day_or=True)
    croniter_dates: str | None  # five fields that run at midnight on the spec's dates

    @property
    def times_per_day(self) -> int:
        return len(self.hours) * len(self.minutes) * len(self.seconds)

    def times_up_to(self, second_of_day: int) -> int:
        """How many of its times of day are at or before ``second_of_day`` (-1 to 86,399)."""
        if second_of_day < 0:
            return 0
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        count = bisect_left(self.hours, hour) * len(self.minutes) * len(self.seconds)
        if hour in self.hours:
            count += bisect_left(self.minutes, minute) * len(self.seconds)
            if minute in self.minutes:
                count += bisect_right(self.seconds, second)
        return count

    def _matches(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        by_month_day = (
            self.month_days is None
            or day.day in self.month_days
            or (self.last_month_day and day.day == monthrange(day.year, day.month)[1])
        )
        by_weekday = self.weekdays is None or day.isoweekday() % 7 in self.weekdays
        return (by_month_day or by_weekday) if self.day_or else (by_month_day and by_weekday)

    def dates_between(self, first: date, last: date) -> int:
        """How many dates from ``first`` to ``last`` (both included) it runs on."""
        if last < first:
            return 0
        if self.croniter_dates is not None:
            start = datetime.combine(first, time()) - timedelta(minutes=1)
            dates = croniter(self.croniter_dates, start, day_or=True)
            count = 0
            try:
                while dates.get_next(datetime).date() <= last:
                    count += 1
            except CroniterBadDateError:  # no date left
                pass
            return count
        if self.months is None and self.month_days is None and self.weekdays is None:
            return (last - first).days + 1
        count = 0
        month_start = first
        while month_start <= last:
            month_end = min(last, month_start.replace(day=monthrange(month_start.year, month_start.month)[1]))
            if self.months is None or month_start.month in self.months:
                count += sum(
                    self._matches(month_start + timedelta(days=k))
                    for k in range(month_end.day - month_start.day + 1)
                )
            month_start = month_end + timedelta(days=1)
        return count

    def walls_between(self, first: datetime, last: datetime) -> int:
        """How many naive wall times from ``first`` to ``last`` (both included) match the spec."""
        if last < first:
            return 0
        # Matching wall times are whole seconds: count from the start rounded up to the end rounded down.
        before_start = self.times_up_to(
            first.hour * 3600 + first.minute * 60 + first.second + (1 if first.microsecond else 0) - 1
        )
        up_to_end = self.times_up_to(last.hour * 3600 + last.minute * 60 + last.second)
        first_day, last_day = first.date(), last.date()
        if first_day == last_day:
            return self.dates_between(first_day, first_day) * max(0, up_to_end - before_start)
        return (
            self.dates_between(first_day, first_day) * (self.times_per_day - before_start)
            + self.dates_between(first_day + timedelta(days=1), last_day - timedelta(days=1))
            * self.times_per_day
            + self.dates_between(last_day, last_day) * up_to_end
        )


def _field_values(field: list[int | str], full: range) -> tuple[int, ...] | None:
    """The sorted values of an expanded time field (all of ``full`` when it holds ``*``, as croniter reads
    ``*,5``); None for anything else."""
    if "*" in field:
        return tuple(full)
    if not all(isinstance(value, int) for value in field):
        return None
    return tuple(sorted(int(value) for value in field))


def _date_values(field: list[int | str]) -> frozenset[int] | None:
    """The values of an expanded date field; None when it holds ``*`` (unrestricted, as croniter reads it)."""
    return None if "*" in field else frozenset(int(value) for value in field if value != "l")


@lru_cache(maxsize=4096)
def _count_plan(expression: str) -> _CountPlan | None:
    """The plan for a valid expression; None when counting must iterate (croniter's random ``R`` values)."""
    fields = expression.split()
    if any(_RANDOM_VALUE.search(field) for field in fields):
        return None
    parsed = croniter(expression, datetime(2000, 1, 1), day_or=True)
    expanded: list[list[int | str]] = [list(field) for field in parsed.expanded]
    minutes = _field_values(expanded[0], range(60))
    hours = _field_values(expanded[1], range(24))
    seconds = _field_values(expanded[5], range(60)) if len(expanded) > 5 else (0,)
    if minutes is None or hours is None or seconds is None:
        return None
    month_days, months, weekdays = expanded[2], expanded[3], expanded[4]
    own_test = (
        not parsed.nth_weekday_of_month
        and not parsed.nearest_weekday
        and all(isinstance(value, int) or value in ("*", "l") for value in month_days)
        and all(isinstance(value, int) or value == "*" for value in [*months, *weekdays])
    )
    if not own_test:  # "#", "W", or "L" among weekdays (croniter's "last #"): croniter tells the dates
        return _CountPlan(
            hours=hours,
            minutes=minutes,
            seconds=seconds,
            months=None,
            month_days=None,
            last_month_day=False,
            weekdays=None,
            day_or=False,
            croniter_dates=f"0 0 {' '.join(fields[2:5])}",
        )
    return _CountPlan(
        hours=hours,
        minutes=minutes,
        seconds=seconds,
        months=_date_values(months),
        month_days=_date_values(month_days),
        last_month_day="l" in month_days,
        weekdays=_date_values(weekdays),
        day_or="*" not in month_days and "*" not in weekdays,
        croniter_dates=None,
    )


def _offset_changes(zone: ZoneInfo, first: datetime, last: datetime) -> list[tuple[datetime, datetime]]:
    """Around each change of the zone's UTC offset that can reach [first, last], the span whose slots are
    iterated: the change's shift and a margin on each side."""
    spans = []
    sample = first - _SAMPLE_REACH
    offset = _utc_offset(zone, sample)
    while sample < last + _SAMPLE_REACH:
        following = sample + _OFFSET_SAMPLE_STEP
        following_offset = _utc_offset(zone, following)
        if following_offset != offset:
            low, high = sample, following  # the change is after low and at or before high
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if _utc_offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            reach = abs(following_offset - offset) + _EXACT_MARGIN
            spans.append((low - reach, high + reach))
        sample, offset = following, following_offset
    return spans


def _count_by_iteration(
    spec: CronSpec, timezone: str, first: datetime, last: datetime, repeated_twice: bool
) -> int:
    slots = iter_cron_slots(spec, timezone, first - _JUST_AFTER, repeated_twice)
    return sum(1 for _slot in takewhile(lambda slot: slot <= last, slots))


def count_cron_slots(
    spec: CronSpec, timezone: str, first: datetime, last: datetime, repeated_twice: bool = False
) -> int:
    """How many slots ``iter_cron_slots`` yields from ``first`` to ``last`` (aware datetimes, both included), in
    time that grows with the days of the range, not its slots: only the slots within a few hours of a change of
    the zone's offset are iterated (all of them for croniter's random ``R`` values)."""
    zone = load_timezone(timezone)
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    if last < first:
        return 0
    plan = _count_plan(spec.expression)
    if plan is None:
        return _count_by_iteration(spec, timezone, first, last, repeated_twice)
    count = 0
    cursor = first  # everything before it is counted
    for span_start, span_end in _offset_changes(zone, first, last):
        span_start, span_end = max(span_start, cursor), min(span_end, last)
        if span_end < span_start:
            continue
        if cursor < span_start:  # a stretch of one offset: its matching wall times
            offset = _utc_offset(zone, cursor)
            count += plan.walls_between(
                (cursor + offset).replace(tzinfo=None),
                (span_start - _JUST_AFTER + offset).replace(tzinfo=None),
            )
        count += _count_by_iteration(spec, timezone, span_start, span_end, repeated_twice)
        cursor = span_end + _JUST_AFTER
    if cursor <= last:
        offset = _utc_offset(zone, cursor)
        count += plan.walls_between(
            (cursor + offset).replace(tzinfo=None), (last + offset).replace(tzinfo=None)
        )
    return count
