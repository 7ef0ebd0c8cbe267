"""The scheduling core (shared/cron.py): which instants a schedule's slots are, under Vixie cron's DST policy.

Transitions used below (2024):
- Europe/Berlin: spring 31 Mar 02:00 CET -> 03:00 CEST; fall 27 Oct 03:00 CEST -> 02:00 CET.
- America/New_York: spring 10 Mar 02:00 EST -> 03:00 EDT; fall 3 Nov 02:00 EDT -> 01:00 EST.
- Australia/Lord_Howe (a 30-minute shift): fall 7 Apr 02:00 +11 -> 01:30 +10:30; spring 6 Oct 02:00 -> 02:30.
- America/Santiago: spring 8 Sep 00:00 -04 -> 01:00 -03 (midnight itself does not exist).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

import pytest

from shared.cron import CronSpec, InvalidCron, describe_cron, iter_cron_slots, load_timezone

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
