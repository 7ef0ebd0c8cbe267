"""Percentiles, the one way every figure of ``make bench`` is summarised."""

from __future__ import annotations


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values_ms, 0.50), 1),
        "p95_ms": round(percentile(values_ms, 0.95), 1),
        "p99_ms": round(percentile(values_ms, 0.99), 1),
        "max_ms": round(max(values_ms), 1) if values_ms else float("nan"),
    }
