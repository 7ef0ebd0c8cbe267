"""A schedule's bounds against real worker processes: it runs from its start to its end, then stops, saying why."""

from __future__ import annotations

from datetime import timedelta

from shared import schedules
from shared.db import utcnow
from shared.models import RunStatus
from shared.timing import instant_text
from tests.conftest import wait_for
from tests.worker.conftest import Engine
from tests.worker.test_lifecycle import observe_quiet


def test_a_schedule_runs_from_its_start_to_its_end_and_then_stops(engine: Engine) -> None:
    engine.start_worker()
    start = (utcnow() + timedelta(seconds=3)).replace(microsecond=0)
    end = start + timedelta(seconds=6)

    schedule = engine.create(schedule_type="interval", interval_ms=2000, start_at=start, end_at=end)

    assert schedule.next_run_at == start, "an interval with a start runs first at its start"
    engine.wait_for_runs(schedule.id, 4, timeout_s=20)
    wait_for(
        lambda: all(run.status == RunStatus.SUCCESS for run in engine.scheduled_runs(schedule.id)),
        15,
        "the runs to finish",
    )
    observe_quiet(lambda: len(engine.scheduled_runs(schedule.id)), seconds=4)  # two intervals past the end
    slots = [run.scheduled_for for run in engine.scheduled_runs(schedule.id)]
    assert slots == [start + timedelta(seconds=2 * k) for k in range(4)], "its start, every 2 s, and its end"
    stored = engine.schedule(schedule.id)
    assert stored.next_run_at is None
    assert schedules.next_run_note(stored, utcnow()) == f"ended at {instant_text(end)}: no slot after its end"
