"""What the pump repairs (shared/healing.py) and history retention, at unit level: each step alone with the
``now`` it is given, and the pump as a whole over rows placed around the real now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from shared import healing, protocol
from shared.db import utcnow
from shared.messaging import TickSlot
from shared.models import RunStatus, TaskSchedule, TickInFlight
from tests.shared.conftest import Embedded

MINUTE_MS = 60_000
SECOND = timedelta(seconds=1)


def published_schedule(embedded: Embedded) -> tuple[TaskSchedule, TickSlot]:
    """A one-minute interval schedule whose tick was published, then lost (taken off the broker)."""
    schedule = embedded.add_schedule(utcnow(), interval_ms=MINUTE_MS)
    assert protocol.publish_tick(embedded.runtime, schedule.id)
    [tick] = embedded.take_ticks()
    stored = embedded.schedule(schedule.id)
    assert stored is not None
    return stored, tick.slots[0]


# --- Abandoned runs -------------------------------------------------------------------------------------------


def test_a_running_run_is_called_abandoned_only_once_its_lease_has_expired(embedded: Embedded) -> None:
    manual = embedded.add_schedule(utcnow())
    run = embedded.add_run(schedule_id=manual.id, status="queued")
    assert protocol.start_run(embedded.runtime, run.id) is not None
    lease_expires_at = embedded.run(run.id).lease_expires_at
    assert lease_expires_at is not None

    assert healing.abandon_runs_of_vanished_workers(embedded.runtime, lease_expires_at - SECOND) == 0
    assert embedded.run(run.id).status == "running"

    assert healing.abandon_runs_of_vanished_workers(embedded.runtime, lease_expires_at + SECOND) == 1
    abandoned = embedded.run(run.id)
    assert (abandoned.status, abandoned.completed_at, abandoned.lease_expires_at) == (
        "abandoned",
        lease_expires_at + SECOND,
        None,
    )
    assert (
        abandoned.error_message == "abandoned: its worker stopped before recording an outcome (lease expired)"
    )


def test_a_run_abandoned_by_a_lost_worker_is_retried_as_its_next_attempt_while_attempts_are_left(
    embedded: Embedded,
) -> None:
    manual = embedded.add_schedule(utcnow())
    first = embedded.add_run(schedule_id=manual.id, status="queued", config={"reportId": "usage-monthly"})
    assert protocol.start_run(embedded.runtime, first.id) is not None
    past_the_lease = utcnow() + embedded.runtime.lease * 2

    assert healing.abandon_runs_of_vanished_workers(embedded.runtime, past_the_lease) == 1

    abandoned, retry = embedded.runs()
    assert (abandoned.status, retry.status, retry.attempt) == ("abandoned", "queued", 2)
    assert (retry.schedule_id, retry.config, retry.triggered_by) == (
        manual.id,
        {"reportId": "usage-monthly"},
        "manual",
    )
    assert embedded.take_run_messages() == [retry.id]


def test_an_abandoned_run_on_its_last_attempt_is_not_retried(embedded: Embedded) -> None:
    manual = embedded.add_schedule(utcnow())
    last = embedded.add_run(schedule_id=manual.id, status="queued", attempt=3)  # report_publish allows 3
    assert protocol.start_run(embedded.runtime, last.id) is not None

    assert (
        healing.abandon_runs_of_vanished_workers(embedded.runtime, utcnow() + embedded.runtime.lease * 2) == 1
    )

    assert [(r.attempt, r.status) for r in embedded.runs()] == [(3, "abandoned")]


@pytest.mark.parametrize("status", ["queued", "success", "failed"])
def test_a_run_that_is_not_running_is_never_called_abandoned(embedded: Embedded, status: str) -> None:
    run = embedded.add_run(status=status, lease_expires_at=utcnow() - timedelta(hours=1))

    assert healing.abandon_runs_of_vanished_workers(embedded.runtime, utcnow()) == 0
    assert embedded.run(run.id).status == status


# --- Lost ticks -----------------------------------------------------------------------------------------------


def test_a_lost_tick_is_reopened_only_once_its_slot_is_overdue_past_the_grace_period(
    embedded: Embedded,
) -> None:
    schedule, lost = published_schedule(embedded)
    grace = embedded.runtime.grace

    assert healing.reopen_overdue_ticks(embedded.runtime, lost.slot + grace - SECOND) == 0
    stored = embedded.schedule(schedule.id)
    assert stored is not None and stored.tick_published_at is not None, "a late tick may still arrive"

    assert healing.reopen_overdue_ticks(embedded.runtime, lost.slot + grace + SECOND) == 1
    reopened = embedded.schedule(schedule.id)
    assert reopened is not None and reopened.tick_published_at is None
    assert (reopened.next_run_at, reopened.dedupe_key) == (lost.slot, lost.dedupe_key), (
        "the same slot and key"
    )


def test_a_disabled_schedule_is_not_reopened(embedded: Embedded) -> None:
    schedule, lost = published_schedule(embedded)
    embedded.set_columns(schedule.id, enabled=False)

    assert healing.reopen_overdue_ticks(embedded.runtime, lost.slot + timedelta(hours=1)) == 0


def test_the_pump_publishes_a_lost_tick_again_and_it_claims_its_slot(embedded: Embedded) -> None:
    schedule, lost = published_schedule(embedded)
    overdue = utcnow() - embedded.runtime.grace - timedelta(seconds=5)
    embedded.set_columns(schedule.id, next_run_at=overdue, tick_published_at=overdue)

    healing.pump(embedded.runtime)

    [republished] = embedded.take_ticks()
    assert republished.slots == [TickSlot(schedule.id, overdue, lost.dedupe_key)]
    assert embedded.claim(*republished.slots, tick_id=republished.id) == [True]
    # Lost for over a minute, a one-minute chain has two slots due: coalesced, the latest runs, the first is missed.
    assert [(run.status, run.scheduled_for) for run in embedded.runs()] == [
        (RunStatus.MISSED, overdue),
        (RunStatus.QUEUED, overdue + timedelta(minutes=1)),
    ]


def test_the_pump_leaves_a_tick_that_is_late_by_less_than_the_grace_period(embedded: Embedded) -> None:
    schedule, _lost = published_schedule(embedded)
    late = utcnow() - embedded.runtime.grace + timedelta(seconds=20)
    embedded.set_columns(schedule.id, next_run_at=late, tick_published_at=late)

    healing.pump(embedded.runtime)

    assert embedded.take_ticks() == []


def test_ledger_ticks_overdue_past_the_grace_period_are_forgotten(embedded: Embedded) -> None:
    due_at = utcnow()
    with embedded.runtime.sessions.begin() as session:
        session.add(TickInFlight(id=1, due_at=due_at, slot_count=1))
    grace = embedded.runtime.grace

    assert healing.forget_lost_ticks(embedded.runtime, due_at + grace - SECOND) == 0
    assert embedded.ticks_in_flight() == 1
    assert healing.forget_lost_ticks(embedded.runtime, due_at + grace + SECOND) == 1
    assert embedded.ticks_in_flight() == 0


def test_the_pump_publishes_a_slot_once_it_enters_the_horizon(embedded: Embedded) -> None:
    hourly = embedded.add_schedule(utcnow(), interval_ms=60 * MINUTE_MS)
    healing.pump(embedded.runtime)
    assert embedded.take_ticks() == [], "an hour away: beyond H"

    entering = utcnow() + embedded.runtime.horizon - timedelta(seconds=30)
    embedded.set_columns(hourly.id, next_run_at=entering)
    healing.pump(embedded.runtime)

    [tick] = embedded.take_ticks()
    assert [(slot.schedule_id, slot.slot) for slot in tick.slots] == [(hourly.id, entering)]


# --- Stuck runs -----------------------------------------------------------------------------------------------


def test_an_undispatched_run_is_dispatched_again_only_past_the_grace_period(embedded: Embedded) -> None:
    due_at = utcnow() - timedelta(minutes=10)
    run = embedded.add_run(status="queued", due_at=due_at, dispatched_at=None)
    grace = embedded.runtime.grace

    assert healing.redispatch_stuck_runs(embedded.runtime, due_at + grace - SECOND) == 0
    assert embedded.take_run_messages() == []

    assert healing.redispatch_stuck_runs(embedded.runtime, due_at + grace + SECOND) == 1
    assert embedded.take_run_messages() == [run.id]
    assert embedded.run(run.id).dispatched_at is not None
    assert healing.redispatch_stuck_runs(embedded.runtime, due_at + grace + SECOND) == 0, "sent just now"


def test_a_run_sent_but_never_started_is_sent_again_only_after_a_lease(embedded: Embedded) -> None:
    sent_at = utcnow() - timedelta(hours=1)
    run = embedded.add_run(status="queued", due_at=sent_at, dispatched_at=sent_at)
    lease = embedded.runtime.lease

    assert healing.redispatch_stuck_runs(embedded.runtime, sent_at + lease - SECOND) == 0, "a deep queue"
    assert healing.redispatch_stuck_runs(embedded.runtime, sent_at + lease + SECOND) == 1
    assert embedded.take_run_messages() == [run.id]


def test_a_started_run_is_never_dispatched_again(embedded: Embedded) -> None:
    long_ago = utcnow() - timedelta(hours=1)
    embedded.add_run(status="running", due_at=long_ago, dispatched_at=None, started_at=long_ago)

    assert healing.redispatch_stuck_runs(embedded.runtime, utcnow()) == 0


# --- After a broker that lost everything ----------------------------------------------------------------------


def test_after_a_broker_restart_every_armed_tick_and_queued_run_is_published_at_once(
    make_embedded: Callable[..., Embedded],
) -> None:
    embedded = make_embedded()
    schedule, lost = published_schedule(embedded)
    run = embedded.add_run(status="queued", dispatched_at=utcnow())  # sent, then lost with the broker

    healing.republish_after_broker_loss(embedded.runtime)

    assert [tick.slots for tick in embedded.take_ticks()] == [[lost]]
    assert embedded.take_run_messages() == [run.id]
    assert embedded.ticks_in_flight() == 1, "the ledger counts the new tick only"


# --- Retention ------------------------------------------------------------------------------------------------


def test_retention_deletes_only_finished_runs_older_than_the_limit(embedded: Embedded) -> None:
    days = embedded.runtime.settings.history_retention_days
    old = utcnow() - timedelta(days=days, hours=1)
    recent = utcnow() - timedelta(days=days) + timedelta(hours=1)
    kept = {
        embedded.add_run(status=status, queued_at=queued_at, due_at=queued_at).id: (status, label)
        for status, queued_at, label in [
            ("queued", old, "unfinished"),
            ("running", old, "unfinished"),
            ("success", recent, "recent"),
            ("failed", recent, "recent"),
        ]
    }
    for status in ("success", "failed", "abandoned", "skipped"):
        embedded.add_run(status=status, queued_at=old, due_at=old)

    summary = healing.delete_old_history(embedded.runtime)

    assert summary == "deleted 4 run(s) older than 90 days"  # the default, as people write it
    assert {run.id for run in embedded.runs()} == set(kept)
