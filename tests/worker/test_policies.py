"""A schedule's policies against real workers, RabbitMQ and PostgreSQL: what each misfire policy runs after an
outage and after a pause, the overlap policy with runs longer than their interval, jitter, a schedule whose
stored timing breaks, and disables racing due slots. Every test ends by checking the ledger: every slot once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import text

from shared.db import utcnow
from shared.models import RunStatus, TaskRunHistory
from shared.schedules import schedules_query, set_enabled_where
from shared.timing import jitter
from tests.conftest import wait_for
from tests.worker.conftest import Engine
from tests.worker.test_faults import assert_each_slot_ran_once, assert_the_ledger_holds_every_slot_once

SECOND = timedelta(seconds=1)


def missed_entries(engine: Engine, schedule_id: int) -> list[TaskRunHistory]:
    return [entry for entry in engine.ledger(schedule_id) if entry.status == RunStatus.MISSED]


def stop_for_five_slots(engine: Engine, schedule_id: int, stop: Callable[[], None]) -> datetime:
    """Stop whatever runs the chain, let five one-second slots pass, and return the first slot not run."""
    stop()
    stopped = engine.schedule(schedule_id)
    stopped_slot = stopped.next_run_at or stopped.paused_slot  # a disabled schedule keeps where it paused
    assert stopped_slot is not None
    wait_for(lambda: utcnow() > stopped_slot + 5 * SECOND, 15, "five slots to pass")
    return stopped_slot


def test_skip_runs_none_of_the_slots_an_outage_passed_and_goes_on_at_the_next(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(misfire_grace_s=1)
    worker = engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000, misfire_policy="skip")
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    stopped_slot = stop_for_five_slots(engine, schedule.id, worker.terminate)
    restarted_at = utcnow()
    engine.start_worker()

    wait_for(lambda: missed_entries(engine, schedule.id), 20, "the outage's slots to be recorded missed")
    [missed] = missed_entries(engine, schedule.id)
    assert missed.scheduled_for == stopped_slot and missed.missed_slots >= 5
    assert missed.error_message == "passed unclaimed; misfire policy skip"
    engine.wait_for_runs(schedule.id, len(engine.scheduled_runs(schedule.id)) + 2, timeout_s=15)
    after = [run for run in engine.scheduled_runs(schedule.id) if run.scheduled_for > stopped_slot]
    assert after[0].scheduled_for == missed.last_slot + SECOND and after[0].scheduled_for > restarted_at, (
        "nothing the outage passed ran: the chain went on at its next slot"
    )
    assert_the_ledger_holds_every_slot_once(engine, schedule.id, SECOND)


def test_catch_up_runs_the_oldest_slots_within_its_window_up_to_its_cap(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(misfire_grace_s=1)
    worker = engine.start_worker()
    schedule = engine.create(
        schedule_type="interval",
        interval_ms=1000,
        misfire_policy="catchUp",
        catch_up_max=2,
        catch_up_window_s=3,
    )
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    stopped_slot = stop_for_five_slots(engine, schedule.id, worker.terminate)
    engine.start_worker()

    def caught_up() -> list[TaskRunHistory] | None:
        entries = [
            e for e in engine.ledger(schedule.id) if e.scheduled_for and e.scheduled_for >= stopped_slot
        ]
        first_claim = [e for e in entries if e.queued_at == entries[0].queued_at] if entries else []
        return first_claim if any(e.status == RunStatus.MISSED for e in first_claim) else None

    first_claim = wait_for(caught_up, 20, "the first claim after the outage")
    runs = sorted(e.scheduled_for for e in first_claim if e.attempt == 1)
    missed = [e for e in first_claim if e.status == RunStatus.MISSED]
    claimed_at = first_claim[0].queued_at
    caught_up_runs, latest = runs[:2], runs[2:]
    assert len(caught_up_runs) == 2 and len(latest) <= 1, "at most the cap, and the latest if on time"
    assert all(claimed_at - slot <= 3 * SECOND for slot in caught_up_runs), "only slots within the window"
    assert caught_up_runs[1] - caught_up_runs[0] == SECOND, "the oldest of the window, in order"
    assert all(claimed_at - slot <= SECOND for slot in latest), "the latest runs only when on time"
    assert missed[0].scheduled_for == stopped_slot, "the older slots recorded missed"
    engine.wait_for_runs(schedule.id, len(engine.scheduled_runs(schedule.id)) + 2, timeout_s=15)
    assert_each_slot_ran_once(engine, schedule.id)
    assert_the_ledger_holds_every_slot_once(engine, schedule.id, SECOND)


def test_a_resume_after_a_pause_runs_one_slot_and_records_the_pause_missed(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000)
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    def pause() -> None:
        engine.update(schedule.id, enabled=False)

    stopped_slot = stop_for_five_slots(engine, schedule.id, pause)
    runs_before = len(engine.scheduled_runs(schedule.id))
    engine.update(schedule.id, enabled=True)

    wait_for(lambda: missed_entries(engine, schedule.id), 15, "the pause's slots to be recorded missed")
    [missed] = missed_entries(engine, schedule.id)
    assert missed.error_message == "passed while the schedule was disabled; misfire policy coalesce"
    assert missed.missed_slots >= 4
    # No burst: the pause's slots give one run, then the chain goes on one slot a second.
    resumed = engine.wait_for_runs(schedule.id, runs_before + 3, timeout_s=15)[runs_before:]
    assert resumed[0].scheduled_for == missed.last_slot + SECOND
    assert [b.scheduled_for - a.scheduled_for for a, b in zip(resumed, resumed[1:], strict=False)] == [
        SECOND
    ] * (len(resumed) - 1)
    assert stopped_slot <= missed.scheduled_for
    assert_the_ledger_holds_every_slot_once(engine, schedule.id, SECOND)


def test_overlap_skip_never_runs_two_slots_of_a_schedule_at_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(simulated_work_ms=2500)  # every run outlasts two slots
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000, overlap_policy="skip")

    wait_for(
        lambda: len([e for e in engine.ledger(schedule.id) if e.status == RunStatus.SKIPPED]) >= 3,
        30,
        "slots to be skipped while a run is running",
    )
    wait_for(
        lambda: len([r for r in engine.scheduled_runs(schedule.id) if r.status == RunStatus.SUCCESS]) >= 2,
        30,
        "two runs to succeed",
    )
    runs = [run for run in engine.scheduled_runs(schedule.id) if run.started_at and run.completed_at]
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.started_at >= earlier.completed_at, "a run starts only once the previous one finished"
    skipped = [e for e in engine.ledger(schedule.id) if e.status == RunStatus.SKIPPED]
    assert all(e.error_message and e.error_message.startswith("overlap policy skip: run ") for e in skipped)
    assert_the_ledger_holds_every_slot_once(engine, schedule.id, SECOND)


def test_a_run_starts_at_its_slot_plus_its_jitter(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=4000, jitter_s=3)

    runs = engine.wait_for_runs(schedule.id, 3, timeout_s=30, status=RunStatus.SUCCESS)
    for run in runs:
        assert run.scheduled_for is not None and run.started_at is not None
        starts_at = run.scheduled_for + jitter(schedule.id, run.scheduled_for, 3)
        assert starts_at <= run.started_at < starts_at + 2 * SECOND
    assert len({run.started_at - run.scheduled_for for run in runs}) > 1, "each slot its own offset"


def test_a_schedule_whose_stored_timezone_no_longer_exists_stops_broken_and_says_why(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(schedule_type="cron", cron_expression="* * * * * */2", timezone="UTC")
    engine.wait_for_runs(schedule.id, 1, timeout_s=15)
    with engine.runtime.sessions.begin() as session:  # what an upgrade of the zone database could leave
        session.execute(
            text("UPDATE task_schedules SET timezone = 'Mars/Olympus' WHERE id = :id"), {"id": schedule.id}
        )

    wait_for(lambda: engine.schedule(schedule.id).broken_reason, 15, "the claim to mark the schedule broken")
    broken = engine.schedule(schedule.id)
    assert broken.next_run_at is None
    assert broken.broken_reason == (
        "its timing no longer gives slots (timezone: unknown IANA timezone 'Mars/Olympus'): "
        "edit its timing to resume it"
    )
    runs = engine.wait_for_runs(schedule.id, 2, timeout_s=15)
    wait_for(
        lambda: all(r.status == RunStatus.SUCCESS for r in engine.scheduled_runs(schedule.id)),
        15,
        "the slot armed before it broke to run",
    )
    assert "Traceback" not in worker.log()

    engine.update(schedule.id, timezone="Europe/Berlin")  # an edit of its timing mends it
    mended = engine.schedule(schedule.id)
    assert mended.broken_reason is None and mended.next_run_at is not None
    engine.wait_for_runs(schedule.id, len(runs) + 1, timeout_s=15)


def test_disables_racing_due_slots_leave_every_slot_a_trace(engine: Engine) -> None:
    engine.start_worker(WORKER_THREADS="8")
    chains = [engine.create(name=f"race {n}", schedule_type="interval", interval_ms=1000) for n in range(30)]
    for chain in chains:
        engine.wait_for_runs(chain.id, 2, timeout_s=20)

    # Paused as slots fall due: some between a slot falling due and its tick's claim.
    before_pause = utcnow()
    with engine.runtime.sessions() as session:
        set_enabled_where(engine.runtime, session, schedules_query(), enabled=False)

    def settled() -> bool:
        return all(
            run.status not in (RunStatus.QUEUED, RunStatus.RUNNING)
            for chain in chains
            for run in engine.scheduled_runs(chain.id)
        )

    wait_for(settled, 20, "every run to finish")
    for chain in chains:
        assert_the_ledger_holds_every_slot_once(engine, chain.id, SECOND)
        entries = engine.ledger(chain.id)
        last_covered = max(e.last_slot or e.scheduled_for for e in entries if e.scheduled_for)
        assert last_covered > before_pause - SECOND, "every slot due before the pause has its entry"
