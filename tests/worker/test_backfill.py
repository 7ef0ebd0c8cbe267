"""Backfilled runs, against real worker processes: each slot once, whichever made its run."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from shared.backfill import Backfill, backfill
from shared.db import utcnow
from shared.models import RunStatus, TriggeredBy
from tests.conftest import wait_for
from tests.worker.conftest import LOOPBACK, Engine, StubUpstream


def backfill_window(engine: Engine, schedule_id: int, from_: datetime, to: datetime) -> Backfill:
    with engine.runtime.sessions() as session:
        done = backfill(engine.runtime, session, schedule_id, from_, to)
    assert done is not None
    return done


def every_ten_minutes_between(from_: datetime, to: datetime) -> list[datetime]:
    """The instants of ``*/10 * * * *`` (UTC) in ``[from_, to]``."""
    slot = from_.replace(minute=from_.minute // 10 * 10, second=0, microsecond=0)
    slots = []
    while slot <= to:
        if slot >= from_:
            slots.append(slot)
        slot += timedelta(minutes=10)
    return slots


def all_finished(engine: Engine, schedule_id: int, count: int) -> bool:
    runs = engine.runs(schedule_id, TriggeredBy.BACKFILL)
    return len(runs) == count and all(run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) for run in runs)


def test_real_workers_run_each_backfilled_slot_once(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="cron", cron_expression="*/10 * * * *", timezone="UTC")
    to = utcnow()
    from_ = to - timedelta(hours=1)
    slots = every_ten_minutes_between(from_, to)

    done = backfill_window(engine, schedule.id, from_, to)

    assert (done.slots, done.queued) == (len(slots), len(slots))
    wait_for(lambda: all_finished(engine, schedule.id, len(slots)), 30, "the backfilled runs to finish")
    time.sleep(1)  # a duplicated start message would show as a second outcome or a second row by now
    runs = engine.runs(schedule.id, TriggeredBy.BACKFILL)
    assert sorted(run.scheduled_for for run in runs) == slots
    assert {(run.status, run.attempt) for run in runs} == {(RunStatus.SUCCESS, 1)}
    assert engine.scheduled_runs(schedule.id) == [], "the chain's own slots are all in the future"
    assert backfill_window(engine, schedule.id, from_, to).queued == 0


def test_a_disabled_schedule_runs_its_backfilled_slots_like_run_now(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(
        schedule_type="cron", cron_expression="*/10 * * * *", timezone="UTC", enabled=False
    )
    to = utcnow()
    slots = every_ten_minutes_between(to - timedelta(minutes=30), to)

    backfill_window(engine, schedule.id, to - timedelta(minutes=30), to)

    wait_for(lambda: all_finished(engine, schedule.id, len(slots)), 30, "the backfilled runs to finish")
    assert {run.status for run in engine.runs(schedule.id, TriggeredBy.BACKFILL)} == {RunStatus.SUCCESS}
    assert engine.schedule(schedule.id).next_run_at is None, "it stays disabled"


def test_a_failed_backfilled_slot_is_retried_as_a_backfill(
    make_engine: Callable[..., Engine],
    upstream: StubUpstream,
) -> None:
    engine = make_engine(http_allowed_networks=LOOPBACK)
    engine.start_worker()
    schedule = engine.create(
        schedule_type="cron",
        cron_expression="0 0 * * *",
        task_type="http_request",
        config={"url": upstream.url, "timeoutS": 5},
        max_attempts=2,
    )
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)

    backfill_window(engine, schedule.id, midnight - timedelta(minutes=1), midnight + timedelta(minutes=1))

    def two_attempts_failed() -> bool:
        runs = engine.runs(schedule.id)
        return len(runs) == 2 and all(run.status == RunStatus.FAILED for run in runs)

    wait_for(two_attempts_failed, 30, "two failed attempts")
    runs = engine.runs(schedule.id)
    assert [(run.triggered_by, run.scheduled_for, run.attempt) for run in runs] == [
        (TriggeredBy.BACKFILL, midnight, 1),
        (TriggeredBy.BACKFILL, midnight, 2),
    ]


def test_a_tick_for_a_slot_a_backfill_ran_finds_it_taken(engine: Engine) -> None:
    # No worker yet: the slot falls due and its tick waits in the broker.
    schedule = engine.create(schedule_type="cron", cron_expression="* * * * * */4", timezone="UTC")
    due = engine.schedule(schedule.id).next_run_at
    assert due is not None
    wait_for(lambda: utcnow() > due, 10, "the armed slot to fall due")
    assert backfill_window(engine, schedule.id, due - timedelta(seconds=1), due).queued == 1

    worker = engine.start_worker()

    wait_for(lambda: len(engine.scheduled_runs(schedule.id)) >= 2, 30, "the chain to go on after the slot")
    wait_for(
        lambda: [run.status for run in engine.runs(schedule.id, TriggeredBy.BACKFILL)] == [RunStatus.SUCCESS],
        15,
        "the backfilled run to succeed",
    )
    runs_of_the_slot = [run for run in engine.runs(schedule.id) if run.scheduled_for == due]
    assert [run.triggered_by for run in runs_of_the_slot] == [TriggeredBy.BACKFILL]
    assert all(run.scheduled_for > due for run in engine.scheduled_runs(schedule.id))
    assert "already had their entry" in worker.log()
