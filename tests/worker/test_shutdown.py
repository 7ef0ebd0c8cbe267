"""Shutdown as process managers send it: every signal path drains, or stops at once and records what it cut.

The paths: a signal to the launcher's PID (Kubernetes, Docker, tini), to its process group (Ctrl-C in a
terminal, many supervisors) and to every process of its tree, leaves first (systemd's default control-group
kill); SIGTERM, SIGINT and SIGHUP; and a second signal (or SIGQUIT), which means "now". Tried on ``cronwork
worker``, ``beat``, ``api`` and ``run`` as real processes against the real PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dramatiq
import psycopg
import pytest

from services.__main__ import descendants
from shared.db import utcnow
from shared.healing import INTERRUPTED
from shared.messaging import SYSTEM_QUEUE
from shared.models import RunStatus, TaskRunHistory, TriggeredBy
from tests.conftest import Service, Services, environment, free_port, http_ok, wait_for
from tests.e2e.test_run_modes import call
from tests.worker.conftest import Engine, run_now

HISTORY_RETENTION = "history_retention"  # the system task's id, its actor's name
Sender = Callable[[Service, signal.Signals], None]  # one of the paths a stop signal takes


def to_the_process(service: Service, signum: signal.Signals) -> None:
    """To the launcher's PID only: Kubernetes, Docker and tini."""
    os.kill(service.process.pid, signum)


def to_the_group(service: Service, signum: signal.Signals) -> None:
    """To the launcher's process group: a terminal's Ctrl-C, and supervisors that kill the group."""
    os.killpg(service.process.pid, signum)


def to_the_tree(service: Service, signum: signal.Signals) -> None:
    """To every process of the tree, leaves first: systemd's control-group kill, where no process can count on
    hearing it from its parent first."""
    for pid in [*reversed(descendants(service.process.pid)), service.process.pid]:
        with contextlib.suppress(ProcessLookupError):  # a child that has exited already
            os.kill(pid, signum)


def exit_code(service: Service, within_s: float) -> int:
    """The process's exit code, once it has exited; fails (and kills it) if it takes longer than ``within_s``."""
    try:
        return service.process.wait(within_s)
    except subprocess.TimeoutExpired:
        service.kill()
        raise AssertionError(f"{service.role} still running after {within_s} s:\n{service.log()}") from None


def the_run(engine: Engine, run_id: int) -> TaskRunHistory:
    with engine.runtime.sessions() as session:
        run = session.get(TaskRunHistory, run_id)
        assert run is not None
        return run


def a_run_in_progress(engine: Engine, **schedule: object) -> TaskRunHistory:
    """A Run Now of a manual schedule, once a worker has started it."""
    manual = engine.create(name="long", schedule_type="manual", **schedule)
    queued = run_now(engine.runtime, manual.id)
    assert queued is not None
    wait_for(lambda: the_run(engine, queued.id).status == RunStatus.RUNNING, 30, "the run to start")
    return queued


def unfinished_runs(engine: Engine) -> list[tuple[int, str | None, str]]:
    """The runs left queued or running, system ones included: (id, system task, status)."""
    return [
        (run.id, run.system_task, run.status)
        for run in engine.runs()
        if run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    ]


# --- cronwork worker -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "signum"),
    [
        (to_the_process, signal.SIGTERM),
        (to_the_group, signal.SIGINT),
        (to_the_tree, signal.SIGTERM),
        (to_the_tree, signal.SIGINT),
    ],
    ids=["TERM-to-process", "Ctrl-C", "TERM-to-tree", "INT-to-tree"],
)
def test_a_stopped_worker_finishes_the_run_in_progress_then_exits_cleanly(
    make_engine: Callable[..., Engine], send: Sender, signum: signal.Signals
) -> None:
    engine = make_engine(simulated_work_ms=4000)
    worker = engine.start_worker()
    run = a_run_in_progress(engine)

    send(worker, signum)
    assert exit_code(worker, within_s=30) == 0, worker.log()

    finished = the_run(engine, run.id)
    assert (finished.status, finished.error_message) == (RunStatus.SUCCESS, None), worker.log()
    assert finished.duration_ms is not None and finished.duration_ms >= 4000, "it ran to its end"
    assert unfinished_runs(engine) == []
    assert "Killing worker process" not in worker.log()


@pytest.mark.parametrize(
    ("send", "first", "second"),
    [
        (to_the_group, signal.SIGINT, signal.SIGINT),
        (to_the_tree, signal.SIGTERM, signal.SIGTERM),
        (to_the_process, signal.SIGTERM, signal.SIGQUIT),
    ],
    ids=["Ctrl-C-twice", "TERM-TERM-to-tree", "TERM-QUIT-to-process"],
)
def test_a_second_signal_stops_the_worker_at_once_and_records_the_run_as_interrupted(
    make_engine: Callable[..., Engine], send: Sender, first: signal.Signals, second: signal.Signals
) -> None:
    engine = make_engine(simulated_work_ms=30_000, task_time_limit_s=60, retry_base_delay_ms=60_000)
    worker = engine.start_worker()
    run = a_run_in_progress(engine, max_attempts=2)

    send(worker, first)
    wait_for(lambda: "draining" in worker.log(), 10, "the worker to start draining")
    send(worker, second)
    began = time.monotonic()
    assert exit_code(worker, within_s=20) == 0, worker.log()
    assert time.monotonic() - began < 15, "it did not wait for the run's 30 s of work"

    # Recorded by the stopping worker itself, not left running for the pump to find after the lease.
    interrupted = the_run(engine, run.id)
    assert (interrupted.status, interrupted.error_message) == (RunStatus.ABANDONED, INTERRUPTED)
    assert interrupted.lease_expires_at is None and interrupted.completed_at is not None
    retries = [r for r in engine.runs(run.schedule_id) if r.attempt == 2]
    assert [(r.status, r.triggered_by) for r in retries] == [(RunStatus.QUEUED, TriggeredBy.MANUAL)]


def test_a_run_that_outlasts_the_shutdown_timeout_is_recorded_as_interrupted(
    make_engine: Callable[..., Engine],
) -> None:
    # The demo handler sleeps in one call, which Dramatiq's time limit cannot interrupt (as a handler blocked in
    # a C call): the drain waits the limit plus 5 s, then gives up on the run.
    engine = make_engine(simulated_work_ms=40_000, task_time_limit_s=2)
    worker = engine.start_worker()
    run = a_run_in_progress(engine, max_attempts=1)

    to_the_process(worker, signal.SIGTERM)
    assert exit_code(worker, within_s=30) == 0, worker.log()

    interrupted = the_run(engine, run.id)
    assert (interrupted.status, interrupted.error_message) == (RunStatus.ABANDONED, INTERRUPTED)
    assert "outlasted the shutdown timeout" in worker.log()
    assert unfinished_runs(engine) == [], "no attempt left: nothing retried"


def test_a_system_task_cut_short_by_a_stop_at_once_is_recorded_as_interrupted(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(task_time_limit_s=60)
    worker = engine.start_worker()
    old = utcnow() - timedelta(days=engine.settings.history_retention_days + 1)
    with engine.runtime.sessions.begin() as session:
        session.add(
            TaskRunHistory(
                task_type="report_publish",
                status=RunStatus.SUCCESS,
                triggered_by=TriggeredBy.MANUAL,
                queued_at=old,
                due_at=old,
            )
        )
    with psycopg.connect(engine.settings.database_url) as lock:
        lock.execute("SELECT id FROM task_run_history FOR UPDATE")  # history retention's delete waits on it
        engine.runtime.broker.enqueue(
            dramatiq.Message(
                queue_name=SYSTEM_QUEUE, actor_name=HISTORY_RETENTION, args=(), kwargs={}, options={}
            )
        )
        retention = wait_for(
            lambda: engine.runs(system_task=HISTORY_RETENTION) or None, 30, "history retention to start"
        )
        to_the_process(worker, signal.SIGQUIT)
        assert exit_code(worker, within_s=20) == 0, worker.log()

    # Recorded by the stopping worker, not left running until its lease; a system slot is never retried.
    interrupted = the_run(engine, retention[0].id)
    assert (interrupted.status, interrupted.error_message) == (RunStatus.ABANDONED, INTERRUPTED)
    assert unfinished_runs(engine) == []


# --- cronwork beat -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "signum"),
    [
        (to_the_process, signal.SIGTERM),
        (to_the_group, signal.SIGINT),
        (to_the_process, signal.SIGHUP),
        (to_the_tree, signal.SIGTERM),
        (to_the_process, signal.SIGQUIT),
    ],
    ids=["TERM", "Ctrl-C", "HUP", "TERM-to-tree", "QUIT"],
)
def test_a_stopped_beat_exits_cleanly(engine: Engine, send: Sender, signum: signal.Signals) -> None:
    beat = engine.start_beat()
    wait_for(lambda: "beat sending" in beat.log(), 30, "the beat to start")
    send(beat, signum)
    assert exit_code(beat, within_s=10) == 0, beat.log()
    assert ("stopping at once" in beat.log()) == (signum == signal.SIGQUIT), beat.log()
    assert ("beat stopped" in beat.log()) == (signum != signal.SIGQUIT), beat.log()


# --- cronwork api --------------------------------------------------------------------------------------------


def _patch(base_url: str, schedule_id: int, answers: list[object]) -> None:
    request = urllib.request.Request(
        f"{base_url}/api/scheduler/tasks/{schedule_id}",
        method="PATCH",
        data=json.dumps({"name": "renamed while stopping"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answers.append(response.status)
    except (urllib.error.URLError, ConnectionError) as exc:
        answers.append(exc)


def an_edit_held_in_flight(engine: Engine, base_url: str, lock: psycopg.Connection) -> list[object]:
    """A PATCH the API is serving, held on the schedule's row lock that ``lock`` holds; its answer is appended
    to the returned list once it comes."""
    schedule = engine.create(name="edited", schedule_type="manual")
    lock.execute("SELECT id FROM task_schedules WHERE id = %s FOR UPDATE", (schedule.id,))
    answers: list[object] = []
    threading.Thread(target=_patch, args=(base_url, schedule.id, answers), daemon=True).start()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    with psycopg.connect(engine.settings.database_url, autocommit=True) as watcher:
        wait_for(lambda: watcher.execute(waiting).fetchone()[0] > 0, 15, "the edit to wait on the row lock")
    return answers


def start_api(engine: Engine, temporary: Path) -> tuple[Service, str]:
    port = free_port()
    api = engine.services.start("api", environment(engine.settings, PORT=str(port), TMPDIR=str(temporary)))
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(f"{base_url}/readyz") or api.process.poll() is not None, 60, "the API")
    assert api.process.poll() is None, api.log()
    return api, base_url


@pytest.mark.parametrize(
    ("send", "signum"),
    [(to_the_process, signal.SIGTERM), (to_the_group, signal.SIGINT), (to_the_tree, signal.SIGTERM)],
    ids=["TERM-to-process", "Ctrl-C", "TERM-to-tree"],
)
def test_a_stopped_api_answers_the_request_in_flight_then_exits_cleanly(
    engine: Engine, tmp_path: Path, send: Sender, signum: signal.Signals
) -> None:
    api, base_url = start_api(engine, tmp_path)
    with psycopg.connect(engine.settings.database_url) as lock:
        answers = an_edit_held_in_flight(engine, base_url, lock)
        send(api, signum)
        wait_for(lambda: "Handling signal: term" in api.log(), 10, "gunicorn to start its graceful stop")
        lock.rollback()  # the edit goes on
        wait_for(lambda: answers, 15, "the edit's answer")
    assert answers == [200], api.log()
    assert exit_code(api, within_s=30) == 0, api.log()
    assert list(tmp_path.glob("cronwork-api-metrics-*")) == [], "the metrics directory it made is removed"


def test_a_second_signal_stops_the_api_without_waiting_for_the_request_in_flight(
    engine: Engine, tmp_path: Path
) -> None:
    api, base_url = start_api(engine, tmp_path)
    with psycopg.connect(engine.settings.database_url) as lock:
        answers = an_edit_held_in_flight(engine, base_url, lock)
        to_the_group(api, signal.SIGINT)
        wait_for(lambda: "draining" in api.log(), 10, "the API to start draining")
        to_the_group(api, signal.SIGINT)
        assert exit_code(api, within_s=10) == 0, api.log()  # well inside gunicorn's 30 s graceful timeout
        wait_for(lambda: answers, 10, "the edit's connection to end")
    assert answers != [200]


# --- cronwork run --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("presses", [1, 2], ids=["Ctrl-C", "Ctrl-C-twice"])
def test_ctrl_c_on_run_drains_once_and_twice_stops_at_once(
    make_engine: Callable[..., Engine], tmp_path: Path, presses: int
) -> None:
    engine = make_engine(simulated_work_ms=6000 if presses == 1 else 30_000, task_time_limit_s=60)
    port = free_port()
    heartbeats = tmp_path / "run"
    system = engine.services.start(
        "run", environment(engine.settings, PORT=str(port), HEARTBEAT_DIR=str(heartbeats))
    )
    wait_for(
        lambda: http_ok(f"http://127.0.0.1:{port}/readyz") or system.process.poll() is not None, 60, "API"
    )
    wait_for(lambda: system.log().count("is ready for action") >= 3, 60, "the worker groups")
    run = a_run_in_progress(engine, max_attempts=1)

    to_the_group(system, signal.SIGINT)
    if presses == 2:
        wait_for(lambda: "draining" in system.log(), 10, "the drain to begin")
        to_the_group(system, signal.SIGINT)
    assert exit_code(system, within_s=30) == 0, system.log()

    ended = the_run(engine, run.id)
    expected = (RunStatus.SUCCESS, None) if presses == 1 else (RunStatus.ABANDONED, INTERRUPTED)
    assert (ended.status, ended.error_message) == expected, system.log()
    assert unfinished_runs(engine) == []


@pytest.mark.parametrize("presses", [1, 2], ids=["Ctrl-C", "Ctrl-C-twice"])
def test_ctrl_c_on_the_embedded_run_drains_once_and_twice_stops_at_once(
    services: Services, tmp_path: Path, presses: int
) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "BROKER_URL")}
    work_ms = 4000 if presses == 1 else 30_000
    env.update(
        PORT=str(port), SIMULATED_WORK_MS=str(work_ms), HEARTBEAT_DIR=str(tmp_path), DEMO_TASK_TYPES="true"
    )
    embedded = services.start("run", env, cwd=tmp_path)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(f"{base_url}/readyz") or embedded.process.poll() is not None, 60, "the API")
    task = call(
        base_url,
        "POST",
        "/api/scheduler/tasks",
        {"name": "long", "taskType": "data_export", "scheduleType": "manual", "config": {"format": "csv"}},
    )
    run = call(base_url, "POST", f"/api/scheduler/tasks/{task['id']}/run")

    def status() -> str:
        runs = call(base_url, "GET", f"/api/scheduler/history?scheduleId={task['id']}")
        return str(next(entry["status"] for entry in runs if entry["id"] == run["id"]))

    wait_for(lambda: status() == RunStatus.RUNNING, 30, "the run to start")
    to_the_group(embedded, signal.SIGINT)
    if presses == 2:
        wait_for(lambda: "draining" in embedded.log(), 10, "the drain to begin")
        to_the_group(embedded, signal.SIGINT)
    assert exit_code(embedded, within_s=30) == 0, embedded.log()

    with sqlite3.connect(tmp_path / "var" / "cronwork.sqlite3") as database:
        ended = database.execute(
            "SELECT status, error_message FROM task_run_history WHERE id = ?", (run["id"],)
        ).fetchone()
    assert tuple(ended) == ((RunStatus.SUCCESS, None) if presses == 1 else (RunStatus.ABANDONED, INTERRUPTED))
