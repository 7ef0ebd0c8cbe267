"""A million schedules: every due slot fires, the tick budget holds, memory stays flat, the pump stays bounded,
and the API still answers quickly."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.firing import arm_all
from bench.http import ApiClient
from bench.stack import Process, Stack, insert_schedules, reset
from bench.stats import latency_summary, percentile
from shared import healing

DAY = timedelta(days=1)
PUMP_EVERY_S = 15.0
API_REQUESTS = 100


def scale(
    stack: Stack, processes: list[Process], api_port: int, schedules: int, burst: int, seconds: float
) -> dict[str, Any]:
    """``schedules`` daily schedules whose slots are spread over a day, plus ``burst`` that fire every minute
    on the same second; fire them for ``seconds`` and report what a platform team would check."""
    memory_before = {process.name: round(process.rss_mb(), 1) for process in processes}
    # Inserting a million rows takes a while: the first slots start once it is surely done.
    base = datetime.now(UTC) + timedelta(seconds=20 + schedules / 20_000)
    burst_second = (base + timedelta(seconds=15)).second
    started = time.monotonic()
    insert_schedules(
        stack, ((None, int(DAY.total_seconds() * 1000), base + n * DAY / schedules) for n in range(schedules))
    )
    burst_first = base.replace(second=burst_second, microsecond=0)
    if burst_first < base:
        burst_first += timedelta(minutes=1)
    insert_schedules(stack, ((f"* * * * * {burst_second}", None, burst_first) for _ in range(burst)))
    stack.sql("ANALYZE task_schedules")
    insert_s = time.monotonic() - started
    arm_all(stack)

    samples = Sampler(stack)
    samples.start()
    pump_cycles_s = []
    window_end = base + timedelta(seconds=seconds)
    while datetime.now(UTC) < window_end:
        begun = time.monotonic()
        healing.pump(stack.runtime)
        pump_cycles_s.append(time.monotonic() - begun)
        time.sleep(max(0.0, min(PUMP_EVERY_S, (window_end - datetime.now(UTC)).total_seconds())))
    settle_until = time.monotonic() + 30
    while (
        time.monotonic() < settle_until
        and stack.sql("SELECT count(*) FROM task_run_history WHERE status IN ('queued', 'running')")[0][0]
    ):
        time.sleep(0.5)
    samples.stop()
    memory_after = {process.name: round(process.rss_mb(), 1) for process in processes}
    api = api_latencies(stack, api_port)

    rows = stack.sql(
        "SELECT schedule_id, scheduled_for, started_at FROM task_run_history"
        " WHERE triggered_by = 'schedule' AND attempt = 1 AND scheduled_for >= %s AND scheduled_for < %s",
        (base, window_end),
    )
    spread_due = sum(1 for n in range(schedules) if base + n * DAY / schedules < window_end)
    burst_instants = (
        int((window_end - burst_first).total_seconds() // 60) + 1 if burst_first < window_end else 0
    )
    due = spread_due + burst * burst_instants
    fired = {(schedule_id, slot) for schedule_id, slot, _started in rows}
    lateness = [(started - slot).total_seconds() * 1000 for _id, slot, started in rows if started is not None]
    burst_starts = [
        (started - slot).total_seconds()
        for _id, slot, started in rows
        if started is not None and slot.second == burst_second
    ]
    result = {
        "schedules": schedules + burst,
        "insert_s": round(insert_s, 1),
        "window_s": seconds,
        "slots_due": due,
        "slots_fired": len(fired),
        "duplicates": sum(n - 1 for n in Counter((r[0], r[1]) for r in rows).values()),
        "not_fired": due - len(fired),
        "lateness": latency_summary(lateness),
        "burst_all_started_s": round(max(burst_starts), 2) if burst_starts else None,
        "tick_budget": stack.settings.tick_budget,
        "ticks_in_flight_max": samples.ticks_max,
        "slots_in_flight_max": samples.slots_max,
        "tick_queue_held_max": samples.broker_max,
        "pump_cycle_s": {
            "p50": round(percentile(pump_cycles_s, 0.5), 2),
            "max": round(max(pump_cycles_s), 2),
        },
        "memory_mb_before": memory_before,
        "memory_mb_after": memory_after,
        "api": api,
    }
    reset(stack)
    return result


def api_latencies(stack: Stack, port: int) -> dict[str, Any]:
    middle = stack.sql("SELECT (min(id) + max(id)) / 2 FROM task_schedules")[0][0]
    client = ApiClient(port)
    try:
        creates = []
        for n in range(API_REQUESTS):
            body = {
                "name": f"api bench {n}",
                "taskType": "report_publish",
                "config": {"reportId": "compliance-weekly"},
                "scheduleType": "cron",
                "cronExpression": "0 3 * * *",
                "timezone": "Europe/Berlin",
            }
            status, answer, elapsed_ms = client.call("POST", "/api/scheduler/tasks", body)
            if status != 201:
                raise SystemExit(f"create: {status} {answer}")
            creates.append(elapsed_ms)
        return {
            "create": latency_summary(creates),
            "list first page (100)": client.timed("GET", "/api/scheduler/tasks?page_size=100", API_REQUESTS),
            "list deep page (100, afterId)": client.timed(
                "GET", f"/api/scheduler/tasks?page_size=100&afterId={middle}", API_REQUESTS
            ),
            "one schedule": client.timed("GET", f"/api/scheduler/tasks/{middle}", API_REQUESTS),
        }
    finally:
        client.close()


class Sampler:
    """Samples the tick budget's ledger twice a second, and the broker's tick queues every few seconds."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.ticks_max = self.slots_max = self.broker_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_broker = 0.0
        while not self._stop.wait(0.5):
            ticks, slots = self.stack.sql(
                "SELECT count(*), coalesce(sum(slot_count), 0) FROM ticks_in_flight"
            )[0]
            self.ticks_max = max(self.ticks_max, ticks)
            self.slots_max = max(self.slots_max, int(slots))
            if time.monotonic() - last_broker > 5:
                last_broker = time.monotonic()
                depths = self.stack.queue_depths()
                held = sum(sum(depths.get(name, (0, 0))) for name in ("cronwork.ticks", "cronwork.ticks.DQ"))
                self.broker_max = max(self.broker_max, held)
