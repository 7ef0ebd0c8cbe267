"""Schedule timing (shared/timing.py): each kind's first slot, its next slot after a previous one, the slots
missed in between, the bounds (startAt, endAt) that keep them in a window, its words, and the preview the page
shows while a cron expression is typed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest

from shared.timing import (
    JUST_BEFORE,
    TIMINGS,
    BoundedTiming,
    CronTiming,
    IntervalTiming,
    InvalidTiming,
    ManualTiming,
    Timing,
    TimingFields,
    parse_timing,
    preview_cron,
    timing_of,
)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def interval(interval_ms: int) -> TimingFields:
    return TimingFields("interval", None, interval_ms, "UTC")


def cron(expression: str, timezone: str = "UTC") -> TimingFields:
    return TimingFields("cron", expression, None, timezone)


def bounded(
    columns: TimingFields, start_at: datetime | None = None, end_at: datetime | None = None
) -> Timing:
    return parse_timing(columns._replace(start_at=start_at, end_at=end_at))


ANCHOR = utc(2024, 1, 1, 12)
EVERY_MINUTE = IntervalTiming(60_000)


def following(timing: Timing, previous: datetime, now: datetime) -> tuple[datetime | None, int]:
    """What follows ``previous`` once it ran, at ``now``: its chain's first slot after both (None past its end),
    and how many of its slots after ``previous`` and up to ``now`` passed meanwhile (within its end)."""
    assert isinstance(timing, BoundedTiming)
    slot = next(timing.slots_from(previous, max(previous, now) + JUST_BEFORE), None)
    latest = timing.latest_slot(previous, now)
    return slot, 0 if latest is None else timing.count_slots(previous, latest) - 1


# --- Interval: anchored on the previous slot, never on the run ----------------------------------------------


def test_an_interval_schedule_first_runs_one_interval_after_it_is_armed() -> None:
    assert EVERY_MINUTE.first_slot(ANCHOR) == ANCHOR + timedelta(minutes=1)


def test_the_next_interval_slot_follows_the_previous_slot() -> None:
    assert following(EVERY_MINUTE, ANCHOR, ANCHOR) == (ANCHOR + timedelta(minutes=1), 0)


def test_a_late_run_does_not_push_the_chain() -> None:
    ran_at = ANCHOR + timedelta(seconds=42)  # the run of ANCHOR happened 42 s late

    assert following(EVERY_MINUTE, ANCHOR, ran_at) == (ANCHOR + timedelta(minutes=1), 0)


def test_slots_missed_while_down_are_counted_and_the_chain_resumes_on_its_grid() -> None:
    back_up = ANCHOR + timedelta(minutes=10, seconds=30)

    # Slots at +1 ... +10 min passed while nothing ran; the next is +11 min.
    assert following(EVERY_MINUTE, ANCHOR, back_up) == (ANCHOR + timedelta(minutes=11), 10)


def test_an_interval_slot_exactly_at_now_counts_as_passed() -> None:
    assert following(EVERY_MINUTE, ANCHOR, ANCHOR + timedelta(minutes=3)) == (
        ANCHOR + timedelta(minutes=4),
        3,
    )


def test_an_interval_slot_follows_a_previous_slot_still_in_the_future() -> None:
    early = ANCHOR - timedelta(hours=1)

    assert following(EVERY_MINUTE, ANCHOR, early) == (ANCHOR + timedelta(minutes=1), 0)


def test_the_nth_interval_slot_is_anchor_plus_n_intervals_whatever_the_run_times() -> None:
    timing = IntervalTiming(1500)

    def chain(jitter_s: Iterator[float]) -> Iterator[datetime]:
        slot = ANCHOR
        while True:
            next_slot, missed = following(timing, slot, slot + timedelta(seconds=next(jitter_s)))
            assert next_slot is not None and missed == 0
            slot = next_slot
            yield slot

    jitters = iter([0.0, 0.3, 1.2, 0.0, 0.7] * 200)  # every run late, by less than one interval

    assert list(islice(chain(jitters), 1000)) == [
        ANCHOR + n * timedelta(milliseconds=1500) for n in range(1, 1001)
    ]


@pytest.mark.parametrize("interval_ms", [1000, 60_000, 366 * 24 * 3600 * 1000])
def test_intervals_from_a_second_to_366_days_are_accepted(interval_ms: int) -> None:
    assert parse_timing(interval(interval_ms)) == IntervalTiming(interval_ms)


@pytest.mark.parametrize(
    ("interval_ms", "reason"),
    [
        (999, "must be at least 1000 ms"),
        (0, "must be at least 1000 ms"),
        (366 * 24 * 3600 * 1000 + 1, "must be at most 366 days"),
        (1500.0, "must be a whole number of milliseconds"),
        ("60000", "must be a whole number of milliseconds"),
        (True, "must be a whole number of milliseconds"),
        (None, "is required for an interval schedule"),
    ],
)
def test_intervals_out_of_range_or_not_whole_numbers_are_refused_naming_the_field(
    interval_ms: object, reason: str
) -> None:
    with pytest.raises(InvalidTiming) as refused:
        parse_timing(interval(interval_ms))  # type: ignore[arg-type]

    assert refused.value.field == "interval_ms" and refused.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("interval_ms", "text"),
    [
        (1000, "Every second"),
        (5000, "Every 5 seconds"),
        (90_000, "Every 90 seconds"),
        (60_000, "Every minute"),
        (300_000, "Every 5 minutes"),
        (7_200_000, "Every 2 hours"),
        (86_400_000, "Every day"),
        (366 * 86_400_000, "Every 366 days"),
        (1500, "Every 1500 ms"),
    ],
)
def test_an_interval_is_described_in_its_largest_whole_unit(interval_ms: int, text: str) -> None:
    assert IntervalTiming(interval_ms).description == text


# --- Cron: the next instant after the previous slot, in the schedule's zone --------------------------------


def test_a_cron_schedule_first_runs_at_its_next_instant() -> None:
    timing = parse_timing(cron("0 9 * * *", "Europe/Berlin"))

    # 09:00 in Berlin in January is 08:00 UTC.
    assert timing.first_slot(utc(2024, 1, 1, 8)) == utc(2024, 1, 2, 8)
    assert timing.first_slot(utc(2024, 1, 1, 7, 59)) == utc(2024, 1, 1, 8)


def test_cron_slots_missed_while_down_are_counted() -> None:
    hourly = parse_timing(cron("0 * * * *"))

    found = following(hourly, utc(2024, 1, 1, 9), now=utc(2024, 1, 1, 13, 30))

    assert found == (utc(2024, 1, 1, 14), 4)  # 10:00, 11:00, 12:00 and 13:00 passed


def test_a_yearly_cron_claimed_months_late_runs_next_year_having_missed_nothing() -> None:
    new_year = parse_timing(cron("0 0 1 1 *"))

    assert following(new_year, utc(2024, 1, 1), utc(2024, 6, 1)) == (utc(2025, 1, 1), 0)


def test_the_api_refuses_a_seconds_field_that_stored_test_schedules_may_carry() -> None:
    with pytest.raises(InvalidTiming) as refused:
        parse_timing(cron("0 9 * * * 30"))
    assert refused.value.field == "cron_expression"

    stored = timing_of(cron("0 9 * * * 30"))

    assert stored.first_slot(utc(2024, 1, 1)) == utc(2024, 1, 1, 9, 0, 30)


def test_a_cron_longer_than_its_column_is_refused() -> None:
    every_minute_listed = ",".join(str(minute) for minute in range(60))  # valid, and 169 characters

    with pytest.raises(InvalidTiming, match="at most 100 characters"):
        parse_timing(cron(f"{every_minute_listed} * * * *"))


def test_a_macro_fits_the_column_as_written_and_runs_on_its_expansion() -> None:
    timing = parse_timing(cron("@monthly", "Europe/Berlin"))

    assert isinstance(timing, CronTiming) and timing.spec.expression == "0 0 1 * *"
    assert timing.first_slot(utc(2024, 1, 15)) == utc(2024, 1, 31, 23)  # 1 Feb 00:00 CET


def test_an_unknown_schedule_type_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidTiming) as refused:
        parse_timing(TimingFields("weekly", None, None, "UTC"))

    assert refused.value.field == "schedule_type" and "cron, interval, manual" in refused.value.reason


# --- Manual: no slots -------------------------------------------------------------------------------------


def test_a_manual_schedule_has_no_slots() -> None:
    timing = parse_timing(TimingFields("manual", None, None, "UTC"))

    assert timing == ManualTiming()
    assert (timing.first_slot(ANCHOR), list(timing.upcoming(ANCHOR))) == (None, [])
    assert timing.description == "Manual only"


# --- Bounds: no slot before startAt, none after endAt (both included) -----------------------------------------


def test_a_cron_with_a_future_start_first_runs_at_its_first_instant_at_or_after_the_start() -> None:
    armed = utc(2024, 3, 1)  # 09:00 on 1 to 9 March comes before the start

    assert bounded(cron("0 9 * * *"), start_at=utc(2024, 3, 10, 9)).first_slot(armed) == utc(2024, 3, 10, 9)
    assert bounded(cron("0 9 * * *"), start_at=utc(2024, 3, 10, 9, 0, 1)).first_slot(armed) == utc(
        2024, 3, 11, 9
    )


def test_a_cron_whose_start_has_passed_runs_at_its_next_instant() -> None:
    timing = bounded(cron("0 9 * * *"), start_at=utc(2020, 1, 1))

    assert timing.first_slot(utc(2024, 3, 1, 10)) == utc(2024, 3, 2, 9)


def test_a_cron_runs_at_its_end_and_never_after() -> None:
    timing = bounded(cron("0 9 * * *"), end_at=utc(2024, 3, 3, 9))

    assert list(timing.upcoming(utc(2024, 3, 1))) == [
        utc(2024, 3, 1, 9),
        utc(2024, 3, 2, 9),
        utc(2024, 3, 3, 9),
    ]
    assert following(timing, utc(2024, 3, 3, 9), now=utc(2024, 3, 3, 9)) == (None, 0)
    assert timing.first_slot(utc(2024, 3, 3, 9)) is None


def test_both_bounds_keep_a_cron_to_its_window() -> None:
    timing = bounded(cron("0 */6 * * *"), start_at=utc(2024, 3, 1, 5), end_at=utc(2024, 3, 2, 7))

    assert list(timing.upcoming(utc(2024, 2, 1))) == [
        utc(2024, 3, 1, 6),
        utc(2024, 3, 1, 12),
        utc(2024, 3, 1, 18),
        utc(2024, 3, 2, 0),
        utc(2024, 3, 2, 6),
    ]


def test_a_cron_start_is_read_as_an_instant_whatever_the_zone_of_its_slots() -> None:
    # 09:00 in Berlin is 08:00 UTC in January: a start at 08:30 UTC on the 10th leaves out that day's slot.
    timing = bounded(cron("0 9 * * *", "Europe/Berlin"), start_at=utc(2024, 1, 10, 8, 30))

    assert timing.first_slot(utc(2024, 1, 1)) == utc(2024, 1, 11, 8)


def test_an_interval_with_a_future_start_runs_at_the_start_then_every_interval() -> None:
    timing = bounded(interval(90_000), start_at=utc(2024, 6, 1, 9))

    assert list(islice(timing.upcoming(utc(2024, 5, 31, 12)), 4)) == [
        utc(2024, 6, 1, 9),
        utc(2024, 6, 1, 9, 1, 30),
        utc(2024, 6, 1, 9, 3),
        utc(2024, 6, 1, 9, 4, 30),
    ]


def test_an_interval_armed_after_its_start_keeps_to_the_grid_of_its_start() -> None:
    timing = bounded(interval(3_600_000), start_at=utc(2024, 6, 1, 9, 15))

    assert timing.first_slot(utc(2024, 6, 1, 12, 40)) == utc(2024, 6, 1, 13, 15)  # 09:15 + 4 hours
    assert timing.first_slot(utc(2024, 6, 1, 13, 15)) == utc(2024, 6, 1, 14, 15)  # strictly after now


def test_an_interval_runs_at_its_end_and_never_after() -> None:
    timing = bounded(interval(60_000), start_at=ANCHOR, end_at=ANCHOR + timedelta(minutes=3))

    assert list(timing.upcoming(ANCHOR - timedelta(hours=1))) == [
        ANCHOR,
        ANCHOR + timedelta(minutes=1),
        ANCHOR + timedelta(minutes=2),
        ANCHOR + timedelta(minutes=3),
    ]


def test_an_interval_without_a_start_but_with_an_end_is_anchored_when_armed() -> None:
    timing = bounded(interval(60_000), end_at=ANCHOR + timedelta(seconds=90))

    assert list(timing.upcoming(ANCHOR)) == [ANCHOR + timedelta(minutes=1)]


def test_slots_missed_past_the_end_are_not_slots_and_the_chain_ends() -> None:
    hourly = bounded(cron("0 * * * *"), end_at=utc(2024, 1, 1, 12, 30))
    every_minute = bounded(interval(60_000), end_at=ANCHOR + timedelta(minutes=10, seconds=30))

    # Down from 09:00 to 13:30: 10:00, 11:00 and 12:00 were missed; 13:00 is past the end.
    assert following(hourly, utc(2024, 1, 1, 9), now=utc(2024, 1, 1, 13, 30)) == (None, 3)
    assert following(every_minute, ANCHOR, now=ANCHOR + timedelta(minutes=20)) == (None, 10)
    # Back before the end, the chain goes on.
    assert following(every_minute, ANCHOR, now=ANCHOR + timedelta(minutes=5, seconds=30)) == (
        ANCHOR + timedelta(minutes=6),
        5,
    )


def test_a_timing_past_its_end_says_when_it_ended() -> None:
    timing = bounded(cron("0 9 * * *"), end_at=utc(2026, 12, 31))

    assert timing.first_slot(utc(2027, 1, 5)) is None
    assert timing.why_no_slot(utc(2027, 1, 5)) == "ended at 2026-12-31T00:00:00Z: no slot after its end"


def test_a_timing_whose_end_comes_before_its_next_instant_says_so() -> None:
    timing = bounded(cron("0 9 * * *"), end_at=utc(2026, 12, 31, 8))

    assert timing.why_no_slot(utc(2026, 12, 30, 10)) == "no slot left before its end at 2026-12-31T08:00:00Z"


def test_a_timing_with_a_slot_gives_no_reason_and_a_manual_one_always_does() -> None:
    assert bounded(cron("0 9 * * *"), end_at=utc(2026, 12, 31)).why_no_slot(utc(2026, 12, 1)) is None
    assert ManualTiming().why_no_slot(ANCHOR) == "manual: runs only when asked (Run Now)"


def test_bounds_are_described_after_when_it_runs() -> None:
    hourly = bounded(interval(3_600_000), start_at=utc(2026, 12, 1, 9), end_at=utc(2026, 12, 31))
    mondays = bounded(cron("0 9 * * 1"), end_at=utc(2026, 12, 31, 0, 0, 0, 250_000))

    assert hourly.description == "Every hour, from 2026-12-01T09:00:00Z until 2026-12-31T00:00:00Z"
    assert mondays.description == "At 09:00, only on Monday, until 2026-12-31T00:00:00.250Z"


def test_a_manual_timing_has_no_bounds_to_keep() -> None:
    assert (
        bounded(TimingFields("manual", None, None, "UTC"), ANCHOR, ANCHOR + timedelta(days=1))
        == ManualTiming()
    )


def test_timings_that_differ_only_in_their_bounds_are_not_interchangeable() -> None:
    # The claim shares a next slot between schedules of equal timings: bounds must make them differ.
    ending = interval(5000)._replace(end_at=ANCHOR)

    assert timing_of(interval(5000)) != timing_of(ending)
    assert timing_of(ending) == IntervalTiming(5000, end_at=ANCHOR)


# --- What a timing depends on: an edit of anything else keeps its slots ------------------------------------

OTHER_VALUES = {
    "cron_expression": "30 21 * * *",
    "interval_ms": 90_000,
    "timezone": "Asia/Tokyo",
    "start_at": utc(2030, 1, 1),
    "end_at": utc(2031, 1, 1),
}


@pytest.mark.parametrize(
    "columns",
    [cron("0 9 * * *"), interval(60_000), TimingFields("manual", None, None, "UTC")],
    ids=["cron", "interval", "manual"],
)
def test_a_timing_changes_with_the_fields_it_depends_on_and_with_no_other(columns: TimingFields) -> None:
    timing = parse_timing(columns)

    for field, value in OTHER_VALUES.items():
        edited = parse_timing(columns._replace(**{field: value}))
        assert (edited != timing) == (field in TIMINGS[columns.schedule_type].depends_on), field


def test_an_intervals_slots_do_not_depend_on_its_timezone() -> None:
    assert "timezone" not in IntervalTiming.depends_on
    assert parse_timing(interval(60_000)) == parse_timing(interval(60_000)._replace(timezone="Asia/Tokyo"))


# --- What the page previews ---------------------------------------------------------------------------------


def test_the_preview_lists_the_next_slots_in_utc_and_describes_them() -> None:
    preview = preview_cron("30 8 * * 1-5", "America/New_York", utc(2024, 3, 8, 12), count=3)

    assert preview.valid and preview.error is None
    assert preview.description == "At 08:30, Monday through Friday"
    assert preview.expanded == "30 8 * * 1-5"
    # Fri 8 Mar is EST (UTC-5); from Mon 11 Mar, after the spring change, EDT (UTC-4).
    assert preview.next_runs == [utc(2024, 3, 8, 13, 30), utc(2024, 3, 11, 12, 30), utc(2024, 3, 12, 12, 30)]


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("61 * * * *", "[61 * * * *] is not acceptable, out of range"),
        ("0 0 31 2 *", "never matches a real date"),
        ("0 9 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("@daily 30", "@daily stands alone: a macro takes no other fields"),
    ],
)
def test_the_preview_of_an_invalid_expression_says_why_and_lists_nothing(expression: str, why: str) -> None:
    preview = preview_cron(expression, "UTC", ANCHOR, count=5)

    assert (preview.valid, preview.description, preview.expanded, preview.next_runs) == (
        False,
        None,
        None,
        [],
    )
    assert preview.error is not None and why in preview.error


def test_the_preview_of_a_macro_shows_its_expansion() -> None:
    preview = preview_cron("@Weekly", "Europe/Berlin", utc(2024, 5, 15), count=2)

    assert (preview.valid, preview.description, preview.expanded) == (
        True,
        "At 00:00, only on Sunday",
        "0 0 * * 0",
    )
    assert preview.next_runs == [utc(2024, 5, 18, 22), utc(2024, 5, 25, 22)]  # Sunday 00:00 CEST


def test_the_preview_lists_only_the_slots_within_the_bounds_and_describes_them() -> None:
    preview = preview_cron(
        "0 9 * * *", "UTC", utc(2024, 3, 1), count=5, start_at=utc(2024, 3, 3), end_at=utc(2024, 3, 5, 9)
    )

    assert preview.next_runs == [utc(2024, 3, 3, 9), utc(2024, 3, 4, 9), utc(2024, 3, 5, 9)]
    assert preview.description == "At 09:00, from 2024-03-03T00:00:00Z until 2024-03-05T09:00:00Z"


def test_the_preview_of_reboot_says_why_it_is_refused() -> None:
    preview = preview_cron("@reboot", "UTC", ANCHOR, count=5)

    assert not preview.valid and preview.error is not None and "no such moment" in preview.error


def test_the_preview_refuses_an_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        preview_cron("* * * * *", "Mars/Olympus_Mons", ANCHOR, count=1)


def test_timings_that_are_equal_are_interchangeable() -> None:
    # The claim computes one next slot for every schedule of a minute's burst that shares a timing.
    assert timing_of(cron("*/5 * * * *")) == CronTiming.parse(cron("*/5 * * * *"))
    assert len({timing_of(interval(5000)), IntervalTiming(5000)}) == 1
