"""`make run` (``cronwork run``): one embedded process with nothing configured, or the three services against
the real PostgreSQL and RabbitMQ. Either way a newcomer's schedule fires."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.settings import Settings
from tests.conftest import Services, environment, free_port, http_ok, wait_for


def call(base_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{base_url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or "null")


def a_schedule_fires(base_url: str) -> dict[str, Any]:
    task = call(
        base_url,
        "POST",
        "/api/scheduler/tasks",
        {
            "name": "hello",
            "taskType": "data_export",
            "scheduleType": "interval",
            "intervalMs": 1000,
            "config": {"format": "csv"},
        },
    )

    def succeeded() -> bool:
        runs = call(base_url, "GET", f"/api/scheduler/history?scheduleId={task['id']}&status=success")
        return len(runs) >= 2

    wait_for(succeeded, 30, "the new schedule to run twice", interval_s=0.5)
    return task


def test_embedded_mode_runs_everything_in_one_process_on_sqlite(services: Services, tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "BROKER_URL")}
    # DEMO_TASK_TYPES as make run sets it: the newcomer's schedule is a simulated demo type.
    env.update(PORT=str(port), SIMULATED_WORK_MS="50", HEARTBEAT_DIR=str(tmp_path), DEMO_TASK_TYPES="true")
    embedded = services.start("run", env, cwd=tmp_path)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: http_ok(f"{base_url}/readyz") or embedded.process.poll() is not None, 60, "the embedded API"
    )
    assert embedded.process.poll() is None, embedded.log()

    task = a_schedule_fires(base_url)
    assert (tmp_path / "var" / "cronwork.sqlite3").exists()
    assert embedded.terminate() == 0

    # Restarted, the in-memory broker is empty: the chain is published again at once, not after the grace.
    restarted = services.start("run", env, cwd=tmp_path)
    wait_for(lambda: http_ok(f"{base_url}/readyz") or restarted.process.poll() is not None, 60, "the restart")
    runs_before = len(call(base_url, "GET", f"/api/scheduler/history?scheduleId={task['id']}&page_size=1000"))
    wait_for(
        lambda: (
            len(call(base_url, "GET", f"/api/scheduler/history?scheduleId={task['id']}&page_size=1000"))
            >= runs_before + 2
        ),
        15,
        "the chain to fire again after a restart",
        interval_s=0.5,
    )


def test_run_starts_api_worker_and_beat_against_the_real_servers(
    services: Services, make_database: Callable[[str], str], make_vhost: Callable[[str], str], tmp_path: Path
) -> None:
    settings = Settings(
        database_url=make_database("runmode"),
        broker_url=make_vhost("runmode"),
        port=free_port(),
        simulated_work_ms=50,
        demo_task_types="true",  # as make run sets it
        heartbeat_dir=str(tmp_path),
    )
    system = services.start("run", environment(settings))
    base_url = f"http://127.0.0.1:{settings.port}"
    wait_for(lambda: http_ok(f"{base_url}/readyz") or system.process.poll() is not None, 60, "the API")
    assert system.process.poll() is None, system.log()

    a_schedule_fires(base_url)
    wait_for(
        lambda: (
            (tmp_path / "cronwork-worker.heartbeat").exists()
            and (tmp_path / "cronwork-beat.heartbeat").exists()
        ),
        30,
        "worker and beat heartbeats",
    )
    assert system.terminate() == 0
