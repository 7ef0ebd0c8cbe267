"""The chaos ledger: a run's lateness is measured only when no fault (and its recovery) fell between its slot
and its start, the worst wait faults caused is reported beside it, and an abandon is explained only by a fault
while it ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chaos.faults import InjectedFault
from chaos.ledger import Entry, Verdict, _check_abandoned, _measure_lateness
from chaos.plan import FaultKind, PlannedFault
from shared.healing import ABANDONED

T0 = datetime(2026, 12, 4, 8, 46, 0, tzinfo=UTC)
RECOVERY = timedelta(seconds=10)
PUMP_RECOVERY = timedelta(seconds=75)


def run(run_id: int, slot_s: float, started_s: float) -> Entry:
    slot = T0 + timedelta(seconds=slot_s)
    return Entry(
        run_id,
        1,
        "success",
        "schedule",
        slot,
        None,
        1,
        1,
        slot,
        T0 + timedelta(seconds=started_s),
        None,
        None,
    )


def fault(kind: FaultKind, start_s: float, end_s: float) -> InjectedFault:
    return InjectedFault(
        PlannedFault(start_s, kind), T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s), "", True
    )


def measure(entries: list[Entry], faults: list[InjectedFault]) -> Verdict:
    verdict = Verdict()
    _measure_lateness(verdict, entries, {1}, faults, T0 + timedelta(hours=1), RECOVERY, PUMP_RECOVERY)
    return verdict


def test_a_run_whose_message_a_purge_took_just_after_its_slot_is_left_out_of_lateness() -> None:
    # The slot came 0.3 s before the purge; the pump sent its run again 140 s later.
    verdict = measure([run(7, 32.1, 175.6)], [fault(FaultKind.QUEUE_PURGE, 32.4, 32.6)])
    assert verdict.lateness_by_run == {}
    assert verdict.lateness_excluded == 1
    assert verdict.worst_lateness_with_faults == 143.5


def test_runs_with_no_fault_between_slot_and_start_are_measured() -> None:
    faults = [fault(FaultKind.WORKER_KILL, 100, 101), fault(FaultKind.BROKER_CUT, 200, 201)]
    entries = [
        run(1, 10.0, 10.2),  # long before any fault
        run(2, 99.5, 100.5),  # waited through the kill
        run(3, 105.0, 105.1),  # inside the kill's recovery
        run(4, 115.0, 115.4),  # after the kill's recovery
        run(5, 270.0, 270.3),  # inside the broker cut's pump-healed recovery
        run(6, 290.0, 290.1),  # after it
    ]
    verdict = measure(entries, faults)
    assert {run_id: round(s, 3) for run_id, s in verdict.lateness_by_run.items()} == {1: 0.2, 4: 0.4, 6: 0.1}
    assert verdict.latest_runs(1)[0][0] == 4
    assert verdict.lateness_excluded == 3


def test_an_abandon_is_explained_only_by_a_lease_fault_while_it_ran() -> None:
    def abandoned(run_id: int, started_s: float) -> Entry:
        entry = run(run_id, started_s - 0.1, started_s)
        entry.status, entry.error_message = "abandoned", ABANDONED
        entry.completed_at = entry.started_at + timedelta(seconds=8)  # type: ignore[operator]
        return entry

    verdict = Verdict()
    kill = fault(FaultKind.WORKER_KILL, 100, 100.1)
    _check_abandoned(verdict, abandoned(1, 98.0), [kill])  # its worker was killed while it ran
    _check_abandoned(verdict, abandoned(2, 300.0), [kill])  # no fault near it
    assert list(verdict.unexplained_abandons) == [2]
    assert verdict.failures == [verdict.unexplained_abandons[2]]
