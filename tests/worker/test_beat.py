"""The beat: real periodiq processes send the system crons; the database makes each slot run once."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from services.api.app import create_app
from shared.db import utcnow
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
