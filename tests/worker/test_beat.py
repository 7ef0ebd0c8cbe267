"""The beat: real periodiq processes send the system crons; the database makes each slot run once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import dramatiq

from services.api.app import create_app
from shared.db import utcnow
from shared.messaging import SYSTEM_QUEUE
from shared.models import RunStatus, TriggeredBy
from tests.conftest import wait_for
from tests.worker.conftest import Engine


def test_two_beats_give_one_system_run_per_slot(engine: Engine) -> None:
    worker = engine.start_worker()
    beats = [engine.start_beat(), engine.start_beat()]

    def a_slot_sent_by_both() -> str | None:
        # periodiq logs "Scheduling <actor> at <slot>." for every message it sends.
        sent = [
            set(
                line.split(" at ")[-1]
                for line in beat.log().splitlines()
                if "Scheduling Actor(" in line and "pump" in line
            )
            for beat in beats
        ]
        common = sent[0] & sent[1]
        return sorted(common)[0] if common else None

    wait_for(a_slot_sent_by_both, 75, "both beats to send the pump for the same minute", interval_s=1)
    wait_for(lambda: "already claimed" in worker.log(), 20, "the worker to refuse the second copy")

    system_runs = engine.runs(triggered_by=TriggeredBy.SYSTEM)
    per_slot = Counter((run.system_task, run.scheduled_for) for run in system_runs)
    assert per_slot and max(per_slot.values()) == 1
    wait_for(
        lambda: all(r.status == RunStatus.SUCCESS for r in engine.runs(triggered_by=TriggeredBy.SYSTEM)),
        20,
        "the system runs to succeed",
    )
    pump_runs = engine.runs(system_task="pump")
    assert pump_runs and all(run.scheduled_for.second == 0 for run in pump_runs)

    # The API reports the real last run, and the next slot, of each system cron.
    asked_at = utcnow()
    listed = create_app(runtime=engine.runtime).test_client().get("/api/scheduler/system-tasks").get_json()
    answered_at = utcnow()
    pump = next(task for task in listed if task["id"] == "pump")
    assert pump["lastStatus"] == RunStatus.SUCCESS
    assert pump["lastRunAt"].startswith(pump_runs[-1].started_at.strftime("%Y-%m-%dT%H:%M:%S"))
    # The pump runs every minute: its next slot is the next whole minute (which may tick over meanwhile).
    assert datetime.fromisoformat(pump["nextRunAt"]) in {next_minute(asked_at), next_minute(answered_at)}


def next_minute(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_a_system_cron_past_the_time_limit_is_recorded_failed_at_once_not_left_to_its_lease(
    make_engine: Callable[..., Engine],
) -> None:
    # The sample cleanup does the simulated work: 5 s, against a 1 s limit and a 31 s lease.
    engine = make_engine(
        demo_task_types="true", simulated_work_ms=5000, task_time_limit_s=1, run_lease_margin_s=30
    )
    worker = engine.start_worker()
    engine.runtime.broker.enqueue(
        dramatiq.Message(
            queue_name=SYSTEM_QUEUE, actor_name="session_cleanup", args=(), kwargs={}, options={}
        )
    )

    [run] = wait_for(
        lambda: (
            [r for r in engine.runs(system_task="session_cleanup") if r.status != RunStatus.RUNNING] or None
        ),
        20,
        "the cleanup's run to finish",
    )
    assert (run.status, run.error_message) == (RunStatus.FAILED, "time limit exceeded (1 s)")
    assert run.completed_at - run.started_at < timedelta(seconds=10), "recorded by the worker, not by a lease"
    assert worker.process.poll() is None
