"""Faults lose no schedule and never run a slot twice: duplicates, kills, purges, restarts, downtime, races."""

from __future__ import annotations

import os
import random
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from shared import healing, schedules
from shared.db import utcnow
from shared.messaging import Outgoing, TickSlot, tick_message
from shared.models import RunStatus, TriggeredBy
from tests.conftest import wait_for
from tests.worker.conftest import Engine


def assert_each_slot_ran_once(engine: Engine, schedule_id: int) -> None:
    slots = Counter(run.scheduled_for for run in engine.scheduled_runs(schedule_id) if run.attempt == 1)
    assert [slot for slot, count in slots.items() if count > 1] == []


def test_the_same_tick_published_three_times_runs_once(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(scheduleType="interval", intervalMs=3000)
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


def test_a_worker_killed_mid_run_leaves_the_chain_going_and_the_run_abandoned(make_engine) -> None:
    engine: Engine = make_engine(simulated_work_ms=3000, task_time_limit_s=4)
    doomed = engine.start_worker()
    long_run = engine.create(name="long", scheduleType="manual")
    chain = engine.create(name="chain", scheduleType="interval", intervalMs=2000)

    run = schedules.run_now(engine.runtime, long_run.id)
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
    [abandoned] = engine.runs(long_run.id)
    assert abandoned.status == RunStatus.ABANDONED and "lease" in (abandoned.error_message or "")
    assert_each_slot_ran_once(engine, chain.id)
    assert "Traceback" not in survivor.log()


def test_the_pump_heals_every_chain_after_the_queues_are_purged(engine: Engine) -> None:
    worker = engine.start_worker()
    chains = [engine.create(name=f"chain {n}", scheduleType="interval", intervalMs=2000) for n in range(3)]
    for chain in chains:
        engine.wait_for_runs(chain.id, 1, timeout_s=15)

    worker.terminate()  # its in-memory delayed ticks go back to RabbitMQ...
    assert engine.purge_queues() >= len(chains)  # ...and are wiped there
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
        assert resumed.missed_slots > 0, "the slots lost while the chain was broken are recorded, not hidden"
        assert_each_slot_ran_once(engine, chain.id)
        # The chain stays on its grid: every slot is the first one plus whole intervals.
        first = runs[0].scheduled_for
        assert all((run.scheduled_for - first) % timedelta(seconds=2) == timedelta(0) for run in runs)


def test_slots_missed_while_everything_was_down_run_once_coalesced(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(scheduleType="interval", intervalMs=1000)
    engine.wait_for_runs(schedule.id, 2, timeout_s=15)

    worker.terminate()
    stopped_slot = engine.schedule(schedule.id).next_run_at
    assert stopped_slot is not None
    wait_for(lambda: utcnow() > stopped_slot + timedelta(seconds=5), 15, "five slots to pass with no worker")
    restarted_at = utcnow()
    engine.start_worker()

    runs = engine.wait_for_runs(schedule.id, len(engine.scheduled_runs(schedule.id)) + 3, timeout_s=20)
    [coalesced] = [run for run in runs if run.scheduled_for == stopped_slot]
    assert coalesced.missed_slots >= 5
    after = [run for run in runs if run.scheduled_for > stopped_slot]
    # The chain continues from the next future slot, on its original grid.
    assert after[0].scheduled_for > restarted_at
    assert after[0].scheduled_for == stopped_slot + (coalesced.missed_slots + 1) * timedelta(seconds=1)
    assert_each_slot_ran_once(engine, schedule.id)


def test_edits_racing_ticks_never_run_a_slot_twice(engine: Engine) -> None:
    worker = engine.start_worker()
    schedule = engine.create(scheduleType="interval", intervalMs=1000)
    stop = threading.Event()
    edits = Counter()
    jitter = random.Random(7)

    def keep_editing() -> None:
        # Edits land at random moments around the claims: most keep the slot (new key, same slot), every
        # fortieth moves it (a new interval, re-anchored on now).
        while not stop.wait(jitter.uniform(0.01, 0.1)):
            n = edits["total"]
            fields = {"intervalMs": 1000 + (n // 40 % 2) * 500} if n % 40 == 39 else {"name": f"race {n}"}
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


def test_sigterm_drains_the_run_in_flight(make_engine) -> None:
    engine: Engine = make_engine(simulated_work_ms=3000)
    worker = engine.start_worker()
    schedule = engine.create(scheduleType="manual")

    schedules.run_now(engine.runtime, schedule.id)
    wait_for(lambda: engine.runs(schedule.id)[0].status == RunStatus.RUNNING, 15, "the run to start")
    assert worker.terminate(timeout_s=30) == 0
    [run] = engine.runs(schedule.id, TriggeredBy.MANUAL)
    assert run.status == RunStatus.SUCCESS and run.duration_ms >= 3000


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
    chain = engine.create(scheduleType="interval", intervalMs=1000)
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
    # Runs that finished while the server was away still record their outcome: none is left "running".
    wait_for(
        lambda: all(r.status == RunStatus.SUCCESS for r in engine.scheduled_runs(chain.id)),
        20,
        "every run to record its success",
    )
