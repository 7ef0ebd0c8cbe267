"""What a real worker tells operators: its metrics on one port for its three Dramatiq groups, each run's start
and outcome as JSON log lines with their fields, and each schedule's failure streak and last error."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shared import schedules
from shared.models import RunStatus, TriggeredBy
from tests.conftest import Service, free_port, wait_for
from tests.worker.conftest import LOOPBACK, Engine, StubUpstream, run_now


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The worker's /metrics, by sample name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def json_lines(service: Service) -> list[dict[str, Any]]:
    lines = []
    for line in service.log().splitlines():
        start = line.find("{")  # Dramatiq's master passes its processes' lines on as they are
        if start >= 0:
            try:
                lines.append(json.loads(line[start:]))
            except json.JSONDecodeError:
                continue
    return lines


def runs_with(engine: Engine, schedule_id: int, status: str) -> list[Any]:
    return [run for run in engine.runs(schedule_id) if run.status == status]


def streak(engine: Engine, schedule_id: int) -> tuple[int | None, str | None]:
    with engine.runtime.sessions() as session:
        schedule = schedules.get_schedule(session, schedule_id)
        assert schedule is not None
        return schedule.failure_streak, schedule.last_error


def test_runs_show_in_the_metrics_the_json_logs_and_the_schedules_failure_streak(
    make_engine: Callable[..., Engine], upstream: StubUpstream
) -> None:
    engine = make_engine(http_allowed_networks=LOOPBACK)
    port = free_port()
    worker = engine.start_worker(dramatiq_prom_port=str(port), LOG_FORMAT="json")
    probe = engine.create(
        name="probe upstream",
        schedule_type="manual",
        task_type="http_request",
        max_attempts=1,
        config={"url": upstream.url, "timeoutS": 5},
    )
    every_second = engine.create(name="every second", schedule_type="interval", interval_ms=1000)

    # Three failed runs in a row: a streak of 3, the last error kept.
    for _ in range(3):
        run_now(engine.runtime, probe.id)
    wait_for(
        lambda: len(runs_with(engine, probe.id, RunStatus.FAILED)) == 3,
        30,
        "three failed runs of the probe",
    )
    failures, error = streak(engine, probe.id)
    assert failures == 3
    assert error is not None and "503" in error

    # The upstream is back: one success resets the streak; the last error stays, as history.
    upstream.status = 200
    run_now(engine.runtime, probe.id)
    wait_for(lambda: runs_with(engine, probe.id, RunStatus.SUCCESS), 30, "the probe to succeed")
    assert streak(engine, probe.id) == (0, error)
    engine.wait_for_runs(every_second.id, 2, 30, status=RunStatus.SUCCESS)

    def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        found = samples(port)
        finished = "cronwork_runs_finished_total"
        manual = {("task_type", "http_request"), ("trigger", "manual")}
        wanted = [
            found.get((finished, frozenset({*manual, ("outcome", "failed")}))) == 3,
            found.get((finished, frozenset({*manual, ("outcome", "success")}))) == 1,
            (found.get(("cronwork_slot_lateness_seconds_count", frozenset({("trigger", "schedule")}))) or 0)
            >= 2,
        ]
        return found if all(wanted) else None

    found = wait_for(counted, 15, "the worker's metrics to count the runs")
    assert isinstance(found, dict)
    started = found[
        ("cronwork_runs_started_total", frozenset({("task_type", "http_request"), ("trigger", "manual")}))
    ]
    assert started == 4
    # Dramatiq's own metrics, from all three groups, on the same port.
    queues = {dict(labels).get("queue_name") for name, labels in found if name == "dramatiq_messages_total"}
    assert {"cronwork.ticks", "cronwork.runs"} <= queues

    # Each run's start and outcome, as JSON lines whose fields say which run it was.
    [success] = runs_with(engine, probe.id, RunStatus.SUCCESS)
    lines = [line for line in json_lines(worker) if line.get("run_id") == success.id]
    start = next(line for line in lines if "started" in line["message"])
    outcome = next(line for line in lines if line.get("status") == RunStatus.SUCCESS)
    for line in (start, outcome):
        assert line["time"].endswith("Z")
        assert (line["logger"], line["schedule_id"], line["attempt"], line["trigger"], line["task_type"]) == (
            "cronwork.protocol",
            probe.id,
            1,
            TriggeredBy.MANUAL,
            "http_request",
        )
        assert "slot" in line
    assert outcome["level"] == "INFO"
    assert isinstance(outcome["duration_ms"], int)
    scheduled = next(
        line
        for line in json_lines(worker)
        if line.get("schedule_id") == every_second.id and line.get("status") == RunStatus.SUCCESS
    )
    assert scheduled["slot"].endswith("Z") and scheduled["trigger"] == TriggeredBy.SCHEDULE


def test_delayed_ticks_leave_the_in_memory_count_once_moved_to_their_queue_whichever_pod_runs_them(
    engine: Engine,
) -> None:
    """Every tick waits out its slot in the delay queue; a pod moves it to the tick queue when due, and either
    pod may run it. Once the schedules are disabled and their last ticks moved, no pod holds a delayed message:
    the gauge is 0 on both (Dramatiq's own middleware keeps every tick the other pod ran, for good)."""
    ports = [free_port(), free_port()]
    for port in ports:
        engine.start_worker(dramatiq_prom_port=str(port))
    every_second = [
        engine.create(name=f"every second {i}", schedule_type="interval", interval_ms=1000) for i in range(4)
    ]
    for schedule in every_second:
        engine.wait_for_runs(schedule.id, 8, 60)
    for schedule in every_second:
        engine.update(schedule.id, enabled=False)

    def delayed_in_memory(port: int) -> float:
        return sum(
            value
            for (name, _labels), value in samples(port).items()
            if name == "dramatiq_delayed_messages_inprogress"
        )

    def ticks_run(port: int) -> float:
        return sum(
            value
            for (name, labels), value in samples(port).items()
            if name == "dramatiq_messages_total" and ("queue_name", "cronwork.ticks") in labels
        )

    # Both pods ran ticks, so some of those one pod moved were run by the other.
    assert all(ticks_run(port) > 0 for port in ports)
    wait_for(
        lambda: all(delayed_in_memory(port) == 0 for port in ports),
        30,
        "no pod to count a delayed message once the last ticks were moved",
    )
