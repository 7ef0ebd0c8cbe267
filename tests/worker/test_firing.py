"""Schedules fire on exactly their slots, through real ``dramatiq`` worker processes over RabbitMQ."""

from __future__ import annotations

from datetime import timedelta

from shared.models import RunStatus
from tests.worker.conftest import Engine

SLOTS = 20


def test_interval_and_cron_fire_on_exactly_their_slots_with_two_workers(engine: Engine) -> None:
    engine.start_worker()
    engine.start_worker()
    interval = engine.create(name="every 2 s", schedule_type="interval", interval_ms=2000)
    cron = engine.create(name="even seconds", schedule_type="cron", cron_expression="* * * * * */2")

    interval_runs = engine.wait_for_runs(interval.id, SLOTS, timeout_s=SLOTS * 2 + 30)
    cron_runs = engine.wait_for_runs(cron.id, SLOTS, timeout_s=30)

    # Interval: slot n is exactly creation + (n+1) x 2 s; no slot twice, none skipped, none coalesced.
    interval_slots = [run.scheduled_for for run in interval_runs[:SLOTS]]
    assert interval_slots == [interval.next_run_at + k * timedelta(seconds=2) for k in range(SLOTS)]
    # Cron: every even second from the first, consecutively.
    cron_slots = [run.scheduled_for for run in cron_runs[:SLOTS]]
    assert all(slot.second % 2 == 0 and slot.microsecond == 0 for slot in cron_slots)
    assert cron_slots == [cron_slots[0] + k * timedelta(seconds=2) for k in range(SLOTS)]
    for run in interval_runs[:SLOTS] + cron_runs[:SLOTS]:
        assert run.missed_slots == 0 and run.attempt == 1
    # Runs start close to their slot: the claim happens on the worker_timeout poll (100 ms), not a minute later.
    finished = [run for run in interval_runs[:SLOTS] + cron_runs[:SLOTS] if run.status == RunStatus.SUCCESS]
    assert len(finished) >= 2 * SLOTS - 2
    assert max(run.started_at - run.scheduled_for for run in finished) < timedelta(seconds=1.5)


def test_long_handlers_never_delay_the_ticks_of_other_slots(make_engine) -> None:
    # One handler thread, four-second handlers, a one-second chain: runs pile up, claims must not.
    engine: Engine = make_engine(simulated_work_ms=4000, worker_processes=1, worker_threads=1)
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000)

    runs = engine.wait_for_runs(schedule.id, 8, timeout_s=30)
    claim_lateness = [run.queued_at - run.scheduled_for for run in runs[:8]]
    assert max(claim_lateness) < timedelta(seconds=0.8), claim_lateness
    assert [run.scheduled_for for run in runs[:8]] == [
        runs[0].scheduled_for + k * timedelta(seconds=1) for k in range(8)
    ]
    assert sum(run.status == RunStatus.QUEUED for run in runs) >= 3, "the handlers really were the bottleneck"
