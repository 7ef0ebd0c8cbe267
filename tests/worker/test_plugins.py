"""Real work through plugins, with real worker processes: a task type installed beside cronwork (the example
package in examples/), its secret field, per-schedule run settings, Run Now's override, and a type that is no
longer installed."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import update

from shared import schedules
from shared.models import RunStatus, TaskSchedule
from tests.conftest import wait_for
from tests.worker.conftest import Engine, run_now

SIGNING_KEY = "example-signing-key-4f1c9b"


def example_schedule(engine: Engine, path: Path, **fields: object) -> TaskSchedule:
    return engine.create(
        task_type="example_append_line",
        config={
            "path": str(path),
            "line": "{scheduledFor} run {runId} attempt {attempt}",
            "signature": SIGNING_KEY,
        },
        **fields,
    )


def finished_runs(engine: Engine, schedule_id: int, count: int) -> list:
    return wait_for(
        lambda: (
            runs if len(runs := [r for r in engine.runs(schedule_id) if r.completed_at]) >= count else None
        ),
        30,
        f"{count} finished runs of schedule {schedule_id}",
    )


def test_a_plugins_task_type_runs_with_its_slot_run_id_and_secret_and_the_secret_stays_hidden(
    make_engine, tmp_path: Path
) -> None:
    engine: Engine = make_engine(secret_keys=Fernet.generate_key().decode())
    worker = engine.start_worker()
    lines = tmp_path / "lines.txt"

    schedule = example_schedule(engine, lines, schedule_type="interval", interval_ms=1000)
    runs = finished_runs(engine, schedule.id, 2)[:2]

    assert [run.status for run in runs] == [RunStatus.SUCCESS] * 2
    written = lines.read_text().splitlines()
    for run in runs:
        slot = run.scheduled_for.isoformat().replace("+00:00", "Z")
        expected = f"{slot} run {run.id} attempt 1 signed"
        assert expected in written
        assert run.output == f"appended {len(expected)} characters"
    stored = engine.schedule(schedule.id).config["signature"]
    assert set(stored) == {"encrypted"} and SIGNING_KEY not in str(stored)
    assert SIGNING_KEY not in worker.log() and SIGNING_KEY not in lines.read_text()


def test_a_schedule_whose_task_type_is_no_longer_installed_fails_its_runs_saying_so(
    make_engine, tmp_path: Path
) -> None:
    engine: Engine = make_engine()
    worker = engine.start_worker()
    orphan = engine.create(schedule_type="manual")
    with engine.runtime.sessions.begin() as session:  # its plugin was uninstalled since
        session.execute(
            update(TaskSchedule).where(TaskSchedule.id == orphan.id).values(task_type="gone_plugin")
        )
    healthy = engine.create(schedule_type="manual")

    run_now(engine.runtime, orphan.id)
    run_now(engine.runtime, healthy.id)

    [failed] = finished_runs(engine, orphan.id, 1)
    assert (failed.status, failed.attempt) == (RunStatus.FAILED, 1)
    assert failed.error_message == "task type 'gone_plugin' is not installed on this worker"
    [succeeded] = finished_runs(engine, healthy.id, 1)
    assert succeeded.status == RunStatus.SUCCESS
    assert worker.process.poll() is None and "Traceback" not in worker.log()


def test_a_schedules_own_attempts_and_time_limit_override_its_task_types(make_engine, tmp_path: Path) -> None:
    engine: Engine = make_engine(simulated_work_ms=3000, retry_base_delay_ms=100)
    engine.start_worker()
    unwritable = tmp_path / "no-such-dir" / "lines.txt"
    once = engine.create(  # its task type gives 2 attempts
        task_type="example_append_line",
        schedule_type="manual",
        config={"path": str(unwritable)},
        max_attempts=1,
    )
    quick = engine.create(schedule_type="manual", time_limit_s=1)  # simulated work takes 3 s

    run_now(engine.runtime, once.id)
    run_now(engine.runtime, quick.id)

    [failed] = finished_runs(engine, once.id, 1)
    assert failed.status == RunStatus.FAILED and failed.error_message.startswith("cannot append to")
    [interrupted] = finished_runs(engine, quick.id, 1)
    assert (interrupted.status, interrupted.error_message) == (RunStatus.FAILED, "time limit exceeded (1 s)")
    assert len(engine.runs(once.id)) == 1, "no second attempt"


def test_run_now_with_a_config_override_uses_it_for_that_run_only(make_engine, tmp_path: Path) -> None:
    engine: Engine = make_engine()
    engine.start_worker()
    lines = tmp_path / "lines.txt"
    schedule = engine.create(
        task_type="example_append_line", schedule_type="manual", config={"path": str(lines), "line": "usual"}
    )

    with engine.runtime.sessions() as session:
        overridden = schedules.run_now(engine.runtime, session, schedule.id, {"line": "just this once"})
    assert overridden is not None
    finished_runs(engine, schedule.id, 1)
    run_now(engine.runtime, schedule.id)
    first, second = finished_runs(engine, schedule.id, 2)

    assert lines.read_text().splitlines() == ["just this once", "usual"]
    assert (first.config_override, second.config_override) == ({"line": "just this once"}, None)
