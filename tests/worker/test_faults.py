"""Faults lose no schedule and never run a slot twice: duplicates, kills, purges, restarts, downtime, races."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pika
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared import healing
from shared.db import utcnow
from shared.messaging import RUN_QUEUE, Outgoing, TickSlot, tick_message
from shared.models import RunStatus, TaskRunHistory, TaskSchedule
from tests.conftest import wait_for
from tests.worker.conftest import Engine, run_now


def assert_each_slot_ran_once(engine: Engine, schedule_id: int) -> None:
    slots = Counter(run.scheduled_for for run in engine.scheduled_runs(schedule_id) if run.attempt == 1)
    assert [slot for slot, count in slots.items() if count > 1] == []


def assert_the_ledger_holds_every_slot_once(engine: Engine, schedule_id: int, interval: timedelta) -> None:
    """Every slot of an interval chain, from its first to its last entry, has exactly one entry: its run, or
    its place in a missed range, or a skipped entry. None twice, none without a trace."""
    slots: list[datetime] = []
    for entry in engine.ledger(schedule_id):
        assert entry.scheduled_for is not None
        if entry.status == RunStatus.MISSED:
            assert entry.last_slot is not None
            covered = [entry.scheduled_for + k * interval for k in range(entry.missed_slots)]
            assert covered[-1] == entry.last_slot, "a missed range's count matches its first and last slot"
            slots.extend(covered)
        elif entry.attempt <= 1:  # a retry's later attempts share their slot with attempt 1
            slots.append(entry.scheduled_for)
    assert [slot for slot, count in Counter(slots).items() if count > 1] == [], "no slot twice"
    ordered = sorted(slots)
    gaps = [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b - a != interval]
    assert gaps == [], "no slot without a trace"


def test_the_same_tick_published_three_times_runs_once(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=3000)
    armed = engine.schedule(schedule.id)
    assert armed.next_run_at and armed.dedupe_key
    delay_ms = int((armed.next_run_at - utcnow()).total_seconds() * 1000)
    copy = Outgoing(tick_message(0, [TickSlot(schedule.id, armed.next_run_at, armed.dedupe_key)]), delay_ms)
    # Two more copies of the tick already in the broker, as a redelivery would make.
    engine.runtime.publisher.publish([copy, copy])

    engine.wait_for_runs(schedule.id, 2, timeout_s=15)
    runs = engine.scheduled_runs(schedule.id)
    assert [run.scheduled_for for run in runs][:2] == [
        armed.next_run_at,
        armed.next_run_at + timedelta(seconds=3),
    ]
    assert_each_slot_ran_once(engine, schedule.id)
    # The duplicates were stopped by the row's key/slot check, not by the unique index behind it.
    assert "already has a run" not in worker.log()


def test_a_worker_killed_mid_run_leaves_the_chain_going_and_the_run_abandoned_then_retried(
    make_engine,
) -> None:
    engine: Engine = make_engine(simulated_work_ms=3000, task_time_limit_s=4)
    doomed = engine.start_worker()
    long_run = engine.create(name="long", schedule_type="manual")
    chain = engine.create(name="chain", schedule_type="interval", interval_ms=2000)

    run = run_now(engine.runtime, long_run.id)
    assert run is not None
    wait_for(lambda: engine.runs(long_run.id)[0].status == RunStatus.RUNNING, 15, "the long run to start")

    doomed.kill()  # SIGKILL: no drain, no outcome recorded, the delivery goes back to RabbitMQ
    killed_at = utcnow()
    survivor = engine.start_worker()
    # The survivor receives the redelivered message and must not start the run again.
    chain_runs = engine.wait_for_runs(chain.id, len(engine.scheduled_runs(chain.id)) + 3, timeout_s=20)
    assert any(r.scheduled_for > killed_at for r in chain_runs), "the chain keeps going on the survivor"
    assert engine.runs(long_run.id)[0].status == RunStatus.RUNNING

    lease_ends = engine.runs(long_run.id)[0].lease_expires_at
    assert lease_ends is not None
    wait_for(lambda: utcnow() > lease_ends, 30, "the lease to run out")
    healing.pump(engine.runtime)
    abandoned = engine.runs(long_run.id)[0]
    assert abandoned.status == RunStatus.ABANDONED and "lease" in (abandoned.error_message or "")
    # Its task type allows more attempts: the survivor runs the next one (execution is at least once).
    wait_for(
        lambda: (
            [(r.attempt, r.status) for r in engine.runs(long_run.id)]
            == [(1, RunStatus.ABANDONED), (2, RunStatus.SUCCESS)]
        ),
        30,
        "the abandoned run's next attempt to succeed",
    )
    assert_each_slot_ran_once(engine, chain.id)
    assert "Traceback" not in survivor.log()


def test_the_pump_heals_every_chain_after_the_queues_are_purged(engine: Engine) -> None:
    worker = engine.start_worker()
    chains = [engine.create(name=f"chain {n}", schedule_type="interval", interval_ms=2000) for n in range(3)]
    for chain in chains:
        engine.wait_for_runs(chain.id, 1, timeout_s=15)

    worker.terminate()  # its in-memory delayed ticks go back to RabbitMQ...
    # ...and are wiped there (chains whose slots fall in one bucket share a tick message, so at least one).
    assert engine.purge_queues() >= 1
    purged_at = utcnow()
    engine.start_worker()
    counts = {chain.id: len(engine.scheduled_runs(chain.id)) for chain in chains}

    def healed() -> bool:
        healing.pump(engine.runtime)  # the beat runs this every minute; here, as often as we poll
        return all(len(engine.scheduled_runs(c.id)) >= counts[c.id] + 2 for c in chains)

    wait_for(healed, engine.settings.pump_grace_s + 20, "every chain to fire again", interval_s=0.5)
    for chain in chains:
        runs = engine.scheduled_runs(chain.id)
        resumed = next(run for run in runs if run.started_at and run.started_at > purged_at)
        assert resumed.started_at - purged_at < timedelta(seconds=engine.settings.pump_grace_s + 10)
        missed = [entry for entry in engine.ledger(chain.id) if entry.status == RunStatus.MISSED]
        assert missed, "the slots lost while the chain was broken are recorded, not hidden"
        assert_each_slot_ran_once(engine, chain.id)
        assert_the_ledger_holds_every_slot_once(engine, chain.id, timedelta(seconds=2))
        # The chain stays on its grid: every slot is the first one plus whole intervals.
        first = runs[0].scheduled_for
        assert all((run.scheduled_for - first) % timedelta(seconds=2) == timedelta(0) for run in runs)


def test_slots_missed_while_everything_was_down_run_once_coalesced(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000)
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    worker.terminate()
    stopped_slot = engine.schedule(schedule.id).next_run_at
    assert stopped_slot is not None
    wait_for(lambda: utcnow() > stopped_slot + timedelta(seconds=5), 15, "five slots to pass with no worker")
    restarted_at = utcnow()
    engine.start_worker()

    runs = engine.wait_for_runs(schedule.id, len(engine.scheduled_runs(schedule.id)) + 3, timeout_s=20)
    # Coalesced (the default misfire policy): the slots that passed are one missed entry, the latest runs.
    [missed] = [entry for entry in engine.ledger(schedule.id) if entry.status == RunStatus.MISSED]
    assert missed.scheduled_for == stopped_slot and missed.missed_slots >= 5
    assert missed.last_slot == stopped_slot + (missed.missed_slots - 1) * timedelta(seconds=1)
    after = [run for run in runs if run.scheduled_for > stopped_slot]
    assert after[0].scheduled_for == missed.last_slot + timedelta(seconds=1), "the latest due slot ran"
    # The chain continues from the next future slot, on its original grid.
    assert after[1].scheduled_for > restarted_at
    assert (after[1].scheduled_for - stopped_slot) % timedelta(seconds=1) == timedelta(0)
    assert_each_slot_ran_once(engine, schedule.id)
    assert_the_ledger_holds_every_slot_once(engine, schedule.id, timedelta(seconds=1))


def test_edits_racing_ticks_never_run_a_slot_twice(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(schedule_type="interval", interval_ms=1000)
    stop = threading.Event()
    edits = Counter()
    jitter = random.Random(7)

    def keep_editing() -> None:
        # Edits land at random moments around the claims: most keep the slot (new key, same slot), every
        # fortieth moves it (a new interval, re-anchored on now).
        while not stop.wait(jitter.uniform(0.01, 0.1)):
            n = edits["total"]
            fields = {"interval_ms": 1000 + (n // 40 % 2) * 500} if n % 40 == 39 else {"name": f"race {n}"}
            engine.update(schedule.id, **fields)
            edits["total"] += 1

    editor = threading.Thread(target=keep_editing)
    editor.start()
    try:
        engine.wait_for_runs(schedule.id, 12, timeout_s=40)
    finally:
        stop.set()
        editor.join()
    assert edits["total"] > 100
    assert_each_slot_ran_once(engine, schedule.id)
    assert "already has a run" not in worker.log()


def restart_rabbitmq() -> None:
    """Every connection is closed; durable queues and persistent messages (and unacked deliveries) survive."""
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
    subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)


def restart_postgresql() -> None:
    """Every connection of every process is cut; claims and outcomes in flight fail and are retried."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=120,
    )


@pytest.mark.parametrize("restart", [restart_rabbitmq, restart_postgresql], ids=["rabbitmq", "postgresql"])
def test_chains_survive_a_server_restart(engine: Engine, restart: Callable[[], None]) -> None:
    worker = engine.start_worker()
    chain = engine.create(schedule_type="interval", interval_ms=1000)
    engine.wait_for_runs(chain.id, 2, timeout_s=15)

    restart()
    restarted_at = utcnow()
    count = len(engine.scheduled_runs(chain.id))

    def fired_again() -> bool:
        healing.pump(engine.runtime)  # the beat's minute, as often as we poll
        return len(engine.scheduled_runs(chain.id)) >= count + 3

    wait_for(
        fired_again, engine.settings.pump_grace_s + 40, "the chain to fire after the restart", interval_s=1
    )
    assert any(r.queued_at > restarted_at for r in engine.scheduled_runs(chain.id))
    assert_each_slot_ran_once(engine, chain.id)
    assert worker.process.poll() is None, "the worker rides out the outage"
    # Runs that finished while the server was away still record their outcome: none is left "running". One
    # whose outcome could not be recorded within its lease's margin was called abandoned and retried: its slot
    # succeeds through its next attempt.

    def every_slot_succeeded() -> bool:
        healing.pump(engine.runtime)  # the beat's minute: it calls a run abandoned once its lease is out
        runs = engine.scheduled_runs(chain.id)
        succeeded = {run.scheduled_for for run in runs if run.status == RunStatus.SUCCESS}
        return succeeded == {run.scheduled_for for run in runs}

    wait_for(every_slot_succeeded, 30, "every slot to record its success")
    assert_the_ledger_holds_every_slot_once(engine, chain.id, timedelta(seconds=1))


def messages_waiting(engine: Engine, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(engine.settings.broker_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def sessions_of(engine: Engine, application_name: str, waiting_on_a_lock: bool = False) -> int:
    """How many PostgreSQL sessions a process started with ``PGAPPNAME=application_name`` holds (only those
    blocked on a row lock, when ``waiting_on_a_lock``)."""
    with engine.runtime.sessions() as session:
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                    " AND (NOT :waiting OR wait_event_type = 'Lock')"
                ),
                {"name": application_name, "waiting": waiting_on_a_lock},
            )
        )


def hold_running_rows(session: Session, schedule_id: int) -> set[int]:
    """Lock the rows of ``schedule_id``'s running runs in ``session``'s transaction, as a slow commit would
    hold them: outcomes recorded for them wait, uncommitted, until it ends. Returns their ids."""
    return set(
        session.scalars(
            select(TaskRunHistory.id)
            .where(TaskRunHistory.schedule_id == schedule_id, TaskRunHistory.status == RunStatus.RUNNING)
            .with_for_update()
        )
    )


def queue_manual_runs(engine: Engine, count: int) -> TaskSchedule:
    """A manual schedule with ``count`` Run Now requests queued."""
    schedule = engine.create(schedule_type="manual")
    for _ in range(count):
        assert run_now(engine.runtime, schedule.id) is not None
    return schedule


def wait_for_runs_in(engine: Engine, schedule_id: int, status: str, count: int, what: str) -> None:
    wait_for(
        lambda: sum(run.status == status for run in engine.runs(schedule_id)) >= count,
        20,
        what,
        interval_s=0.02,
    )


def test_a_worker_killed_while_recording_outcomes_keeps_every_outcome_it_recorded(make_engine) -> None:
    # Two processes of four threads, runs of 250 ms: outcomes are recorded a batch at a time, continually.
    engine: Engine = make_engine(
        simulated_work_ms=250, task_time_limit_s=2, run_lease_margin_s=1, worker_processes=2
    )
    doomed = engine.start_worker(PGAPPNAME="doomed-worker")
    schedule = queue_manual_runs(engine, 48)
    wait_for_runs_in(engine, schedule.id, RunStatus.SUCCESS, 8, "the first outcomes to be recorded")

    # Hold the rows of the runs in flight, as a slow commit would: their outcomes reach the completer, whose
    # batch then waits, uncommitted, inside its transaction. The worker is killed right there.
    with engine.runtime.sessions() as blocker:
        held = hold_running_rows(blocker, schedule.id)
        assert held, "runs in flight when the first outcomes were recorded"
        wait_for(
            lambda: sessions_of(engine, "doomed-worker", waiting_on_a_lock=True) >= 1,
            15,
            "the completer to be recording a batch",
        )
        doomed.kill()  # SIGKILL: outcomes in hand and batches in flight die with it
        killed_at = utcnow()
        blocker.rollback()
    # Once the dead worker's sessions are gone, each of its transactions has committed or rolled back.
    wait_for(lambda: sessions_of(engine, "doomed-worker") == 0, 15, "the dead worker's sessions to end")
    before = {run.id: run for run in engine.runs(schedule.id)}
    by_status = Counter(run.status for run in before.values())
    assert by_status[RunStatus.SUCCESS] >= 8 and by_status[RunStatus.QUEUED] >= 1, by_status
    assert set(by_status) <= {RunStatus.SUCCESS, RunStatus.RUNNING, RunStatus.QUEUED}, by_status
    assert {run.id for run in before.values() if run.status == RunStatus.RUNNING} >= held

    survivor = engine.start_worker()  # receives every unacknowledged delivery again
    leases_end = max(
        run.lease_expires_at
        for run in before.values()
        if run.status == RunStatus.RUNNING and run.lease_expires_at
    )

    def settled() -> list | None:
        if utcnow() > leases_end:
            healing.pump(engine.runtime)  # the beat's minute, as often as we poll
        runs = engine.runs(schedule.id)
        return runs if all(run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) for run in runs) else None

    after = {
        run.id: run for run in wait_for(settled, 60, "every run to reach a final status", interval_s=0.2)
    }

    assert after.keys() >= before.keys(), "no run was lost"
    # Each run abandoned with the worker gets its next attempt (its task type allows three), which succeeds.
    abandoned = [run_id for run_id, was in before.items() if was.status == RunStatus.RUNNING]
    retries = [run for run_id, run in after.items() if run_id not in before]
    assert sorted((run.attempt, run.status) for run in retries) == [(2, RunStatus.SUCCESS)] * len(abandoned)
    for run_id, was in before.items():
        now = after[run_id]
        if was.status == RunStatus.SUCCESS:
            # A recorded outcome stands: never abandoned, never run again by its redelivered message.
            assert (now.status, now.started_at, now.completed_at) == (
                RunStatus.SUCCESS,
                was.started_at,
                was.completed_at,
            ), run_id
        elif was.status == RunStatus.RUNNING:
            # Its outcome died with the worker: abandoned once the lease ran out, and not started again (its
            # next attempt is a row of its own).
            assert now.status == RunStatus.ABANDONED and "lease" in (now.error_message or ""), run_id
            assert now.started_at == was.started_at, run_id
        else:
            # Never started by the dead worker: the survivor ran it, once.
            assert now.status == RunStatus.SUCCESS and now.started_at > killed_at, run_id
    assert all(run.lease_expires_at is None for run in after.values())
    assert "Traceback" not in survivor.log()


@pytest.mark.parametrize("moment", ["handlers_running", "batch_in_flight"])
def test_sigterm_records_every_outcome_in_hand_and_abandons_none(make_engine, moment: str) -> None:
    engine: Engine = make_engine(simulated_work_ms=1000, worker_processes=2)  # eight runs at once
    worker = engine.start_worker(PGAPPNAME="draining-worker")
    schedule = queue_manual_runs(engine, 16)  # eight to run, eight waiting in the prefetch and the queue
    wait_for_runs_in(engine, schedule.id, RunStatus.RUNNING, 8, "eight runs to be in flight")
    if moment == "handlers_running":
        assert worker.terminate(timeout_s=30) == 0
    else:
        # The handlers finish and hand their outcomes in; the completer's batch is held mid-transaction when
        # SIGTERM arrives, and must still commit before the processes exit.
        with engine.runtime.sessions() as blocker:
            assert hold_running_rows(blocker, schedule.id)
            wait_for(
                lambda: sessions_of(engine, "draining-worker", waiting_on_a_lock=True) >= 1,
                15,
                "the completer to be recording a batch",
            )
            worker.process.send_signal(signal.SIGTERM)
            # Every Dramatiq process (ticks, system crons, two of runs) has begun its drain.
            wait_for(lambda: worker.log().count("Shutting down...") >= 4, 15, "the drain to begin")
            assert worker.process.poll() is None
            blocker.rollback()
        # The one SIGTERM drains it: a second would mean "stop at once".
        assert worker.process.wait(timeout=30) == 0

    runs = engine.runs(schedule.id)
    started = [run for run in runs if run.started_at is not None]
    assert len(started) >= 8
    for run in started:
        assert run.status == RunStatus.SUCCESS, (run.id, run.status, run.error_message)
        assert run.completed_at is not None and run.duration_ms >= 1000
        assert run.lease_expires_at is None
    # Runs not started stay queued, their messages handed back to RabbitMQ for the next worker; the drained
    # runs' messages were acknowledged once their outcomes had committed.
    waiting = [run for run in runs if run.started_at is None]
    assert all(run.status == RunStatus.QUEUED for run in waiting)
    assert messages_waiting(engine, RUN_QUEUE) == len(waiting)
    # A pump long after every lease would have run out finds nothing to abandon.
    later = utcnow() + engine.runtime.lease + timedelta(seconds=1)
    assert healing.abandon_runs_of_vanished_workers(engine.runtime, later) == 0
    assert [run.status for run in engine.runs(schedule.id)] == [run.status for run in runs]
    assert "Traceback" not in worker.log()
