"""The ledger check: every slot of every steady schedule in the window has exactly one entry, nothing is left
queued or running, every abandoned run is explained by an injected fault; and the table that says so."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chaos.faults import InjectedFault
from chaos.load import RacedSchedule, SteadySchedule
from chaos.plan import FaultKind
from chaos.system import SystemUnderTest
from shared.healing import ABANDONED, INTERRUPTED
from shared.protocol import DELETED_BEFORE_START, DISABLED_BEFORE_START

# Which faults can leave a run abandoned, by the start of its reason: a worker that died mid-run (its lease ran
# out), one stopped mid-run (a pod's other groups are stopped when one is killed), or an outcome that could not
# be recorded in time (the database or the broker away).
LEASE_FAULTS = {
    FaultKind.WORKER_KILL,
    FaultKind.POSTGRES_RESTART,
    FaultKind.RABBITMQ_RESTART,
    FaultKind.BROKER_CUT,
}
ABANDON_REASONS: dict[str, set[FaultKind]] = {
    ABANDONED: LEASE_FAULTS,
    # A pod whose group was killed drains its other groups: a run outlasting that drain is recorded so.
    INTERRUPTED: {FaultKind.WORKER_KILL},
    # Not a run that was cut short: its start found its schedule deleted (an API race), and ran nothing.
    DELETED_BEFORE_START: {FaultKind.API_RACES},
}
NEVER_STARTED = (DELETED_BEFORE_START, DISABLED_BEFORE_START)
# How long after a fault ends its effects may still show in lateness: a lost tick is healed by the next pump
# (every minute) once the grace period has passed; a restarted worker or reconnecting client takes seconds.
PUMP_HEALED_KINDS = {FaultKind.QUEUE_PURGE, FaultKind.RABBITMQ_RESTART, FaultKind.BROKER_CUT}


def reason_kinds(reason: str) -> set[FaultKind] | None:
    """The fault kinds that explain an abandoned run's reason (None: a reason no fault explains)."""
    return ABANDON_REASONS.get(reason)


@dataclass
class Entry:
    """A row of the run history, as the check reads it."""

    id: int
    schedule_id: int | None
    status: str
    triggered_by: str
    scheduled_for: datetime | None
    last_slot: datetime | None
    missed_slots: int
    attempt: int
    queued_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None

    def slots(self) -> list[datetime]:
        """The slots this entry accounts for: a missed range's every slot, else its own (None: not a slot's)."""
        if self.scheduled_for is None or self.triggered_by != "schedule" or self.attempt > 1:
            return []
        if self.status == "missed" and self.last_slot is not None and self.missed_slots > 1:
            step = (self.last_slot - self.scheduled_for) / (self.missed_slots - 1)
            return [self.scheduled_for + k * step for k in range(self.missed_slots)]
        return [self.scheduled_for]


@dataclass
class Verdict:
    """The counts of the table, and the evidence behind every failure."""

    slots_expected: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    off_grid: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    unexplained_abandons: dict[int, str] = field(default_factory=dict)  # run id: what is wrong with it
    ran_while_disabled: list[str] = field(default_factory=list)
    executed_twice: list[str] = field(default_factory=list)
    twice_executed_slots: list[tuple[int, datetime]] = field(default_factory=list)
    suspect_runs: list[tuple[int, int]] = field(
        default_factory=list
    )  # (schedule, run) that ran while disabled
    lateness_by_run: dict[int, float] = field(default_factory=dict)  # run id: s from its slot to its start
    lateness_excluded: int = 0
    worst_lateness_with_faults: float = 0.0  # the longest a fault (and its healing) kept a slot waiting

    @property
    def lateness_s(self) -> list[float]:
        return list(self.lateness_by_run.values())

    def latest_runs(self, count: int) -> list[tuple[int, float]]:
        """The ``count`` runs that started latest after their slot, outside fault windows, latest first."""
        return sorted(self.lateness_by_run.items(), key=lambda item: -item[1])[:count]

    @property
    def failures(self) -> list[str]:
        return [
            *self.duplicates,
            *self.lost,
            *self.off_grid,
            *self.stuck,
            *self.unexplained_abandons.values(),
            *self.ran_while_disabled,
            *self.executed_twice,
        ]


def read_entries(system: SystemUnderTest) -> list[Entry]:
    rows = system.sql(
        "SELECT id, schedule_id, status, triggered_by, scheduled_for, last_slot, missed_slots, attempt, queued_at,"
        " started_at, completed_at, error_message FROM task_run_history ORDER BY id"
    )
    return [Entry(*row) for row in rows]


def check(
    entries: list[Entry],
    steady: list[SteadySchedule],
    raced: list[RacedSchedule],
    faults: list[InjectedFault],
    window_end: datetime,
    load_end: datetime,
    lease: timedelta,
    recovery: timedelta,
    pump_recovery: timedelta,
    witness: Path,
) -> Verdict:
    """The whole check (see the module's docstring); ``window_end``: the last slot checked."""
    verdict = Verdict()
    by_schedule: dict[int, list[Entry]] = {}
    for entry in entries:
        if entry.schedule_id is not None:
            by_schedule.setdefault(entry.schedule_id, []).append(entry)
    for schedule in steady:
        _check_steady(verdict, schedule, by_schedule.get(schedule.id, []), window_end)
    for raced_schedule in raced:
        _check_raced(verdict, raced_schedule, by_schedule.get(raced_schedule.id, []))
    for entry in entries:
        if entry.status in ("queued", "running") and entry.queued_at < load_end:
            verdict.stuck.append(
                f"stuck: run {entry.id} of schedule {entry.schedule_id} ({entry.triggered_by}, attempt"
                f" {entry.attempt}, slot {entry.scheduled_for}) still {entry.status}"
            )
        if entry.status == "abandoned":
            _check_abandoned(verdict, entry, faults)
    _measure_lateness(verdict, entries, {s.id for s in steady}, faults, window_end, recovery, pump_recovery)
    _check_witness(verdict, witness)
    return verdict


def _check_steady(
    verdict: Verdict, schedule: SteadySchedule, entries: list[Entry], window_end: datetime
) -> None:
    expected = schedule.slots_until(window_end)
    verdict.slots_expected += len(expected)
    outcome_of: dict[datetime, list[str]] = {}
    for entry in entries:
        for slot in entry.slots():
            outcome_of.setdefault(slot, []).append(f"{entry.status}#{entry.id}")
    for slot, outcomes in sorted(outcome_of.items()):
        if len(outcomes) > 1:
            verdict.duplicates.append(
                f"duplicate: schedule {schedule.id} slot {slot.isoformat()}: {outcomes}"
            )
        on_grid = (slot - schedule.first_slot) % schedule.interval == timedelta(
            0
        ) and slot >= schedule.first_slot
        if not on_grid:
            verdict.off_grid.append(f"off grid: schedule {schedule.id} slot {slot.isoformat()}: {outcomes}")
    for slot in expected:
        outcomes = outcome_of.get(slot)
        if not outcomes:
            verdict.lost.append(f"lost: schedule {schedule.id} slot {slot.isoformat()} has no entry")
            continue
        verdict.by_outcome[outcomes[0].split("#")[0]] += 1


def _check_raced(verdict: Verdict, schedule: RacedSchedule, entries: list[Entry]) -> None:
    slots = Counter(slot for entry in entries for slot in entry.slots())
    verdict.duplicates += [
        f"duplicate: raced schedule {schedule.id} slot {slot.isoformat()} has {count} entries"
        for slot, count in slots.items()
        if count > 1
    ]
    # A run is started only while its schedule is enabled (a slot claimed before a disable is recorded skipped
    # by its start), and never after its delete was answered.
    for entry in entries:
        # A skipped run's start is the statement that found its schedule disabled: it ran nothing.
        if (
            entry.triggered_by != "schedule"
            or entry.started_at is None
            or entry.status == "skipped"
            or entry.error_message in NEVER_STARTED
            or schedule.unverifiable
        ):
            continue
        started = entry.started_at
        if schedule.deleted_at is not None and started > schedule.deleted_at:
            verdict.suspect_runs.append((schedule.id, entry.id))
            verdict.ran_while_disabled.append(
                f"ran after delete: raced schedule {schedule.id} run {entry.id} started {started.isoformat()}"
                f" after the delete answered at {schedule.deleted_at.isoformat()}"
            )
        for disabled_from, disabled_until in schedule.disabled_periods:
            if disabled_from < started < disabled_until:
                verdict.suspect_runs.append((schedule.id, entry.id))
                verdict.ran_while_disabled.append(
                    f"ran while disabled: raced schedule {schedule.id} run {entry.id} (slot"
                    f" {entry.scheduled_for}) started {started.isoformat()} inside"
                    f" [{disabled_from.isoformat()}, {disabled_until.isoformat()}]"
                )


def _check_abandoned(verdict: Verdict, entry: Entry, faults: list[InjectedFault]) -> None:
    kinds = reason_kinds(entry.error_message or "")
    if kinds is None:
        verdict.unexplained_abandons[entry.id] = (
            f"abandoned for no injected fault: run {entry.id} reason {entry.error_message!r}"
        )
        return
    if kinds == {FaultKind.API_RACES}:
        return  # a start that found its schedule deleted: only the races delete
    began = (entry.started_at or entry.queued_at) - timedelta(seconds=5)
    ended = entry.completed_at or entry.queued_at
    if not any(f.planned.kind in kinds and f.start <= ended and f.end >= began for f in faults):
        verdict.unexplained_abandons[entry.id] = (
            f"abandoned with no {sorted(kinds)} fault during it: run {entry.id} (started {entry.started_at},"
            f" abandoned {entry.completed_at}) reason {entry.error_message!r}"
        )


def _measure_lateness(
    verdict: Verdict,
    entries: list[Entry],
    steady_ids: set[int],
    faults: list[InjectedFault],
    window_end: datetime,
    recovery: timedelta,
    pump_recovery: timedelta,
) -> None:
    windows = [
        (f.start, f.end + (pump_recovery if f.planned.kind in PUMP_HEALED_KINDS else recovery))
        for f in faults
        if f.planned.kind != FaultKind.API_RACES  # the races touch only the raced pool
    ]
    for entry in entries:
        if (
            entry.schedule_id not in steady_ids
            or entry.triggered_by != "schedule"
            or entry.attempt != 1
            or entry.started_at is None
            or entry.scheduled_for is None
            or entry.scheduled_for > window_end
        ):
            continue
        lateness = (entry.started_at - entry.scheduled_for).total_seconds()
        verdict.worst_lateness_with_faults = max(verdict.worst_lateness_with_faults, lateness)
        # A fault between a slot and its start explains the wait: one that began just after the slot (its run
        # queued, its message purged) as much as one the slot fell inside.
        if any(start <= entry.started_at and entry.scheduled_for <= end for start, end in windows):
            verdict.lateness_excluded += 1
            continue
        verdict.lateness_by_run[entry.id] = lateness


def _check_witness(verdict: Verdict, witness: Path) -> None:
    """The fast task type's lines: one per execution of (schedule, slot, attempt); two means one attempt ran
    twice."""
    if not witness.exists():
        return
    lines = Counter(
        line for line in witness.read_text().splitlines() if line and not line.startswith("raced")
    )
    twice = [line for line, n in lines.items() if n > 1]
    verdict.executed_twice += [f"executed twice: {line!r} ({lines[line]} times)" for line in twice]
    for line in twice:
        schedule_id, slot, _attempt = line.split()
        verdict.twice_executed_slots.append((int(schedule_id), datetime.fromisoformat(slot)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


def table(verdict: Verdict, faults: list[InjectedFault], extra: dict[str, Any]) -> str:
    """The issue's table: faults by kind, then the slots and what became of them."""
    injected = Counter(f.planned.kind for f in faults if f.applied)
    failed = Counter(f.planned.kind for f in faults if not f.applied)
    lines = ["faults injected by kind:"]
    for kind in FaultKind:
        note = f"  ({failed[kind]} could not be applied)" if failed[kind] else ""
        lines.append(f"  {kind:<18} {injected[kind]:>6}{note}")
    worst = max(verdict.lateness_s, default=float("nan"))
    rows: list[tuple[str, Any]] = [
        ("slots expected", verdict.slots_expected),
        ("run", verdict.by_outcome["success"] + verdict.by_outcome["failed"]),
        ("missed", verdict.by_outcome["missed"]),
        ("skipped", verdict.by_outcome["skipped"]),
        ("abandoned", verdict.by_outcome["abandoned"]),
        ("duplicates", len(verdict.duplicates)),
        ("lost", len(verdict.lost)),
        ("stuck", len(verdict.stuck)),
        ("off grid", len(verdict.off_grid)),
        ("unexplained abandons", len(verdict.unexplained_abandons)),
        ("ran while disabled", len(verdict.ran_while_disabled)),
        ("executed twice", len(verdict.executed_twice)),
        ("worst lateness outside fault windows", f"{worst:.3f} s"),
        ("p99 lateness outside fault windows", f"{percentile(verdict.lateness_s, 0.99):.3f} s"),
        ("worst lateness, faults included", f"{verdict.worst_lateness_with_faults:.3f} s"),
        (
            "runs measured / excluded (fault windows)",
            f"{len(verdict.lateness_s)} / {verdict.lateness_excluded}",
        ),
        *extra.items(),
    ]
    lines.append("ledger:")
    lines += [f"  {name:<42} {value:>10}" for name, value in rows]
    return "\n".join(lines)
