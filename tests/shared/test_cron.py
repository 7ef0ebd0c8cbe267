"""The scheduling core (shared/cron.py): which instants a schedule's slots are, under Vixie cron's DST policy.

Transitions used below (2024):
- Europe/Berlin: spring 31 Mar 02:00 CET -> 03:00 CEST; fall 27 Oct 03:00 CEST -> 02:00 CET.
- America/New_York: spring 10 Mar 02:00 EST -> 03:00 EDT; fall 3 Nov 02:00 EDT -> 01:00 EST.
- Australia/Lord_Howe (a 30-minute shift): fall 7 Apr 02:00 +11 -> 01:30 +10:30; spring 6 Oct 02:00 -> 02:30.
- America/Santiago: spring 8 Sep 00:00 -04 -> 01:00 -03 (midnight itself does not exist).
"""

from __future__ import annotations

import random
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

import pytest

from shared.cron import (
    CronSpec,
    InvalidCron,
    count_cron_slots,
    describe_cron,
    iter_cron_slots,
    load_timezone,
)
from shared.timing import BoundedTiming, CronTiming, TimingFields

BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def next_cron_slot(spec: CronSpec, timezone: str, after: datetime) -> datetime:
    return next(iter_cron_slots(spec, timezone, after))


def slots(expression: str, timezone: str, after: datetime, count: int) -> list[datetime]:
    return list(islice(iter_cron_slots(CronSpec.parse(expression), timezone, after), count))


def wall_times(expression: str, timezone: str, after: datetime, count: int) -> list[str]:
    """The slots as the zone's clock shows them, with their UTC offset: ``03:00+02:00``."""
    zone = ZoneInfo(timezone)
    return [slot.astimezone(zone).strftime("%H:%M%z") for slot in slots(expression, timezone, after, count)]


def gaps(instants: list[datetime]) -> list[timedelta]:
    return [later - earlier for earlier, later in zip(instants, instants[1:], strict=False)]


# --- Spring forward: a fixed-hour slot in the gap runs at the first instant after it ------------------------


@pytest.mark.parametrize(
    ("timezone", "after", "expected"),
    [
        (
            BERLIN,
            utc(2024, 3, 30, 12),
            [utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)],
        ),  # 03:00 CEST, then 02:30
        (
            NEW_YORK,
            utc(2024, 3, 9, 12),
            [utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30)],
        ),  # 03:00 EDT, then 02:30
    ],
    ids=["berlin", "new-york"],
)
def test_fixed_hour_slot_in_the_spring_gap_runs_at_the_first_instant_after_it(
    timezone: str, after: datetime, expected: list[datetime]
) -> None:
    assert slots("30 2 * * *", timezone, after, 2) == expected
    assert expected[0].astimezone(ZoneInfo(timezone)).strftime("%H:%M") == "03:00"


def test_fixed_hour_slot_at_the_start_of_the_gap_runs_when_the_gap_ends() -> None:
    assert wall_times("0 2 * * *", BERLIN, utc(2024, 3, 30, 12), 2) == ["03:00+0200", "02:00+0200"]


def test_several_fixed_slots_in_one_gap_run_once_after_it() -> None:
    # 02:00, 02:15, 02:30 and 02:45 all fall in the gap: one run at 03:00, not four.
    assert wall_times("*/15 2 * * *", BERLIN, utc(2024, 3, 30, 12), 2) == ["03:00+0200", "02:00+0200"]


def test_a_slot_after_the_gap_is_not_moved() -> None:
    assert slots("30 3 * * *", BERLIN, utc(2024, 3, 30, 12), 1) == [utc(2024, 3, 31, 1, 30)]  # 03:30 CEST


# --- Fall back: a fixed-hour slot whose wall time repeats runs once, at its first occurrence ----------------


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    [
        ("30 2 * * *", BERLIN, utc(2024, 10, 26, 12), [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]),
        ("30 1 * * *", NEW_YORK, utc(2024, 11, 2, 12), [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]),
    ],
    ids=["berlin", "new-york"],
)
def test_fixed_hour_slot_on_a_repeated_wall_time_runs_once_at_the_first_occurrence(
    expression: str, timezone: str, after: datetime, expected: list[datetime]
) -> None:
    assert slots(expression, timezone, after, 2) == expected


def test_fixed_hour_slot_is_not_rerun_after_the_clock_goes_back() -> None:
    # Asked from between the two occurrences of 01:30 in New York, the next slot is the following day's.
    between = utc(2024, 11, 3, 5, 45)  # 01:45 EDT; 01:30 EST (06:30 UTC) is still to come on the wall clock

    assert slots("30 1 * * *", NEW_YORK, between, 1) == [utc(2024, 11, 4, 6, 30)]


def test_every_minute_of_a_fixed_hour_runs_once_on_a_fall_back_night() -> None:
    runs = slots("*/30 1 * * *", NEW_YORK, utc(2024, 11, 3, 4), 3)

    assert [run.astimezone(ZoneInfo(NEW_YORK)).strftime("%H:%M%z") for run in runs] == [
        "01:00-0400",
        "01:30-0400",
        "01:00-0500",
    ]
    assert runs[2].date() == date(2024, 11, 4)  # the repeated 01:00 EST of 3 Nov is skipped


# --- A wildcard-hour spec follows real elapsed time ---------------------------------------------------------


def test_hourly_spec_skips_the_hour_that_does_not_exist() -> None:
    runs = slots("0 * * * *", BERLIN, utc(2024, 3, 30, 23, 30), 3)

    assert [run.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M") for run in runs] == ["01:00", "03:00", "04:00"]
    assert gaps(runs) == [timedelta(hours=1)] * 2


def test_half_hourly_spec_skips_the_wall_times_that_do_not_exist() -> None:
    assert wall_times("*/30 * * * *", NEW_YORK, utc(2024, 3, 10, 6), 4) == [
        "01:30-0500",
        "03:00-0400",
        "03:30-0400",
        "04:00-0400",
    ]


def test_hourly_spec_runs_in_both_occurrences_of_the_repeated_hour() -> None:
    runs = slots("0 * * * *", NEW_YORK, utc(2024, 11, 3, 4, 30), 3)

    assert [run.astimezone(ZoneInfo(NEW_YORK)).strftime("%H:%M%z") for run in runs] == [
        "01:00-0400",
        "01:00-0500",
        "02:00-0500",
    ]
    assert gaps(runs) == [timedelta(hours=1)] * 2


def test_half_hourly_spec_runs_every_real_half_hour_through_fall_back() -> None:
    runs = slots("*/30 * * * *", BERLIN, utc(2024, 10, 26, 23, 45), 5)

    assert [run.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M%z") for run in runs] == [
        "02:00+0200",
        "02:30+0200",
        "02:00+0100",
        "02:30+0100",
        "03:00+0100",
    ]
    assert gaps(runs) == [timedelta(minutes=30)] * 4


def test_stepped_hour_spec_counts_as_wildcard() -> None:
    # "*/2" starts with "*": it follows real time, so on the fall-back night 02:00 runs twice.
    assert wall_times("0 */2 * * *", BERLIN, utc(2024, 10, 26, 22), 3) == [
        "02:00+0200",
        "02:00+0100",
        "04:00+0100",
    ]


# --- Lord Howe's 30-minute shift ----------------------------------------------------------------------------


def test_lord_howe_fixed_slot_in_the_half_hour_gap_runs_when_it_ends() -> None:
    assert wall_times("15 2 * * *", LORD_HOWE, utc(2024, 10, 5), 2) == ["02:30+1100", "02:15+1100"]


def test_lord_howe_fixed_slot_on_the_repeated_half_hour_runs_once() -> None:
    assert slots("45 1 * * *", LORD_HOWE, utc(2024, 4, 6), 2) == [
        utc(2024, 4, 6, 14, 45),
        utc(2024, 4, 7, 15, 15),
    ]


def test_lord_howe_quarter_hourly_spec_skips_the_gap() -> None:
    runs = slots("*/15 * * * *", LORD_HOWE, utc(2024, 10, 5, 15), 3)

    assert [run.astimezone(ZoneInfo(LORD_HOWE)).strftime("%H:%M%z") for run in runs] == [
        "01:45+1030",
        "02:30+1100",
        "02:45+1100",
    ]
    assert gaps(runs) == [timedelta(minutes=15)] * 2


def test_lord_howe_quarter_hourly_spec_repeats_the_doubled_half_hour() -> None:
    runs = slots("*/15 * * * *", LORD_HOWE, utc(2024, 4, 6, 14), 6)

    assert [run.astimezone(ZoneInfo(LORD_HOWE)).strftime("%H:%M%z") for run in runs] == [
        "01:15+1100",
        "01:30+1100",
        "01:45+1100",
        "01:30+1030",
        "01:45+1030",
        "02:00+1030",
    ]
    assert gaps(runs) == [timedelta(minutes=15)] * 5


# --- Fields: day-of-month OR day-of-week, Sunday, impossible dates, field count -----------------------------


def test_day_of_month_and_day_of_week_combine_with_or() -> None:
    runs = slots("0 0 13 * 5", "UTC", utc(2024, 9, 1), 5)  # the 13th, and every Friday

    assert [run.date() for run in runs] == [
        date(2024, 9, 6),
        date(2024, 9, 13),
        date(2024, 9, 20),
        date(2024, 9, 27),
        date(2024, 10, 4),
    ]
    assert slots("0 0 13 * 5", "UTC", utc(2024, 1, 12, 1), 1) == [utc(2024, 1, 13)]  # a Saturday the 13th


def test_day_of_month_alone_restricts_only_the_day_of_month() -> None:
    assert [run.date() for run in slots("0 0 13 * *", "UTC", utc(2024, 9, 1), 2)] == [
        date(2024, 9, 13),
        date(2024, 10, 13),
    ]


def test_day_of_week_alone_restricts_only_the_day_of_week() -> None:
    assert [run.date() for run in slots("0 0 * * 5", "UTC", utc(2024, 9, 1), 5)] == [  # every Friday
        date(2024, 9, 6),
        date(2024, 9, 13),
        date(2024, 9, 20),
        date(2024, 9, 27),
        date(2024, 10, 4),
    ]


def test_an_impossible_day_of_month_is_valid_when_or_ed_with_a_weekday() -> None:
    runs = slots("0 0 31 2 1", "UTC", utc(2025, 1, 1), 4)  # 31 Feb never comes, Mondays in February do

    assert [run.date() for run in runs] == [
        date(2025, 2, 3),
        date(2025, 2, 10),
        date(2025, 2, 17),
        date(2025, 2, 24),
    ]


@pytest.mark.parametrize("sunday", ["0", "7"])
def test_sunday_is_0_or_7(sunday: str) -> None:
    runs = slots(f"0 12 * * {sunday}", BERLIN, utc(2024, 5, 1), 3)

    assert [run.astimezone(ZoneInfo(BERLIN)).date() for run in runs] == [
        date(2024, 5, 5),
        date(2024, 5, 12),
        date(2024, 5, 19),
    ]


def test_a_weekday_range_ending_at_7_includes_sunday() -> None:
    runs = slots("0 12 * * 5-7", "UTC", utc(2024, 5, 1), 3)

    assert [run.strftime("%a") for run in runs] == ["Fri", "Sat", "Sun"]


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 31 4,6,9,11 *"])
def test_a_date_that_never_exists_is_rejected(expression: str) -> None:
    with pytest.raises(InvalidCron, match="never matches a real date"):
        CronSpec.parse(expression)


def test_29_february_is_accepted_and_runs_in_leap_years_only() -> None:
    assert slots("0 0 29 2 *", "UTC", utc(2025, 1, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


@pytest.mark.parametrize(
    ("expression", "count"), [("0 9 * *", 4), ("0 0 9 * * 1", 6), ("* * * * * * *", 7), ("daily", 1)]
)
def test_five_fields_are_required(expression: str, count: int) -> None:
    with pytest.raises(InvalidCron, match=f"expected 5 fields .* got {count}"):
        CronSpec.parse(expression)


def test_six_fields_only_with_allow_seconds_the_sixth_being_seconds() -> None:
    spec = CronSpec.parse("*/5 * * * * 30", allow_seconds=True)

    assert spec.has_seconds
    assert list(islice(iter_cron_slots(spec, "UTC", utc(2024, 1, 1)), 2)) == [
        utc(2024, 1, 1, 0, 0, 30),
        utc(2024, 1, 1, 0, 5, 30),
    ]
    with pytest.raises(InvalidCron, match="expected 5 or 6 fields"):
        CronSpec.parse("* * * * * * *", allow_seconds=True)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "   ",
        "60 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 8",
        "a b c d e",
        "*/0 * * * *",
    ],
)
def test_a_malformed_expression_is_rejected(expression: str) -> None:
    with pytest.raises(InvalidCron):
        CronSpec.parse(expression)


def test_whitespace_is_normalised() -> None:
    assert CronSpec.parse("  0   9 * *\t1 ").expression == "0 9 * * 1"


def test_names_of_months_and_days_are_accepted() -> None:
    assert slots("0 9 * jan mon", "UTC", utc(2024, 1, 1, 12), 1) == [utc(2024, 1, 8, 9)]


# --- Macros: the shorthands Vixie cron and Kubernetes accept ------------------------------------------------

WEDNESDAY_MORNING = utc(2024, 5, 15, 10, 20)  # Wed 15 May 2024


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", [utc(2024, 5, 15, 11), utc(2024, 5, 15, 12), utc(2024, 5, 15, 13)]),
        ("@daily", [utc(2024, 5, 16), utc(2024, 5, 17), utc(2024, 5, 18)]),
        ("@midnight", [utc(2024, 5, 16), utc(2024, 5, 17), utc(2024, 5, 18)]),
        ("@weekly", [utc(2024, 5, 19), utc(2024, 5, 26), utc(2024, 6, 2)]),  # Sundays
        ("@monthly", [utc(2024, 6, 1), utc(2024, 7, 1), utc(2024, 8, 1)]),
        ("@yearly", [utc(2025, 1, 1), utc(2026, 1, 1), utc(2027, 1, 1)]),
        ("@annually", [utc(2025, 1, 1), utc(2026, 1, 1), utc(2027, 1, 1)]),
    ],
)
def test_each_macro_runs_on_the_slots_it_stands_for(macro: str, expected: list[datetime]) -> None:
    assert slots(macro, "UTC", WEDNESDAY_MORNING, 3) == expected


def test_a_macro_runs_at_its_wall_time_in_the_schedules_zone() -> None:
    # Midnight on Sunday in New York (EDT, UTC-4) is 04:00 UTC.
    assert slots("@weekly", NEW_YORK, WEDNESDAY_MORNING, 2) == [utc(2024, 5, 19, 4), utc(2024, 5, 26, 4)]


def test_a_macro_is_its_five_fields_in_any_case() -> None:
    expanded = {CronSpec.parse(macro).expression for macro in ("@daily", "@Daily", "@DAILY", "  @daily ")}

    assert expanded == {"0 0 * * *"}
    assert CronSpec.parse("@weekly") == CronSpec("0 0 * * 0", has_seconds=False)


def test_daily_is_a_fixed_hour_spec_under_the_dst_policy() -> None:
    # Santiago's spring gap swallows midnight itself: @daily runs once, when the gap ends (01:00 -03).
    assert wall_times("@daily", "America/Santiago", utc(2024, 9, 6, 12), 3) == [
        "00:00-0400",
        "01:00-0300",
        "00:00-0300",
    ]


def test_hourly_is_a_wildcard_hour_spec_under_the_dst_policy() -> None:
    # Berlin's fall-back night: real time passes 02:00 twice, and @hourly runs at both.
    assert wall_times("@hourly", BERLIN, utc(2024, 10, 26, 23), 3) == [
        "02:00+0200",
        "02:00+0100",
        "03:00+0100",
    ]


def test_reboot_is_refused_saying_a_scheduler_has_no_such_moment() -> None:
    for written in ("@reboot", "@REBOOT"):
        with pytest.raises(
            InvalidCron, match="@reboot runs when a machine's cron daemon starts.*no such moment"
        ):
            CronSpec.parse(written)


def test_every_is_refused_pointing_at_interval_schedules() -> None:
    with pytest.raises(InvalidCron, match="use an interval schedule"):
        CronSpec.parse("@every 5m")


def test_an_unknown_macro_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(
        InvalidCron, match="unknown macro '@fortnightly': use one of @yearly, @annually, .*@hourly"
    ):
        CronSpec.parse("@fortnightly")


@pytest.mark.parametrize("expression", ["@hourly 30", "@daily 0 0 * * *"])
def test_a_macro_takes_no_other_fields_not_even_seconds(expression: str) -> None:
    with pytest.raises(InvalidCron, match="stands alone: a macro takes no other fields"):
        CronSpec.parse(expression, allow_seconds=True)


def test_a_macro_where_seconds_are_allowed_is_still_its_five_fields() -> None:
    # Stored schedules are read with seconds allowed: a macro there has none.
    assert CronSpec.parse("@hourly", allow_seconds=True) == CronSpec("0 * * * *", has_seconds=False)


# --- Slots: strictly after, in UTC, whatever zone ``after`` is in -------------------------------------------


def test_the_next_slot_is_strictly_after_after() -> None:
    spec = CronSpec.parse("0 9 * * *")

    assert next_cron_slot(spec, "UTC", utc(2024, 1, 1, 9)) == utc(2024, 1, 2, 9)
    assert next_cron_slot(spec, "UTC", utc(2024, 1, 1, 8, 59, 59)) == utc(2024, 1, 1, 9)


def test_slots_are_utc_whatever_zone_after_is_given_in() -> None:
    after = datetime(2024, 6, 1, 10, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 01:30 UTC

    slot = next_cron_slot(CronSpec.parse("0 * * * *"), BERLIN, after)

    assert slot == utc(2024, 6, 1, 2) and slot.utcoffset() == timedelta(0)


def test_an_unknown_timezone_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        load_timezone("Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        next_cron_slot(CronSpec.parse("* * * * *"), "Mars/Olympus_Mons", utc(2024, 1, 1))


YEAR_2024 = (utc(2024, 1, 1), utc(2025, 1, 1))


def slots_in_2024(expression: str, timezone: str) -> list[datetime]:
    start, end = YEAR_2024
    return list(
        takewhile(lambda slot: slot < end, iter_cron_slots(CronSpec.parse(expression), timezone, start))
    )


@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        ("30 2 * * *", BERLIN),
        ("30 1 * * *", NEW_YORK),
        ("0 */2 * * *", LORD_HOWE),
        ("*/20 1-3 * * 0", LORD_HOWE),
        ("0 0 13 * 5", "UTC"),
        ("45 1,2 * * 6,7", NEW_YORK),
    ],
)
def test_slots_strictly_increase_through_a_year(expression: str, timezone: str) -> None:
    runs = slots_in_2024(expression, timezone)

    assert runs and all(earlier < later for earlier, later in zip(runs, runs[1:], strict=False))


@pytest.mark.parametrize(
    ("expression", "timezone", "per_hour"),
    [
        ("0 * * * *", BERLIN, 1),
        ("*/30 * * * *", NEW_YORK, 2),
    ],
)
def test_a_wildcard_hour_spec_runs_once_per_real_interval_through_a_year(
    expression: str, timezone: str, per_hour: int
) -> None:
    runs = slots_in_2024(expression, timezone)

    assert len(runs) == 366 * 24 * per_hour - 1  # every real slot of 2024 but its first instant (not "after")
    assert set(gaps(runs)) == {timedelta(hours=1) / per_hour}


@pytest.mark.parametrize(
    ("expression", "timezone", "wall_time", "moved_to_gap_end"),
    [
        ("30 2 * * *", BERLIN, "02:30", ["2024-03-31 03:00"]),
        ("30 1 * * *", NEW_YORK, "01:30", []),  # 01:30 is never in New York's gap (02:00-03:00)
        ("15 2 * * *", LORD_HOWE, "02:15", ["2024-10-06 02:30"]),
    ],
)
def test_a_fixed_hour_daily_spec_runs_exactly_once_every_local_day_through_a_year(
    expression: str, timezone: str, wall_time: str, moved_to_gap_end: list[str]
) -> None:
    zone = ZoneInfo(timezone)
    local = [run.astimezone(zone) for run in slots_in_2024(expression, timezone)]

    per_day = Counter(run.date() for run in local)
    assert len(per_day) == 366 and set(per_day.values()) == {1}
    assert [run.strftime("%Y-%m-%d %H:%M") for run in local if run.strftime("%H:%M") != wall_time] == (
        moved_to_gap_end
    )


# --- Descriptions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
        ("30 14 * * *", "At 14:30"),
        ("0 0 * * *", "At 00:00"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("0 23 1 * *", "At 23:00, on day 1 of the month"),
        ("@daily", "At 00:00"),
        ("@weekly", "At 00:00, only on Sunday"),
    ],
)
def test_cron_is_described_in_24_hour_english(expression: str, text: str) -> None:
    assert describe_cron(CronSpec.parse(expression)) == text


def test_a_seconds_field_is_described_as_seconds() -> None:
    assert describe_cron(CronSpec.parse("0 9 * * * 30", allow_seconds=True)) == "At 09:00:30"


# --- Counting slots: count_cron_slots is iterating them, only faster ----------------------------------------
#
# Each case lists a spec's slots by brute force over windows, and compares count_cron_slots with that list over
# many ranges in them: across both 2024 transitions, endpoints on slots and between them, first == last, last
# before first, short and long. Windows are short where slots are dense, so the brute force stays cheap.

COUNT_ZONES = (
    "UTC",
    BERLIN,
    NEW_YORK,
    LORD_HOWE,  # a 30-minute shift
    "Antarctica/Troll",  # a 2-hour shift
    "Asia/Kolkata",  # no DST, a half-hour offset
    "America/Santiago",  # changes at midnight
    "America/Havana",  # changes at midnight
)
LONG_WINDOW = (utc(2023, 12, 1), utc(2025, 1, 5))  # both 2024 transitions everywhere, and 29 February


@cache
def offset_changes_2024(timezone: str) -> list[datetime]:
    """The instants (to the minute) in 2024 at which the zone's UTC offset changes, found every 15 minutes."""
    zone = ZoneInfo(timezone)

    def offset(instant: datetime) -> timedelta | None:
        return instant.astimezone(zone).utcoffset()

    changes, instant = [], utc(2024, 1, 1)
    while instant < utc(2025, 1, 1):
        following = instant + timedelta(minutes=15)
        if offset(instant) != offset(following):
            while offset(instant) == offset(instant + timedelta(minutes=1)):
                instant += timedelta(minutes=1)
            changes.append(instant + timedelta(minutes=1))
        instant = following
    return changes


def slots_between(
    spec: CronSpec, timezone: str, first: datetime, last: datetime, repeated_twice: bool
) -> list[datetime]:
    """The slots from ``first`` to ``last``, both included, by iterating them."""
    after = first - timedelta(microseconds=1)
    return list(takewhile(lambda slot: slot <= last, iter_cron_slots(spec, timezone, after, repeated_twice)))


def brute_count(spec: CronSpec, timezone: str, first: datetime, last: datetime, repeated_twice: bool) -> int:
    return len(slots_between(spec, timezone, first, last, repeated_twice))


def count_windows(timezone: str, reach: timedelta | None) -> list[tuple[datetime, datetime]]:
    """``reach`` either side of each 2024 offset change (of 10 March 2024 in a zone without), or the long window."""
    if reach is None:
        return [LONG_WINDOW]
    changes = offset_changes_2024(timezone) or [utc(2024, 3, 10, 1)]
    return [(change - reach, change + reach) for change in changes]


def ranges_in(
    window: tuple[datetime, datetime], listed: list[datetime], rng: random.Random, count: int
) -> list[tuple[datetime, datetime]]:
    """Ranges inside ``window``, whose slots are ``listed``: on slots, between them, around the middle."""
    start, end = window
    middle = start + (end - start) / 2  # the offset change of a short window
    span = (end - start).total_seconds()

    def anywhere() -> datetime:
        return start + timedelta(seconds=rng.uniform(0, span))

    def near_middle() -> datetime:
        return middle + timedelta(seconds=rng.uniform(-6 * 3600, 6 * 3600))

    def on_a_slot() -> datetime:
        return rng.choice(listed) if listed else anywhere()

    def beside_a_slot() -> datetime:
        return on_a_slot() + timedelta(seconds=rng.choice([-1, 1]) * rng.choice([0.000001, 1, 29, 61, 3599]))

    def clipped(instant: datetime) -> datetime:
        return min(max(instant, start), end)

    pickers = [anywhere, near_middle, on_a_slot, beside_a_slot]
    ranges = [(start, end), (start, start), (end, start)]
    if listed:
        ranges += [(listed[0], listed[-1]), (listed[len(listed) // 2],) * 2]
    for _ in range(count):
        first, last = sorted([clipped(rng.choice(pickers)()), clipped(rng.choice(pickers)())])
        ranges.append((first, last))
    ranges.append((clipped(on_a_slot() + timedelta(seconds=1)), clipped(on_a_slot() - timedelta(seconds=1))))
    return ranges


HOUR, DAY = timedelta(hours=1), timedelta(days=1)
# (expression, reach either side of an offset change; None: the long window)
COUNT_SPECS = [
    ("* * * * *", 8 * HOUR),
    ("*/7 * * * *", DAY),
    ("*/20 * * * * *", 2.5 * HOUR),  # a seconds field: minutes 0, 20, 40, every second
    ("*/5 * * * * 30", 12 * HOUR),  # every 5 minutes, at second 30
    ("@hourly", 5 * DAY),
    ("15 */3 * * *", 40 * DAY),
    ("*/15 2 * * *", 10 * DAY),  # several fixed wall times in one gap: one run
    ("0,30 0-3 * * *", 10 * DAY),
    ("0 2,3 * * *", 10 * DAY),  # the gap's run and 03:00 are one instant in Berlin
    ("0 9 * * 1-5", None),
    ("30 2 * * *", 20 * DAY),
    ("30 1 * * *", 20 * DAY),
    ("@daily", None),
    ("59 23 * * *", 20 * DAY),
    ("0 0 31 * *", None),
    ("0 12 1,15 * 5", None),  # the 1st, the 15th, and every Friday
    ("0 0 29 2 *", None),
    ("0 0 1-31 * 1", 20 * DAY),  # a day-of-month list of every day, OR'ed with Mondays: every day
    ("0 0 *,5 * 1", None),  # croniter reads "*,5" as "*": Mondays only
    ("0 0 L * *", None),
    ("0 0 15W * *", None),
    ("0 0 * * 5#2", None),
    ("0 0 * * L5", None),
    ("0 6 * jan-mar,nov sun", None),
]


def may_repeat(spec: CronSpec) -> bool:
    """Whether the ``both`` choice can change the spec's slots here: a fixed hour that a fall-back night of these
    zones repeats (from 22:00 to 03:59)."""
    hours = spec.expression.split()[1]
    return not spec.is_wildcard_hour and any(
        int(hour) in (22, 23, 0, 1, 2, 3) for hour in re.split("[,-]", hours)
    )


# The seconds spec's slots are dense: it runs in the zones whose changes differ most.
SECONDS_ZONES = (BERLIN, LORD_HOWE, "Antarctica/Troll", "America/Santiago")


@pytest.mark.parametrize(
    ("expression", "reach", "timezone"),
    [
        pytest.param(expression, reach, timezone, id=f"{expression} in {timezone}")
        for expression, reach in COUNT_SPECS
        for timezone in (SECONDS_ZONES if expression == "*/20 * * * * *" else COUNT_ZONES)
    ],
)
def test_counting_slots_gives_what_iterating_them_gives(
    expression: str, reach: timedelta | None, timezone: str
) -> None:
    spec = CronSpec.parse(expression, allow_seconds=True)
    rng = random.Random(f"{expression} {timezone}")
    for repeated_twice in (False, True) if may_repeat(spec) else (False,):
        for window in count_windows(timezone, reach):
            start, end = window
            listed = slots_between(spec, timezone, start, end, repeated_twice)
            # Where slots are dense each count iterates many around the offset change: fewer ranges there.
            for first, last in ranges_in(window, listed, rng, 14 if len(listed) < 500 else 3):
                expected = 0 if last < first else bisect_right(listed, last) - bisect_left(listed, first)
                assert count_cron_slots(spec, timezone, first, last, repeated_twice) == expected, (
                    f"{expression} in {timezone} from {first} to {last}, repeated_twice={repeated_twice}"
                )
                if expected <= 10:  # the list above began elsewhere: iterating from first itself agrees
                    assert brute_count(spec, timezone, first, last, repeated_twice) == expected


@pytest.mark.parametrize(
    ("expression", "timezone", "first", "last", "repeated_twice"),
    [
        ("* * * * *", BERLIN, utc(2024, 10, 17, 0, 0, 30), utc(2024, 11, 5, 23, 59, 30), False),  # 20 days
        ("30 2 * * *", BERLIN, utc(2024, 10, 26), utc(2024, 10, 28), True),  # 02:30 runs twice on the 27th
        (
            "30 1 * * *",
            NEW_YORK,
            utc(2024, 11, 3, 5, 45),
            utc(2024, 11, 4, 7),
            False,
        ),  # between its occurrences
        ("0 0 * * *", "America/Santiago", utc(2024, 9, 7), utc(2024, 9, 9, 6), False),  # midnight in the gap
        ("0 * * * *", "Pacific/Apia", utc(2011, 12, 25), utc(2012, 1, 5), False),  # Samoa skipped 30 Dec 2011
        ("30 12 * * *", "Pacific/Apia", utc(2011, 12, 25), utc(2012, 1, 5), False),
        ("* * * * *", "UTC", utc(2024, 5, 1, 12, 0), utc(2024, 5, 1, 12, 0), False),  # first == last, a slot
        ("* * * * *", "UTC", utc(2024, 5, 1, 12, 0, 1), utc(2024, 5, 1, 12, 0, 59), False),  # none inside
        ("0 9 * * *", BERLIN, utc(2024, 5, 2), utc(2024, 5, 1), False),  # last before first
    ],
)
def test_counting_slots_over_a_named_range(
    expression: str, timezone: str, first: datetime, last: datetime, repeated_twice: bool
) -> None:
    spec = CronSpec.parse(expression)

    assert count_cron_slots(spec, timezone, first, last, repeated_twice) == brute_count(
        spec, timezone, first, last, repeated_twice
    )


@pytest.mark.parametrize("days", ["*", "1", "31", "L", "1,L", "10-L", "15W", "*/2", "29", "*,5"])
@pytest.mark.parametrize("months", ["*", "2", "jan-mar,nov"])
@pytest.mark.parametrize("weekdays", ["*", "1", "5-7", "mon-fri", "0,6", "5#2", "L5"])
def test_counting_slots_dates_agree_with_croniter(days: str, months: str, weekdays: str) -> None:
    expression = f"0 12 {days} {months} {weekdays}"
    try:
        spec = CronSpec.parse(expression)
    except InvalidCron:
        return  # a combination croniter refuses, or a date that never comes
    # Two Februaries (a leap one), and November.
    for first, last in [
        (utc(2024, 1, 25), utc(2024, 3, 5)),
        (utc(2025, 1, 25), utc(2025, 3, 5)),
        (utc(2024, 10, 25), utc(2024, 12, 5)),
    ]:
        expected = brute_count(spec, "UTC", first, last, False)
        assert count_cron_slots(spec, "UTC", first, last) == expected, expression


def test_a_minutely_spec_counts_every_minute_of_a_year() -> None:
    spec = CronSpec.parse("* * * * *")

    assert (
        count_cron_slots(spec, "UTC", utc(2023, 1, 1), utc(2024, 1, 1) - timedelta(microseconds=1)) == 525_600
    )
    assert count_cron_slots(spec, BERLIN, utc(2024, 1, 1), utc(2025, 1, 1)) == 366 * 24 * 60 + 1
    # Berlin's 2024: the hour skipped in March and the hour repeated in October cancel out, both ends included.


def test_counting_slots_with_random_values_iterates() -> None:
    # croniter's "R" draws a value for each iterator: no arithmetic, but a count all the same.
    spec = CronSpec.parse("R 9 * * *")

    assert count_cron_slots(spec, BERLIN, utc(2024, 3, 1), utc(2024, 4, 1)) == 31


@pytest.mark.parametrize(
    ("expression", "timezone", "end_at", "dst_policy"),
    [
        ("30 2 * * *", BERLIN, None, "both"),  # 02:30 runs twice on 27 October
        ("30 2 * * *", BERLIN, None, "once"),
        ("*/10 * * * *", NEW_YORK, utc(2024, 11, 3, 6, 5), "once"),  # ends between two slots
        ("*/10 * * * *", NEW_YORK, utc(2024, 11, 3, 6, 0), "once"),  # ends on a slot
        ("0 9 * * 1-5", "UTC", utc(2024, 11, 1, 9), "once"),  # ends on a slot, days before the range does
    ],
)
def test_a_cron_timing_counts_its_slots_as_iterating_them_does(
    expression: str, timezone: str, end_at: datetime | None, dst_policy: str
) -> None:
    # The claim's count of a missed range: within the timing's end, by its DST choice.
    timing = CronTiming.parse(TimingFields("cron", expression, None, timezone, None, end_at, dst_policy))
    first = next(iter_cron_slots(timing.spec, timezone, utc(2024, 10, 20)))
    last = utc(2024, 11, 10)

    assert timing.count_slots(first, last) == BoundedTiming.count_slots(timing, first, last)
    assert timing.count_slots(first, first) == 1
    assert timing.count_slots(first, first - timedelta(seconds=1)) == 0
