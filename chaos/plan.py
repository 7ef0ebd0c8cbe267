"""The fault plan: built whole, up front, from one seed, and printed, so that a failing run can be replayed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    """The faults the harness injects."""

    WORKER_KILL = (
        "worker_kill"  # SIGKILL one Dramatiq group of a pod (or the whole pod), start a replacement pod
    )
    BEAT_KILL = "beat_kill"  # SIGKILL the beat, start it again after a pause
    SECOND_BEAT = "second_beat"  # a second beat for a while
    BROKER_CUT = "broker_cut"  # rabbitmqctl close_all_connections
    QUEUE_PURGE = "queue_purge"  # purge every queue, the delay (.DQ) and dead-letter (.XQ) queues too
    POSTGRES_RESTART = "postgres_restart"  # pg_ctl restart -m fast or immediate
    RABBITMQ_RESTART = "rabbitmq_restart"  # stop the node, wait, start it on the same data
    DUPLICATE_TICKS = "duplicate_ticks"  # publish copies of armed ticks
    DUPLICATE_RUNS = "duplicate_runs"  # publish the run message again for recent runs
    API_RACES = "api_races"  # edits, disables, deletes and Run Now through the API against the raced pool


WORKER_GROUPS = ("ticks", "runs", "system", "pod")


@dataclass(frozen=True)
class PlannedFault:
    """One fault: when (seconds after the load starts), what, and its parameters (``target``: a worker
    group, a restart mode; ``pod``: which live pod, modulo how many there are; ``seconds``: how long it
    lasts, where it lasts; ``count``: how many messages or requests)."""

    at_s: float
    kind: FaultKind
    target: str = ""
    pod: int = 0
    seconds: float = 0.0
    count: int = 0

    @property
    def description(self) -> str:
        parts = {
            FaultKind.WORKER_KILL: f"pod #{self.pod} {self.target}",
            FaultKind.BEAT_KILL: f"down {self.seconds:.1f} s",
            FaultKind.SECOND_BEAT: f"for {self.seconds:.1f} s",
            FaultKind.POSTGRES_RESTART: f"-m {self.target}",
            FaultKind.RABBITMQ_RESTART: f"down {self.seconds:.1f} s",
            FaultKind.DUPLICATE_TICKS: f"{self.count} tick copies",
            FaultKind.DUPLICATE_RUNS: f"{self.count} run messages",
            FaultKind.API_RACES: f"{self.seconds:.1f} s burst",
        }
        return parts.get(self.kind, "")


@dataclass
class FaultPlan:
    """The seed, the load phase's length and the faults in the order they start."""

    seed: int
    duration_s: float
    faults: list[PlannedFault] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"fault plan (seed {self.seed}, {len(self.faults)} faults over {self.duration_s:.0f} s):"]
        lines.append(f"  {'at s':>6}  {'kind':<17} detail")
        lines += [f"  {f.at_s:>6.1f}  {f.kind:<17} {f.description}" for f in self.faults]
        return "\n".join(lines)


def _planned(rng: random.Random, kind: FaultKind, at_s: float) -> PlannedFault:
    if kind == FaultKind.WORKER_KILL:
        return PlannedFault(at_s, kind, target=rng.choice(WORKER_GROUPS), pod=rng.randrange(100))
    if kind == FaultKind.BEAT_KILL:
        return PlannedFault(at_s, kind, seconds=round(rng.uniform(0.5, 5), 1))
    if kind == FaultKind.SECOND_BEAT:
        return PlannedFault(at_s, kind, seconds=round(rng.uniform(5, 20), 1))
    if kind == FaultKind.POSTGRES_RESTART:
        return PlannedFault(at_s, kind, target=rng.choice(("fast", "fast", "immediate")))
    if kind == FaultKind.RABBITMQ_RESTART:
        return PlannedFault(at_s, kind, seconds=round(rng.uniform(0.5, 3), 1))
    if kind in (FaultKind.DUPLICATE_TICKS, FaultKind.DUPLICATE_RUNS):
        return PlannedFault(at_s, kind, count=rng.randint(5, 40))
    if kind == FaultKind.API_RACES:
        return PlannedFault(at_s, kind, seconds=round(rng.uniform(2, 6), 1))
    return PlannedFault(at_s, kind)


def build_plan(seed: int, duration_s: float, faults_per_minute: float) -> FaultPlan:
    """Every kind at least once, then more at random, ``faults_per_minute`` in all; about a third of the extra
    ones start within two seconds of another fault, so faults overlap (a worker killed during a broker cut
    during a PostgreSQL restart). Faults start between 5 s in and 8 s before the end of the load, so the last
    has room to play out."""
    rng = random.Random(seed)
    first_s, last_s = min(5.0, duration_s / 4), max(duration_s - 8.0, duration_s * 3 / 4)
    kinds = list(FaultKind)
    rng.shuffle(kinds)
    extra = max(0, round(duration_s / 60 * faults_per_minute) - len(kinds))
    kinds += [rng.choice(list(FaultKind)) for _ in range(extra)]
    offsets: list[float] = []
    for _ in kinds:
        if offsets and rng.random() < 0.35:
            at_s = min(last_s, max(first_s, rng.choice(offsets) + rng.uniform(-2, 2)))
        else:
            at_s = rng.uniform(first_s, last_s)
        offsets.append(round(at_s, 1))
    faults = [_planned(rng, kind, at_s) for kind, at_s in zip(kinds, offsets, strict=True)]
    return FaultPlan(seed, duration_s, sorted(faults, key=lambda fault: fault.at_s))
