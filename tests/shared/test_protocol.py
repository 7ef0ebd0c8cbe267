"""The protocol's rules (shared/protocol.py) at unit level: arm, publish, claim, start, record, on SQLite and
Dramatiq's in-memory broker. tests/worker proves the same protocol against PostgreSQL, RabbitMQ and real
processes; these check each rule alone, fast."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq.errors import ConnectionClosed

from shared import healing, protocol
from shared.db import utcnow
from shared.messaging import Outgoing, Publisher, TickSlot
from shared.models import RunStatus, TaskSchedule
from shared.schedules import next_run_note
from shared.timing import instant_text
from tests.shared.conftest import Embedded

MINUTE_MS = 60_000
MINUTE = timedelta(minutes=1)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def armed_slot(schedule: TaskSchedule) -> TickSlot:
    """The (schedule, slot, key) a tick for the schedule's armed slot carries."""
    assert schedule.next_run_at is not None and schedule.dedupe_key is not None
    return TickSlot(schedule.id, schedule.next_run_at, schedule.dedupe_key)


def due_schedule(embedded: Embedded, overdue: timedelta = timedelta(seconds=30)) -> TaskSchedule:
    """A one-minute interval schedule whose armed slot came due ``overdue`` ago."""
    return embedded.add_schedule(utcnow() - timedelta(minutes=1) - overdue, interval_ms=MINUTE_MS)


# --- Arm ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timing", "now", "first_slot"),
    [
        ({"interval_ms": 90_000}, utc(2024, 6, 1, 12), utc(2024, 6, 1, 12, 1, 30)),
        # 09:00 in Berlin on the day clocks spring forward is 07:00 UTC (CEST), not 08:00 (CET).
        ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, utc(2024, 3, 31, 0), utc(2024, 3, 31, 7)),
        ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, utc(2024, 3, 31, 7), utc(2024, 4, 1, 7)),
        ({}, utc(2024, 6, 1, 12), None),  # manual: never armed
        ({"interval_ms": 90_000, "enabled": False}, utc(2024, 6, 1, 12), None),
    ],
    ids=["interval", "cron-spring-forward-day", "cron-strictly-after-now", "manual", "disabled"],
)
def test_arming_points_the_row_at_its_first_slot(
    embedded: Embedded, timing: dict[str, object], now: datetime, first_slot: datetime | None
) -> None:
    schedule = embedded.add_schedule(now, **timing)  # type: ignore[arg-type]

    assert schedule.next_run_at == first_slot
    assert schedule.tick_published_at is None


@pytest.mark.parametrize(
    ("timing", "bounds", "first_slot"),
    [
        ({"interval_ms": 90_000}, {"start_at": utc(2024, 6, 2, 9)}, utc(2024, 6, 2, 9)),
        ({"interval_ms": 90_000}, {"start_at": utc(2024, 6, 1, 11, 0, 45)}, utc(2024, 6, 1, 12, 0, 45)),
        ({"cron": "0 9 * * *"}, {"start_at": utc(2024, 6, 5, 9, 30)}, utc(2024, 6, 6, 9)),
        ({"cron": "0 9 * * *"}, {"end_at": utc(2024, 6, 2, 9)}, utc(2024, 6, 2, 9)),
        ({"cron": "0 9 * * *"}, {"end_at": utc(2024, 6, 2, 8, 59)}, None),
        ({"interval_ms": 90_000}, {"end_at": utc(2024, 5, 1)}, None),
    ],
    ids=[
        "interval-future-start",
        "interval-past-start-keeps-its-grid",
        "cron-future-start",
        "cron-end-included",
        "cron-no-slot-before-end",
        "past-end",
    ],
)
def test_arming_keeps_the_first_slot_within_the_bounds(
    embedded: Embedded, timing: dict[str, object], bounds: dict[str, datetime], first_slot: datetime | None
) -> None:
    now = utc(2024, 6, 1, 12)
    schedule = embedded.add_schedule(now, **timing)  # type: ignore[arg-type]

    armed = embedded.edit_timing(schedule.id, now, **bounds)

    assert armed.next_run_at == first_slot


def test_every_arming_gives_a_new_dedupe_key(embedded: Embedded) -> None:
    now = utc(2024, 6, 1, 12)
    schedule = embedded.add_schedule(now, interval_ms=MINUTE_MS)
    keys = {schedule.dedupe_key}

    for _ in range(3):
        keys.add(embedded.edit_timing(schedule.id, now).dedupe_key)

    assert len(keys) == 4 and None not in keys


# --- Publish --------------------------------------------------------------------------------------------------


def test_a_tick_is_published_for_a_slot_within_the_horizon_with_the_rows_key(embedded: Embedded) -> None:
    schedule = embedded.add_schedule(utcnow(), interval_ms=MINUTE_MS)

    assert protocol.publish_tick(embedded.runtime, schedule.id)

    assert [tick.slots for tick in embedded.take_ticks()] == [[armed_slot(schedule)]]
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.tick_published_at is not None
    assert embedded.ticks_in_flight() == 1


def test_a_slot_beyond_the_horizon_is_left_for_the_pump(embedded: Embedded) -> None:
    hourly = embedded.add_schedule(utcnow(), interval_ms=60 * MINUTE_MS)  # H is 5 minutes

    assert not protocol.publish_tick(embedded.runtime, hourly.id)

    assert embedded.take_ticks() == []
    stored = embedded.schedule(hourly.id)
    assert stored is not None and stored.tick_published_at is None
    assert embedded.ticks_in_flight() == 0


def test_a_published_tick_is_not_published_again(embedded: Embedded) -> None:
    schedule = embedded.add_schedule(utcnow(), interval_ms=MINUTE_MS)

    published = [protocol.publish_tick(embedded.runtime, schedule.id) for _ in range(3)]

    assert published == [True, False, False]
    assert len(embedded.take_ticks()) == 1


def test_slots_due_in_the_same_bucket_share_one_tick(embedded: Embedded) -> None:
    now = utcnow()
    together = [embedded.add_schedule(now, interval_ms=MINUTE_MS) for _ in range(3)]
    alone = embedded.add_schedule(now + timedelta(seconds=1), interval_ms=MINUTE_MS)

    _runs, slots = protocol.publish_outboxes(embedded.runtime, "test", earliest_ticks=10)

    assert slots == 4
    ticks = embedded.take_ticks()
    assert sorted(len(tick.slots) for tick in ticks) == [1, 3]
    [shared_tick] = [tick for tick in ticks if len(tick.slots) == 3]
    assert {slot.schedule_id for slot in shared_tick.slots} == {schedule.id for schedule in together}
    assert alone.id not in {slot.schedule_id for slot in shared_tick.slots}
    assert embedded.ticks_in_flight() == 2, "the budget counts messages, not slots"


def test_slots_beyond_the_tick_budget_wait_and_the_earliest_are_published_first(
    make_embedded: Callable[..., Embedded],
) -> None:
    embedded = make_embedded(tick_budget=3, tick_bucket_ms=0)
    now = utcnow()
    offsets_s = [50, 10, 40, 20, 30]  # stored out of slot order
    by_offset = {
        s: embedded.add_schedule(now + timedelta(seconds=s), interval_ms=MINUTE_MS) for s in offsets_s
    }

    assert protocol.publish_outboxes(embedded.runtime, "test", earliest_ticks=10) == (0, 3)
    first = embedded.take_ticks()
    assert sorted(tick.slots[0].schedule_id for tick in first) == sorted(
        by_offset[s].id for s in (10, 20, 30)
    )
    assert protocol.publish_outboxes(embedded.runtime, "test", earliest_ticks=10) == (0, 0), (
        "the budget is full"
    )
    assert embedded.ticks_in_flight() == 3

    # The earliest tick is delivered and claimed: its place goes to the earliest slot still waiting.
    [earliest] = [tick for tick in first if tick.slots[0].schedule_id == by_offset[10].id]
    assert protocol.claim_slots(embedded.runtime, [protocol.ClaimRequest(earliest.id, earliest.slots[0])])
    assert protocol.publish_outboxes(embedded.runtime, "test", earliest_ticks=1) == (0, 1)
    [(next_tick)] = embedded.take_ticks()
    assert next_tick.slots[0].schedule_id == by_offset[40].id
    assert embedded.ticks_in_flight() == 3


class RefusingPublisher(Publisher):
    """A broker that takes nothing (down, or refusing under a memory alarm)."""

    def publish(self, batch: Sequence[Outgoing]) -> None:
        raise ConnectionClosed(OSError("connection refused"))


def test_a_tick_the_broker_refused_is_given_back_for_the_pump(make_embedded: Callable[..., Embedded]) -> None:
    embedded = make_embedded(publisher=RefusingPublisher)
    schedule = embedded.add_schedule(utcnow(), interval_ms=MINUTE_MS)

    assert not protocol.publish_tick(embedded.runtime, schedule.id)

    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.tick_published_at is None, "the outbox is open again"
    assert embedded.ticks_in_flight() == 0, "and the budget's place is freed"


# --- Claim ----------------------------------------------------------------------------------------------------


def test_a_current_tick_claims_its_slot_once(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    tick = armed_slot(schedule)

    assert embedded.claim(tick) == [True]
    assert embedded.claim(tick) == [False], "a redelivered tick claims nothing"

    [run] = embedded.runs()
    assert (run.schedule_id, run.scheduled_for, run.triggered_by, run.status, run.attempt) == (
        schedule.id,
        tick.slot,
        "schedule",
        "queued",
        1,
    )
    assert run.missed_slots == 0


def edited(embedded: Embedded, schedule: TaskSchedule) -> None:
    embedded.edit_timing(schedule.id, utcnow(), interval_ms=2 * MINUTE_MS)


def re_armed_on_the_same_slot(embedded: Embedded, schedule: TaskSchedule) -> None:
    slot = schedule.next_run_at
    embedded.edit_timing(schedule.id, utcnow())
    embedded.set_columns(schedule.id, next_run_at=slot)  # only the key tells the ticks apart


def disabled(embedded: Embedded, schedule: TaskSchedule) -> None:
    embedded.edit_timing(schedule.id, utcnow(), enabled=False)


def deleted(embedded: Embedded, schedule: TaskSchedule) -> None:
    embedded.delete(schedule.id)


@pytest.mark.parametrize(
    "make_stale",
    [edited, re_armed_on_the_same_slot, disabled, deleted],
    ids=["edited", "old-dedupe-key", "disabled", "deleted"],
)
def test_a_stale_tick_is_dropped(
    embedded: Embedded, make_stale: Callable[[Embedded, TaskSchedule], None]
) -> None:
    schedule = due_schedule(embedded)
    tick = armed_slot(schedule)
    make_stale(embedded, schedule)
    before = embedded.schedule(schedule.id)

    assert embedded.claim(tick) == [False]

    assert embedded.runs() == []
    after = embedded.schedule(schedule.id)
    if before is not None:
        assert after is not None
        assert (after.next_run_at, after.dedupe_key) == (before.next_run_at, before.dedupe_key), (
            "nothing moved"
        )


def test_the_next_slot_follows_the_previous_slot_not_the_claim_time(embedded: Embedded) -> None:
    schedule = due_schedule(embedded, overdue=timedelta(seconds=42))  # claimed 42 s late
    tick = armed_slot(schedule)

    embedded.claim(tick)

    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at == tick.slot + timedelta(minutes=1)
    assert stored.dedupe_key == tick.dedupe_key, "a claim moves the slot, not the key"
    assert embedded.runs()[0].missed_slots == 0


def test_slots_missed_while_nothing_ran_are_coalesced_into_one_run(embedded: Embedded) -> None:
    # Down for ten and a half minutes: the slot armed before, and ten more, went by.
    schedule = due_schedule(embedded, overdue=timedelta(minutes=10, seconds=30))
    tick = armed_slot(schedule)

    assert embedded.claim(tick) == [True]

    missed, run = embedded.runs()
    assert (run.status, run.scheduled_for, run.attempt) == (RunStatus.QUEUED, tick.slot + 10 * MINUTE, 1)
    assert (missed.status, missed.scheduled_for, missed.last_slot, missed.missed_slots, missed.attempt) == (
        RunStatus.MISSED,
        tick.slot,
        tick.slot + 9 * MINUTE,
        10,
        0,
    )
    assert missed.error_message == "passed unclaimed; misfire policy coalesce"
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at == tick.slot + 11 * MINUTE, "on its grid"


def claim_at(embedded: Embedded, tick: TickSlot, now: datetime) -> list[bool]:
    """Claim ``tick`` as a claimer whose clock reads ``now`` (the transaction a worker's claim runs)."""
    requests = [protocol.ClaimRequest(0, tick)]
    with embedded.runtime.sessions.begin() as session:
        rows = protocol.lock_armed_rows(session, requests)
        return protocol.claim_locked_slots(session, rows, requests, now, embedded.runtime.misfire_grace)


def test_a_cron_chain_claimed_late_coalesces_the_missed_days_and_keeps_its_wall_time(
    embedded: Embedded,
) -> None:
    # 02:30 every day in Berlin, armed on 29 March 2024, claimed at noon on 2 April: the slots of 30 March, of
    # 31 March (02:30 falls in the spring-forward gap: 03:00 CEST) and of 1 and 2 April were missed.
    schedule = embedded.add_schedule(utc(2024, 3, 28, 12), cron="30 2 * * *", timezone="Europe/Berlin")
    tick = armed_slot(schedule)
    assert tick.slot == utc(2024, 3, 29, 1, 30)  # 02:30 CET

    assert claim_at(embedded, tick, utc(2024, 4, 2, 12)) == [True]

    missed, run = embedded.runs()
    assert run.scheduled_for == utc(2024, 4, 2, 0, 30), "the latest slot runs: 02:30 CEST on 2 April"
    assert (missed.scheduled_for, missed.last_slot, missed.missed_slots) == (
        utc(2024, 3, 29, 1, 30),
        utc(2024, 4, 1, 0, 30),
        4,  # 29, 30 and 31 March (03:00 CEST, after the gap) and 1 April
    )
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at == utc(2024, 4, 3, 0, 30)  # 02:30 CEST


def test_a_cron_slot_claimed_late_does_not_push_the_next_one(embedded: Embedded) -> None:
    schedule = embedded.add_schedule(utc(2024, 6, 3, 8, 30), cron="0 9 * * 1-5")  # weekdays at 09:00 UTC
    tick = armed_slot(schedule)

    assert claim_at(embedded, tick, utc(2024, 6, 3, 9, 0, 42)) == [True]  # Monday, 42 s late

    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at == utc(2024, 6, 4, 9)
    assert embedded.runs()[0].missed_slots == 0


def test_a_claim_whose_next_slot_is_past_the_end_runs_its_slot_and_leaves_no_next_run(
    embedded: Embedded,
) -> None:
    schedule = due_schedule(embedded)
    tick = armed_slot(schedule)
    end = tick.slot + timedelta(seconds=10)  # before the next slot, a minute on
    embedded.set_columns(schedule.id, end_at=end)  # as stored, not re-armed: the tick is still current

    assert embedded.claim(tick) == [True]

    [run] = embedded.runs()
    assert (run.scheduled_for, run.missed_slots) == (tick.slot, 0)
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at is None
    assert next_run_note(stored, utcnow()) == f"ended at {instant_text(end)}: no slot after its end"
    assert embedded.take_run_messages() == [run.id]
    assert embedded.take_ticks() == [] and embedded.ticks_in_flight() == 0, "no next tick"


def test_schedules_that_share_a_timing_but_not_their_bounds_each_get_their_own_next_slot(
    embedded: Embedded,
) -> None:
    ending, going_on = due_schedule(embedded), due_schedule(embedded)
    slot = ending.next_run_at
    assert slot is not None
    embedded.set_columns(going_on.id, next_run_at=slot)
    embedded.set_columns(ending.id, end_at=slot + timedelta(seconds=10))
    ticks = [armed_slot(stored) for stored in map(embedded.schedule, (ending.id, going_on.id)) if stored]

    assert embedded.claim(*ticks) == [True, True]  # one batch: the claim computes next slots per timing

    next_slots = [stored.next_run_at for stored in map(embedded.schedule, (ending.id, going_on.id)) if stored]
    assert next_slots == [None, slot + timedelta(minutes=1)]


def test_a_batch_naming_the_same_slot_twice_claims_it_once(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    other = due_schedule(embedded)
    tick = armed_slot(schedule)

    assert embedded.claim(tick, armed_slot(other), tick) == [True, True, False]

    assert sorted((run.schedule_id, run.scheduled_for) for run in embedded.runs()) == sorted(
        [(schedule.id, tick.slot), (other.id, armed_slot(other).slot)]
    )
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.next_run_at == tick.slot + timedelta(minutes=1), "moved on once"


def test_a_claim_forgets_its_tick_in_the_budget_ledger_even_when_stale(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    assert protocol.publish_tick(embedded.runtime, schedule.id)
    [tick] = embedded.take_ticks()
    disabled(embedded, schedule)
    assert embedded.ticks_in_flight() == 1

    assert embedded.claim(*tick.slots, tick_id=tick.id) == [False]

    assert embedded.ticks_in_flight() == 0


def test_a_claim_publishes_the_run_and_the_next_tick(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    tick = armed_slot(schedule)

    embedded.claim(tick)

    [run] = embedded.runs()
    assert embedded.take_run_messages() == [run.id]
    assert run.dispatched_at is not None
    [next_tick] = embedded.take_ticks()
    assert next_tick.slots == [TickSlot(schedule.id, tick.slot + timedelta(minutes=1), tick.dedupe_key)]
    assert embedded.ticks_in_flight() == 1


def test_a_tick_redelivered_after_a_claim_that_was_not_published_sends_its_run(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    tick = armed_slot(schedule)
    # The claim commits; its worker dies before publishing.
    assert protocol.claim_slots(embedded.runtime, [protocol.ClaimRequest(0, tick)]) == [True]
    [run] = embedded.runs()
    assert run.dispatched_at is None and embedded.take_run_messages() == []

    assert embedded.claim(tick) == [False], "the redelivered tick claims nothing..."

    assert embedded.take_run_messages() == [run.id], "...but sends the run its claim left unsent"
    assert len(embedded.runs()) == 1


# --- Start ----------------------------------------------------------------------------------------------------


def claimed_run_id(embedded: Embedded) -> int:
    schedule = due_schedule(embedded)
    assert embedded.claim(armed_slot(schedule)) == [True]
    [run] = embedded.runs()
    return run.id


def test_a_run_starts_once_however_often_it_is_delivered(embedded: Embedded) -> None:
    history_id = claimed_run_id(embedded)

    first = protocol.start_run(embedded.runtime, history_id)
    again = protocol.start_run(embedded.runtime, history_id)

    assert first is not None and first.id == history_id
    assert again is None
    run = embedded.run(history_id)
    assert run.status == "running" and run.started_at is not None
    assert run.lease_expires_at == run.started_at + embedded.runtime.lease


def test_a_run_delivered_before_it_is_due_waits_and_is_sent_again_for_then(embedded: Embedded) -> None:
    due_at = utcnow() + timedelta(minutes=2)  # a retry's backoff, or another host's clock ahead
    run = embedded.add_run(status="queued", due_at=due_at)

    assert protocol.start_run(embedded.runtime, run.id) is None

    assert embedded.run(run.id).status == "queued"
    assert embedded.take_run_messages() == [run.id]


def test_a_claimed_run_whose_schedule_was_disabled_before_it_started_is_skipped(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    assert embedded.claim(armed_slot(schedule)) == [True]
    [run] = embedded.runs()
    disabled(embedded, schedule)

    assert protocol.start_run(embedded.runtime, run.id) is None

    skipped = embedded.run(run.id)
    assert skipped.status == "skipped"
    assert skipped.error_message == "its schedule was disabled before it started"
    assert skipped.completed_at is not None and skipped.lease_expires_at is None


def test_run_now_of_a_disabled_schedule_still_starts(embedded: Embedded) -> None:
    schedule = embedded.add_schedule(utcnow(), interval_ms=MINUTE_MS, enabled=False)
    with embedded.runtime.sessions.begin() as session:
        stored = session.get(TaskSchedule, schedule.id)
        assert stored is not None
        manual = protocol.queue_manual_run(session, stored, utcnow())

    started = protocol.start_run(embedded.runtime, manual.id)

    assert started is not None and started.triggered_by == "manual"
    assert embedded.run(manual.id).status == "running"


def test_a_run_whose_schedule_was_deleted_before_it_started_is_abandoned(embedded: Embedded) -> None:
    schedule = due_schedule(embedded)
    assert embedded.claim(armed_slot(schedule)) == [True]
    [run] = embedded.runs()
    deleted(embedded, schedule)

    assert protocol.start_run(embedded.runtime, run.id) is None

    orphan = embedded.run(run.id)  # the ledger keeps whose run it was
    assert (orphan.schedule_id, orphan.schedule_name, orphan.status) == (
        schedule.id,
        schedule.name,
        "abandoned",
    )
    assert orphan.error_message == "its schedule was deleted before it started"


# --- Record ---------------------------------------------------------------------------------------------------


def started(embedded: Embedded) -> protocol.StartedRun:
    run = protocol.start_run(embedded.runtime, claimed_run_id(embedded))
    assert run is not None
    embedded.take_run_messages()
    return run


def test_a_success_is_recorded_and_ends_the_lease(embedded: Embedded) -> None:
    run = started(embedded)

    assert protocol.record_outcomes(embedded.runtime, [protocol.Outcome(run, "success", None, 12)]) == [True]

    stored = embedded.run(run.id)
    assert (stored.status, stored.duration_ms, stored.error_message, stored.lease_expires_at) == (
        "success",
        12,
        None,
        None,
    )
    assert stored.completed_at is not None


def test_a_failed_attempt_that_may_retry_queues_the_next_attempt_after_the_backoff(
    embedded: Embedded,
) -> None:
    run = started(embedded)
    failure = protocol.Outcome(run, "failed", "HTTP 503 from the report service", 40, may_retry=True)

    protocol.record_outcomes(embedded.runtime, [failure])

    first, retry = embedded.runs()
    assert (first.status, first.error_message) == ("failed", "HTTP 503 from the report service")
    assert (retry.status, retry.attempt, retry.scheduled_for, retry.schedule_id) == (
        "queued",
        2,
        run.scheduled_for,
        run.schedule_id,
    )
    assert retry.due_at - retry.queued_at == timedelta(
        milliseconds=embedded.runtime.settings.retry_base_delay_ms
    )
    assert embedded.take_run_messages() == [retry.id]


def test_a_failure_that_may_not_retry_queues_nothing(embedded: Embedded) -> None:
    run = started(embedded)

    protocol.record_outcomes(embedded.runtime, [protocol.Outcome(run, "failed", "boom", 40, may_retry=False)])

    assert [stored.status for stored in embedded.runs()] == ["failed"]
    assert embedded.take_run_messages() == []


@pytest.mark.parametrize(
    ("attempt", "delay_s"), [(1, 5), (2, 10), (3, 20), (6, 160), (7, 300), (20, 300)], ids=lambda v: str(v)
)
def test_retry_backoff_doubles_from_the_base_delay_up_to_five_minutes(attempt: int, delay_s: int) -> None:
    assert protocol.retry_delay(attempt, base_delay_ms=5000) == timedelta(seconds=delay_s)


def test_an_outcome_that_comes_after_the_pump_called_its_run_abandoned_is_recorded_as_late(
    embedded: Embedded,
) -> None:
    run = started(embedded)
    # The pump ran while the worker was silent past the lease, and queued the slot's next attempt.
    assert (
        healing.abandon_runs_of_vanished_workers(embedded.runtime, utcnow() + embedded.runtime.lease * 2) == 1
    )

    assert protocol.record_outcomes(
        embedded.runtime, [protocol.Outcome(run, "success", None, 5, output="ok")]
    ) == [True]
    late = embedded.run(run.id)
    assert (late.status, late.output, late.error_message) == ("success", "ok", protocol.LATE)
    assert [(r.attempt, r.status) for r in embedded.runs()] == [(1, "success"), (2, "queued")]


# --- System crons ---------------------------------------------------------------------------------------------


def test_a_system_slot_runs_once_however_many_beats_send_it(embedded: Embedded) -> None:
    slot = utcnow().replace(second=0, microsecond=0)
    worked: list[int] = []

    def work(_runtime: object) -> str:
        worked.append(1)
        return "done"

    statuses = [protocol.run_system_slot(embedded.runtime, "pump", "SYSTEM", slot, work) for _ in range(3)]

    assert statuses == ["success", None, None]
    assert len(worked) == 1
    [run] = embedded.runs()
    assert (run.system_task, run.scheduled_for, run.status, run.triggered_by) == (
        "pump",
        slot,
        "success",
        "system",
    )
