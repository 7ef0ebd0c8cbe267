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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
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
