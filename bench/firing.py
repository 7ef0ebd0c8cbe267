"""Firing figures through the real stack: steady rates, the highest sustained rate, and a minute's burst."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.stack import Stack, insert_schedules, reset
from bench.stats import latency_summary, percentile
from shared.healing import publish_ticks_in_horizon

WARMUP_S = 3.0  # the first slots of a run also measure the workers' first connections
SETTLE_S = 3.0  # after the window, for the last runs of it to start


def arm_all(stack: Stack) -> None:
    """Publish the ticks of every slot within the horizon, as the pump would on its next minute."""
    publish_ticks_in_horizon(stack.runtime, deadline=time.monotonic() + 60)


def steady(stack: Stack, rate: int, seconds: float, interval_ms: int = 2000) -> dict[str, Any]:
    """``rate`` fires/s for ``seconds``: schedules every ``interval_ms``, their slots spread evenly."""
    count = max(1, rate * interval_ms // 1000)
    start = datetime.now(UTC) + timedelta(seconds=4)
    step = timedelta(milliseconds=interval_ms) / count
    insert_schedules(stack, ((None, interval_ms, start + n * step) for n in range(count)))
    arm_all(stack)
    window_start = start + timedelta(seconds=WARMUP_S)
    window_end = start + timedelta(seconds=WARMUP_S + seconds)
    _sleep_until(window_end + timedelta(seconds=SETTLE_S))
    measured_at = datetime.now(UTC)
    # Runs of any slot that started within the window: under overload, the rate the stack actually fires at.
    started_in_window = stack.sql(
        "SELECT count(*) FROM task_run_history WHERE triggered_by = 'schedule' AND started_at >= %s AND started_at < %s",
        (window_start, window_end),
    )[0][0]
    rows = stack.sql(
        "SELECT schedule_id, scheduled_for, started_at FROM task_run_history"
        " WHERE triggered_by = 'schedule' AND attempt = 1 AND scheduled_for >= %s AND scheduled_for < %s",
        (window_start, window_end),
    )
    # Slots a late claim did not run (the misfire policy's missed ranges, one entry each).
    missed = stack.sql(
        "SELECT coalesce(sum(missed_slots), 0) FROM task_run_history"
        " WHERE status = 'missed' AND scheduled_for >= %s AND scheduled_for < %s",
        (window_start, window_end),
    )[0][0]
    reset(stack)
    lateness = [((started or measured_at) - slot).total_seconds() * 1000 for _schedule, slot, started in rows]
    thirds = len(lateness) // 3
    expected = count * seconds * 1000 / interval_ms
    return {
        "offered_per_s": rate,
        "schedules": count,
        "seconds": seconds,
        "slots_due": int(expected),
        "runs": len(rows),
        "missed_coalesced": int(missed),
        "not_started": sum(1 for row in rows if row[2] is None),
        "duplicates": sum(n - 1 for n in Counter((row[0], row[1]) for row in rows).values()),
        "started_per_s": round(sum(1 for row in rows if row[2] is not None) / seconds, 1),
        "fired_per_s": round(started_in_window / seconds, 1),
        **latency_summary(lateness),
        "p99_first_third_ms": round(percentile(sorted_by_slot(rows, lateness)[:thirds], 0.99), 1),
        "p99_last_third_ms": round(percentile(sorted_by_slot(rows, lateness)[-thirds:], 0.99), 1),
    }


def sorted_by_slot(rows: list[tuple], lateness: list[float]) -> list[float]:
    return [late for _slot, late in sorted(zip((row[1] for row in rows), lateness, strict=True))]


def keeps_up(result: dict[str, Any]) -> bool:
    """No backlog: every due slot started, none coalesced, and lateness did not grow over the run."""
    return (
        result["not_started"] == 0
        and result["missed_coalesced"] == 0
        and result["runs"] >= 0.99 * result["slots_due"]
        and result["p99_last_third_ms"] <= 2 * result["p99_first_third_ms"] + 100
    )


def highest_sustained(
    stack: Stack, seconds: float, measured: list[dict[str, Any]], rates: tuple[int, ...]
) -> dict[str, Any]:
    """The highest rate the stack keeps up with: of the ``measured`` runs, then of ``rates`` tried in order
    while it still keeps up; with every attempt."""
    kept_up = [result for result in measured if keeps_up(result)]
    attempts = []
    if len(kept_up) == len(measured):
        for rate in rates:
            result = steady(stack, rate, seconds)
            attempts.append(result)
            if not keeps_up(result):
                break
            kept_up.append(result)
    best = max(kept_up, key=lambda result: result["offered_per_s"], default=None)
    return {"highest_sustained_per_s": best["offered_per_s"] if best else 0, "attempts": attempts}


def burst(stack: Stack, count: int) -> dict[str, Any]:
    """``count`` cron schedules due at the same instant (a seconds-field spec, so the bench need not wait for
    a round minute): how long until the last one started, and whether any ran twice."""
    instant = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    insert_schedules(stack, ((f"* * * * * {instant.second}", None, instant) for _ in range(count)))
    arm_all(stack)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = stack.sql(
            "SELECT count(*), max(started_at) FROM task_run_history"
            " WHERE scheduled_for = %s AND attempt = 1 AND started_at IS NOT NULL",
            (instant,),
        )[0]
        if started[0] >= count:
            break
        time.sleep(0.25)
    rows = stack.sql(
        "SELECT schedule_id, started_at, queued_at FROM task_run_history WHERE scheduled_for = %s AND attempt = 1",
        (instant,),
    )
    reset(stack)
    starts = [(row[1] - instant).total_seconds() for row in rows if row[1] is not None]
    return {
        "schedules": count,
        "started": len(starts),
        "duplicates": sum(n - 1 for n in Counter(row[0] for row in rows).values()),
        "all_claimed_s": round(max((row[2] - instant).total_seconds() for row in rows), 2) if rows else None,
        "all_started_s": round(max(starts), 2) if starts else None,
        "half_started_s": round(percentile(starts, 0.5), 2) if starts else None,
    }


def _sleep_until(instant: datetime) -> None:
    remaining = (instant - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)
