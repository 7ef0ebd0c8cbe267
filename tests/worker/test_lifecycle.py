"""Edits, disables, deletes and Run Now, against real worker processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from shared import schedules
from shared.db import utcnow
from shared.models import RunStatus, TriggeredBy
from tests.conftest import wait_for
from tests.worker.conftest import Engine, delete_schedule, run_now


def observe_quiet(count_runs: Callable[[], int], seconds: float) -> None:
    """Assert that the run count stays put for ``seconds``: proving an absence takes a window of time."""
    before = count_runs()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert count_runs() == before, "a run started after the schedule should have stopped"
        time.sleep(0.2)


def test_edit_moves_the_next_slot_and_later_runs_follow_it(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=2000)
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    edited_at = utcnow()
    edited = engine.update(schedule.id, interval_ms=3000)
    assert edited.next_run_at is not None
    assert timedelta(seconds=2.9) < edited.next_run_at - edited_at < timedelta(seconds=3.1)
    before = len(engine.scheduled_runs(schedule.id))
    runs = engine.wait_for_runs(schedule.id, before + 3, timeout_s=20)
    new_slots = [run.scheduled_for for run in runs if run.scheduled_for >= edited.next_run_at]
    assert new_slots[:3] == [edited.next_run_at + k * timedelta(seconds=3) for k in range(3)]


def test_disabled_schedule_never_fires_again(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000)
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    disabled = engine.update(schedule.id, enabled=False)
    assert disabled.next_run_at is None
    wait_for(
        lambda: all(
            r.status != RunStatus.RUNNING and r.status != RunStatus.QUEUED
            for r in engine.scheduled_runs(schedule.id)
        ),
        10,
        "in-flight runs to finish",
    )
    observe_quiet(lambda: len(engine.scheduled_runs(schedule.id)), seconds=4)  # four intervals

    enabled = engine.update(schedule.id, enabled=True)
    assert enabled.next_run_at is not None
    runs_before = len(engine.scheduled_runs(schedule.id))
    engine.wait_for_runs(schedule.id, runs_before + 1, timeout_s=10)


def test_deleted_schedule_stops_without_an_error(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000)
    engine.wait_for_runs(schedule.id, 2, timeout_s=15, status=RunStatus.SUCCESS)

    assert delete_schedule(engine.runtime, schedule.id)
    # Three intervals: a tick already in flight arrives meanwhile and must be dropped quietly.
    observe_quiet(lambda: len(engine.runs(triggered_by=TriggeredBy.SCHEDULE)), seconds=3)
    history = engine.runs(triggered_by=TriggeredBy.SCHEDULE)
    assert history and all(
        (run.schedule_id, run.schedule_name) == (schedule.id, schedule.name) for run in history
    )
    log = worker.log()
    assert "ERROR" not in log and "Traceback" not in log, log


def test_run_now_adds_one_manual_run_and_leaves_the_chain_alone(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=60_000)
    slot_before = engine.schedule(schedule.id).next_run_at

    run = run_now(engine.runtime, schedule.id)
    assert run is not None and run.status == RunStatus.QUEUED

    def finished() -> bool:
        manual = engine.runs(schedule.id, TriggeredBy.MANUAL)
        return len(manual) == 1 and manual[0].status == RunStatus.SUCCESS

    wait_for(finished, 15, "the manual run to succeed")
    assert engine.schedule(schedule.id).next_run_at == slot_before
    assert engine.scheduled_runs(schedule.id) == []
    with engine.runtime.sessions() as session:
        shown = schedules.get_schedule(session, schedule.id)
    assert shown is not None and shown.last_run_at == engine.runs(schedule.id)[0].started_at


def test_run_now_on_a_disabled_schedule_runs(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="cron", cron_expression="0 9 * * *", enabled=False)
    assert engine.schedule(schedule.id).next_run_at is None

    run_now(engine.runtime, schedule.id)
    wait_for(
        lambda: [r.status for r in engine.runs(schedule.id, TriggeredBy.MANUAL)] == [RunStatus.SUCCESS],
        15,
        "the manual run of a disabled schedule to succeed",
    )
    assert engine.schedule(schedule.id).next_run_at is None
