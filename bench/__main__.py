"""`make bench` (short, about five minutes) and `make bench-full`: cronwork's firing figures against raw Dramatiq's,
measured in one run on the same broker, database and machine. Prints one table and writes it as JSON to
``bench/results/``.

    python -m bench [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import firing, history, raw, scale
from bench.http import wait_until_serving
from bench.stack import Stack, free_port

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    raw_messages: int
    seconds: float
    sustained_rates: tuple[int, ...]
    burst: int
    scale_schedules: int
    scale_burst: int
    scale_seconds: float
    history_rows: int


SHORT = Sizes(10_000, 6, (1500, 2000), 10_000, 20_000, 10_000, 20, 500_000)
FULL = Sizes(50_000, 30, (1250, 1500, 1750, 2000, 2500), 10_000, 1_000_000, 10_000, 150, 10_000_000)
STEADY_RATES = (50, 200, 500, 1000)
SATURATING_RATE = 1500  # more than either pod count here keeps up with: what is started is the capacity
RAW_PROCESSES, RAW_THREADS = 2, 8


def machine() -> dict[str, Any]:
    def version(*argv: str) -> str:
        try:
            return (
                subprocess.run(argv, capture_output=True, text=True, timeout=30)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": version("psql", "--version"),
        "rabbitmq": version("rabbitmqctl", "-q", "version"),
    }


def run(sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "machine": machine()}
    stack = Stack.create()
    try:
        step("raw Dramatiq: no-op and one-UPDATE rates, and a burst of delayed messages")
        results["raw"] = {
            "processes": RAW_PROCESSES,
            "threads": RAW_THREADS,
            "noop_per_s": round(raw.rate(stack, "noop", sizes.raw_messages, RAW_PROCESSES, RAW_THREADS)),
            "one_update_per_s": round(
                raw.rate(stack, "update_one", sizes.raw_messages, RAW_PROCESSES, RAW_THREADS)
            ),
            "delayed_burst": raw.delayed_burst(stack, sizes.burst, RAW_PROCESSES, RAW_THREADS),
        }
        step("one worker pod, saturated")
        pods = [stack.start_worker_pod(1)]
        results["one_pod_saturated"] = firing.steady(stack, SATURATING_RATE, sizes.seconds)
        pods.append(stack.start_worker_pod(2))
        beat = stack.start_beat()
        step("two worker pods, saturated")
        results["two_pods_saturated"] = firing.steady(stack, SATURATING_RATE, sizes.seconds)
        step(f"two worker pods: lateness at {', '.join(map(str, STEADY_RATES))} fires/s")
        results["steady"] = [firing.steady(stack, rate, sizes.seconds) for rate in STEADY_RATES]
        step("two worker pods: the highest rate sustained with no backlog")
        results["sustained"] = firing.highest_sustained(
            stack, sizes.seconds, results["steady"], sizes.sustained_rates
        )
        step(f"two worker pods: {sizes.burst:,} schedules due in the same second")
        results["burst"] = firing.burst(stack, sizes.burst)
        port = free_port()
        api = stack.start_api(port)
        wait_until_serving(port)
        step(f"{sizes.scale_schedules + sizes.scale_burst:,} schedules")
        results["scale"] = scale.scale(
            stack, [*pods, beat, api], port, sizes.scale_schedules, sizes.scale_burst, sizes.scale_seconds
        )
        step(f"history API on {sizes.history_rows:,} runs")
        history.fill_history(stack, sizes.history_rows)
        results["history"] = history.history_latencies(stack, port, sizes.history_rows)
    finally:
        stack.close()
    two_pods = results["two_pods_saturated"]["fired_per_s"]
    results["ratios"] = {
        "two_pods_over_raw_one_update": round(two_pods / results["raw"]["one_update_per_s"], 2),
        "two_pods_over_raw_noop": round(two_pods / results["raw"]["noop_per_s"], 2),
        "two_pods_over_one_pod": round(two_pods / max(1.0, results["one_pod_saturated"]["fired_per_s"]), 2),
    }
    return results


def step(what: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {what}", flush=True)


def table(results: dict[str, Any]) -> str:
    raw_figures, ratios = results["raw"], results["ratios"]
    lines = [
        f"machine: {results['machine']}",
        "",
        "steady firing, 2 worker pods, no-op handlers: lateness = startedAt - scheduledFor",
        f"  {'offered/s':>9} {'started/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'dup':>4} {'backlog':>8}",
    ]
    for row in results["steady"] + results["sustained"]["attempts"]:
        backlog = "no" if firing.keeps_up(row) else "GROWS"
        lines.append(
            f"  {row['offered_per_s']:>9} {row['started_per_s']:>9} {row['p50_ms']:>8} {row['p95_ms']:>8}"
            f" {row['p99_ms']:>8} {row['max_ms']:>8} {row['duplicates']:>4} {backlog:>8}"
        )
    lines += [
        f"  highest sustained: {results['sustained']['highest_sustained_per_s']} fires/s",
        "",
        f"capacity (offered {SATURATING_RATE}/s, more than is fired: runs started per second)",
        f"  1 pod  {results['one_pod_saturated']['fired_per_s']:>8} fires/s",
        f"  2 pods {results['two_pods_saturated']['fired_per_s']:>8} fires/s   (x{ratios['two_pods_over_one_pod']} of 1 pod)",
        f"  raw Dramatiq ({raw_figures['processes']} processes x {raw_figures['threads']} threads): "
        f"no-op {raw_figures['noop_per_s']}/s, one UPDATE {raw_figures['one_update_per_s']}/s",
        f"  ratio 2 pods / raw one-UPDATE: {ratios['two_pods_over_raw_one_update']}"
        f"   (2 pods / raw no-op: {ratios['two_pods_over_raw_noop']})",
        "",
        f"burst: {results['burst']['schedules']:,} schedules due at one instant",
        f"  all claimed {results['burst']['all_claimed_s']} s, half started {results['burst']['half_started_s']} s,"
        f" all started {results['burst']['all_started_s']} s, started {results['burst']['started']:,},"
        f" duplicates {results['burst']['duplicates']}",
        f"  raw Dramatiq runs {raw_figures['delayed_burst']['messages']:,} delayed no-op messages due at one instant"
        f" in {raw_figures['delayed_burst']['all_run_s']} s",
    ]
    big = results["scale"]
    lines += [
        "",
        f"scale: {big['schedules']:,} enabled schedules (a day's slots spread, plus a burst every minute),"
        f" {big['window_s']} s window",
        f"  due {big['slots_due']:,}, fired {big['slots_fired']:,}, not fired {big['not_fired']},"
        f" duplicates {big['duplicates']}; lateness p50 {big['lateness']['p50_ms']} ms,"
        f" p99 {big['lateness']['p99_ms']} ms; burst all started {big['burst_all_started_s']} s",
        f"  ticks in flight max {big['ticks_in_flight_max']:,} of the budget {big['tick_budget']:,}"
        f" (carrying {big['slots_in_flight_max']:,} slots; broker held {big['tick_queue_held_max']:,} tick messages)",
        f"  pump cycle p50 {big['pump_cycle_s']['p50']} s, max {big['pump_cycle_s']['max']} s",
        f"  memory MB before {big['memory_mb_before']}",
        f"  memory MB after  {big['memory_mb_after']}",
    ]
    for label, figures in big["api"].items():
        lines.append(f"  API {label:<32} p50 {figures['p50_ms']:>6} ms  p99 {figures['p99_ms']:>6} ms")
    lines += ["", f"history API on {results['history']['rows']:,} runs (through gunicorn)"]
    for label, figures in results["history"].items():
        if label != "rows":
            lines.append(f"  {label:<38} p50 {figures['p50_ms']:>6} ms  p99 {figures['p99_ms']:>6} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full", action="store_true", help="a million schedules, ten million runs, longer windows"
    )
    args = parser.parse_args()
    started = time.monotonic()
    results = run(FULL if args.full else SHORT)
    results["form"] = "full" if args.full else "short"
    results["duration_s"] = round(time.monotonic() - started)
    print()
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{results['form']}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\n{results['form']} run in {results['duration_s']} s; written to {path}")


if __name__ == "__main__":
    main()
