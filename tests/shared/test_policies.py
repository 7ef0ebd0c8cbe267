"""A schedule's policies, unit tier: the misfire policy's settlement of due slots (pure), jitter, the DST choice,
and, through the claim, edits and deletes on the embedded system: the ledger entries each leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import schedules
from shared.db import utcnow
from shared.messaging import TickSlot
from shared.models import RunStatus, TaskSchedule
from shared.policies import MisfireRule, Settlement, SlotRange, settle
from shared.timing import BoundedTiming, TimingFields, jitter, parse_timing, preview_cron
from tests.shared.conftest import Embedded

MINUTE = timedelta(minutes=1)
GRACE = timedelta(seconds=60)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a minutely chain's armed slot


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type,misc]


def timing(**fields: object) -> BoundedTiming:
    values = {"schedule_type": "interval", "cron_expression": None, "interval_ms": 60_000, "timezone": "UTC"}
    values.update(fields)
    parsed = parse_timing(TimingFields(**values))  # type: ignore[arg-type]
    assert isinstance(parsed, BoundedTiming)
    return parsed


EVERY_MINUTE = timing()
CRON_EVERY_MINUTE = timing(schedule_type="cron", cron_expression="* * * * *", interval_ms=None)
COALESCE = MisfireRule()
SKIP = MisfireRule("skip")


def catch_up(cap: int, window: timedelta) -> MisfireRule:
    return MisfireRule("catchUp", cap, window)


# --- The one due slot ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [COALESCE, SKIP, catch_up(3, MINUTE)], ids=["coalesce", "skip", "catchUp"])
@pytest.mark.parametrize("chain", [EVERY_MINUTE, CRON_EVERY_MINUTE], ids=["interval", "cron"])
def test_a_slot_claimed_within_the_grace_runs_under_every_policy(
    rule: MisfireRule, chain: BoundedTiming
) -> None:
    assert settle(chain, T0, T0 + timedelta(seconds=59), rule, GRACE) == Settlement([T0], [], T0 + MINUTE)


def test_skip_runs_nothing_now_for_one_slot_later_than_the_grace() -> None:
    hourly = timing(interval_ms=3_600_000)
    now = T0 + timedelta(minutes=5)
    assert settle(hourly, T0, now, SKIP, GRACE) == Settlement(
        [], [SlotRange(T0, T0, 1)], T0 + timedelta(hours=1)
    )


def test_coalesce_runs_one_slot_later_than_the_grace() -> None:
    hourly = timing(interval_ms=3_600_000)
    assert settle(hourly, T0, T0 + timedelta(minutes=5), COALESCE, GRACE).runs == [T0]


# --- Many slots due --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chain", [EVERY_MINUTE, CRON_EVERY_MINUTE], ids=["interval", "cron"])
def test_coalesce_runs_the_latest_due_slot_and_records_the_rest_as_one_missed_range(
    chain: BoundedTiming,
) -> None:
    now = T0 + 10 * MINUTE + timedelta(seconds=30)  # slots T0 .. T0+10min are due: 11 of them
    assert settle(chain, T0, now, COALESCE, GRACE) == Settlement(
        [T0 + 10 * MINUTE], [SlotRange(T0, T0 + 9 * MINUTE, 10)], T0 + 11 * MINUTE
    )


@pytest.mark.parametrize(
    ("grace", "runs"),
    [(timedelta(seconds=60), [T0 + 10 * MINUTE]), (timedelta(seconds=30), [])],
    ids=["latest-on-time", "latest-late"],
)
def test_skip_runs_the_latest_only_when_it_is_on_time(grace: timedelta, runs: list[datetime]) -> None:
    now = T0 + 10 * MINUTE + timedelta(seconds=45)  # 11 slots due, the latest 45 s ago
    settled = settle(EVERY_MINUTE, T0, now, SKIP, grace)
    last_missed = T0 + (9 if runs else 10) * MINUTE
    assert settled == Settlement(runs, [SlotRange(T0, last_missed, 10 if runs else 11)], T0 + 11 * MINUTE)


def test_catch_up_runs_the_oldest_slots_within_its_window_up_to_its_cap() -> None:
    # Down for an hour and a half, minutely: 91 slots due. The window holds the last 30; the cap runs 5 of them.
    now = T0 + 90 * MINUTE + timedelta(seconds=30)
    settled = settle(EVERY_MINUTE, T0, now, catch_up(5, timedelta(minutes=30)), GRACE)
    first_in_window = T0 + 61 * MINUTE  # now - 30 min = T0 + 60.5 min
    # The latest, on time, runs too.
    assert settled.runs == [first_in_window + k * MINUTE for k in range(5)] + [T0 + 90 * MINUTE]
    assert settled.missed == [
        SlotRange(T0, T0 + 60 * MINUTE, 61),
        SlotRange(T0 + 66 * MINUTE, T0 + 89 * MINUTE, 24),
    ]
    assert settled.next_slot == T0 + 91 * MINUTE
    assert len(settled.runs) + sum(gap.count for gap in settled.missed) == 91, (
        "every due slot accounted for once"
    )


def test_catch_up_with_nothing_in_its_window_records_every_slot_missed() -> None:
    daily = timing(schedule_type="cron", cron_expression="0 3 * * *", interval_ms=None)
    armed = utc(2026, 11, 1, 3)
    now = utc(2026, 11, 4, 12)  # 1, 2, 3 and 4 November at 03:00 passed; the window is the last hour
    settled = settle(daily, armed, now, catch_up(10, timedelta(hours=1)), GRACE)
    assert settled == Settlement([], [SlotRange(armed, utc(2026, 11, 4, 3), 4)], utc(2026, 11, 5, 3))


def test_a_month_of_minutely_slots_is_one_missed_range() -> None:
    now = T0 + timedelta(days=30, seconds=10)
    settled = settle(EVERY_MINUTE, T0, now, COALESCE, GRACE)
    assert settled.runs == [T0 + timedelta(days=30)]
    assert settled.missed == [SlotRange(T0, T0 + timedelta(days=30) - MINUTE, 30 * 24 * 60)]


def test_missed_slots_stop_at_the_end_of_the_bounds() -> None:
    bounded = timing(end_at=T0 + 5 * MINUTE)
    settled = settle(bounded, T0, T0 + 20 * MINUTE, COALESCE, GRACE)
    assert settled == Settlement([T0 + 5 * MINUTE], [SlotRange(T0, T0 + 4 * MINUTE, 5)], None)


# --- Jitter and the DST choice ---------------------------------------------------------------------------------


def test_jitter_is_fixed_per_schedule_and_slot_and_within_its_range() -> None:
    slots = [T0 + k * MINUTE for k in range(200)]
    offsets = [jitter(7, slot, 30) for slot in slots]
    assert offsets == [jitter(7, slot, 30) for slot in slots], "the same slot, the same offset"
    assert all(timedelta(0) <= offset <= timedelta(seconds=30) for offset in offsets)
    assert len(set(offsets)) > 150, "spread over the range, not one offset"
    assert [jitter(8, slot, 30) for slot in slots] != offsets, "another schedule, other offsets"
    assert jitter(7, T0, 0) == timedelta(0)


def test_the_preview_shows_each_runs_start_with_its_schedules_jitter() -> None:
    preview = preview_cron("0 9 * * *", "UTC", utc(2026, 11, 1), 3, jitter_s=120, schedule_id=42)
    assert preview.starts_at == [slot + jitter(42, slot, 120) for slot in preview.next_runs]
    unknown = preview_cron("0 9 * * *", "UTC", utc(2026, 11, 1), 3, jitter_s=120)
    assert unknown.starts_at is None, "no schedule: its offsets are not known yet"


@pytest.mark.parametrize(
    ("dst_policy", "runs"),
    [("once", [utc(2026, 11, 1, 5, 30)]), ("both", [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)])],
)
def test_a_fixed_hour_slot_on_a_fall_back_night_runs_once_or_at_both_occurrences(
    dst_policy: str, runs: list[datetime]
) -> None:
    # 01:30 in New York happens twice on 1 November 2026: at 05:30 UTC (EDT) and 06:30 UTC (EST).
    preview = preview_cron("30 1 * * *", "America/New_York", utc(2026, 11, 1), 4, dst_policy=dst_policy)
    assert [slot for slot in preview.next_runs if slot < utc(2026, 11, 2)] == runs
    assert preview.next_runs[len(runs)] == utc(2026, 11, 2, 6, 30), "the next day, once"


# --- Through the claim, edits and deletes ----------------------------------------------------------------------


def ledger(embedded: Embedded) -> list[tuple[str, datetime | None, int]]:
    return [(run.status, run.scheduled_for, run.attempt) for run in embedded.runs()]


def due_minutely(embedded: Embedded, overdue: timedelta, **columns: object) -> tuple[TaskSchedule, TickSlot]:
    schedule = embedded.add_schedule(utcnow() - MINUTE - overdue, interval_ms=60_000)
    if columns:
        embedded.set_columns(schedule.id, **columns)
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at is not None and stored.dedupe_key is not None
    return stored, TickSlot(stored.id, stored.next_run_at, stored.dedupe_key)


def test_overlap_skip_records_a_slot_skipped_while_the_previous_run_is_unfinished(embedded: Embedded) -> None:
    schedule, tick = due_minutely(embedded, timedelta(seconds=5), overlap_policy="skip")
    running = embedded.add_run(
        schedule_id=schedule.id,
        triggered_by="schedule",
        status=RunStatus.RUNNING,
        scheduled_for=tick.slot - MINUTE,
    )

    assert embedded.claim(tick) == [True]

    skipped = embedded.runs()[-1]
    assert (skipped.status, skipped.scheduled_for, skipped.attempt) == (RunStatus.SKIPPED, tick.slot, 0)
    assert skipped.error_message == (
        f"overlap policy skip: run {running.id} of this schedule was still queued or running"
    )
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at == tick.slot + MINUTE, "the chain goes on"
    assert embedded.take_run_messages() == [], "nothing to start"


def test_overlap_skip_is_not_blocked_by_a_manual_run(embedded: Embedded) -> None:
    schedule, tick = due_minutely(embedded, timedelta(seconds=5), overlap_policy="skip")
    embedded.add_run(schedule_id=schedule.id, triggered_by="manual", status=RunStatus.RUNNING)

    assert embedded.claim(tick) == [True]

    assert ledger(embedded)[-1] == (RunStatus.QUEUED, tick.slot, 1)


def test_overlap_allow_runs_beside_an_unfinished_run(embedded: Embedded) -> None:
    schedule, tick = due_minutely(embedded, timedelta(seconds=5))
    embedded.add_run(schedule_id=schedule.id, triggered_by="schedule", status=RunStatus.RUNNING)

    assert embedded.claim(tick) == [True]

    assert ledger(embedded)[-1] == (RunStatus.QUEUED, tick.slot, 1)


def test_a_run_is_due_at_its_slot_plus_its_jitter(embedded: Embedded) -> None:
    # Claimed early by a skewed clock, so the offset is not swallowed by lateness.
    schedule = embedded.add_schedule(utcnow() + timedelta(seconds=1), interval_ms=60_000)
    embedded.set_columns(schedule.id, jitter_s=300)
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at is not None and stored.dedupe_key is not None

    assert embedded.claim(TickSlot(stored.id, stored.next_run_at, stored.dedupe_key)) == [True]

    [run] = embedded.runs()
    assert run.due_at == stored.next_run_at + jitter(stored.id, stored.next_run_at, 300)


def test_a_schedule_whose_stored_timing_no_longer_parses_runs_its_armed_slot_and_stops_broken(
    embedded: Embedded,
) -> None:
    schedule, tick = due_minutely(embedded, timedelta(seconds=5))
    # As an upgrade of the zone database could leave it: the row names a zone no longer known.
    embedded.set_columns(
        schedule.id, schedule_type="cron", cron_expression="* * * * *", timezone="Mars/Olympus"
    )

    assert embedded.claim(tick) == [True]

    assert ledger(embedded) == [(RunStatus.QUEUED, tick.slot, 1)]
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at is None
    reason = "its timing no longer gives slots (timezone: unknown IANA timezone 'Mars/Olympus'): edit its timing to resume it"
    assert stored.broken_reason == reason
    assert schedules.next_run_note(stored, utcnow()) == f"broken: {reason}"


def test_a_disable_after_a_slot_fell_due_records_it_skipped_and_a_resume_settles_the_pause(
    embedded: Embedded,
) -> None:
    schedule, tick = due_minutely(embedded, timedelta(seconds=5))
    with embedded.runtime.sessions() as session:
        schedules.update_schedule(embedded.runtime, session, schedule.id, {"enabled": False})

    assert ledger(embedded) == [(RunStatus.SKIPPED, tick.slot, 0)]
    assert embedded.runs()[0].error_message == (
        "the schedule was disabled after this slot fell due, before it was claimed"
    )
    paused = embedded.schedule(schedule.id)
    assert paused is not None and paused.paused_slot == tick.slot + MINUTE and paused.next_run_at is None

    # The pause passed three slots: resumed, the chain goes on from the first, and its claim coalesces them.
    embedded.set_columns(schedule.id, paused_slot=tick.slot - 2 * MINUTE)
    with embedded.runtime.sessions() as session:
        schedules.update_schedule(embedded.runtime, session, schedule.id, {"enabled": True})
    resumed = embedded.schedule(schedule.id)
    assert resumed is not None and resumed.next_run_at == tick.slot - 2 * MINUTE
    assert resumed.dedupe_key is not None
    embedded.take_ticks()
    assert embedded.claim(TickSlot(schedule.id, tick.slot - 2 * MINUTE, resumed.dedupe_key)) == [True]

    *_, missed, run = embedded.runs()
    assert (missed.status, missed.scheduled_for, missed.last_slot, missed.missed_slots) == (
        RunStatus.MISSED,
        tick.slot - 2 * MINUTE,
        tick.slot - MINUTE,
        2,
    )
    assert missed.error_message == "passed while the schedule was disabled; misfire policy coalesce"
    assert (run.status, run.scheduled_for) == (RunStatus.QUEUED, tick.slot)


def test_a_delete_after_a_slot_fell_due_records_it_skipped_and_later_ones_missed(embedded: Embedded) -> None:
    schedule, tick = due_minutely(embedded, 2 * MINUTE + timedelta(seconds=5))  # three slots due
    with embedded.runtime.sessions() as session:
        assert schedules.delete_schedule(session, schedule.id)

    assert ledger(embedded) == [(RunStatus.SKIPPED, tick.slot, 0), (RunStatus.MISSED, tick.slot + MINUTE, 0)]
    missed = embedded.runs()[1]
    assert (missed.last_slot, missed.missed_slots) == (tick.slot + 2 * MINUTE, 2)
    assert missed.error_message == "passed unclaimed, then the schedule was deleted"
    assert {run.schedule_name for run in embedded.runs()} == {"unit"}, "the ledger keeps its name"


def test_a_broken_schedule_can_still_be_paused_and_deleted_but_not_enabled_unmended(
    embedded: Embedded,
) -> None:
    schedule, tick = due_minutely(embedded, timedelta(seconds=5))
    embedded.set_columns(
        schedule.id, schedule_type="cron", cron_expression="* * * * *", timezone="Mars/Olympus"
    )

    with embedded.runtime.sessions() as session:
        paused = schedules.update_schedule(embedded.runtime, session, schedule.id, {"enabled": False})
        assert paused is not None and not paused.enabled
        with pytest.raises(schedules.ValidationFailed) as refused:
            schedules.update_schedule(embedded.runtime, session, schedule.id, {"enabled": True})
    assert refused.value.errors == {"timezone": ["unknown IANA timezone 'Mars/Olympus'"]}
    assert ledger(embedded) == [(RunStatus.SKIPPED, tick.slot, 0)], "its due slot recorded, as for any pause"

    embedded.set_columns(schedule.id, enabled=True, next_run_at=tick.slot)
    with embedded.runtime.sessions() as session:
        assert schedules.delete_schedule(session, schedule.id)
    assert embedded.schedule(schedule.id) is None
