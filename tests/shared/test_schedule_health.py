"""A schedule's health on SQLite (the embedded mode): the failure streak and the last error its outcomes leave,
however they are batched, read back with the schedule, and gone with it."""

from __future__ import annotations

from shared import protocol, schedules
from shared.db import utcnow
from shared.models import ScheduleHealth
from shared.protocol import HealthEvent
from tests.shared.conftest import Embedded


def record(embedded: Embedded, *events: HealthEvent) -> None:
    """One completer batch: ``events`` in the order their runs finished."""
    with embedded.runtime.sessions.begin() as session:
        protocol.record_health(session, list(events), utcnow())


def health(embedded: Embedded, schedule_id: int) -> tuple[int | None, str | None]:
    with embedded.runtime.sessions() as session:
        schedule = schedules.get_schedule(session, schedule_id)
        assert schedule is not None
        return schedule.failure_streak, schedule.last_error


def failed(schedule_id: int, error: str) -> HealthEvent:
    return HealthEvent(schedule_id, failed=True, error=error)


def succeeded(schedule_id: int) -> HealthEvent:
    return HealthEvent(schedule_id, failed=False, error=None)


def test_failures_in_a_row_make_the_streak_and_a_success_resets_it_keeping_the_last_error(
    embedded: Embedded,
) -> None:
    schedule = embedded.add_schedule(utcnow(), interval_ms=60_000)
    assert health(embedded, schedule.id) == (0, None)  # no row yet

    for attempt in range(1, 4):
        record(embedded, failed(schedule.id, f"HTTP 503, run {attempt}"))
    assert health(embedded, schedule.id) == (3, "HTTP 503, run 3")

    record(embedded, succeeded(schedule.id))
    assert health(embedded, schedule.id) == (0, "HTTP 503, run 3")


def test_one_batch_with_several_outcomes_of_a_schedule_counts_them_in_the_order_they_finished(
    embedded: Embedded,
) -> None:
    first = embedded.add_schedule(utcnow(), interval_ms=60_000)
    second = embedded.add_schedule(utcnow(), interval_ms=60_000)
    record(embedded, failed(first.id, "old"), failed(second.id, "old"))

    record(
        embedded,
        failed(first.id, "before the success"),
        succeeded(first.id),
        failed(first.id, "after the success"),
        failed(second.id, "a"),
        failed(second.id, "b"),
    )

    assert health(embedded, first.id) == (1, "after the success")
    assert health(embedded, second.id) == (3, "b")


def test_deleting_a_schedule_deletes_its_health(embedded: Embedded) -> None:
    schedule = embedded.add_schedule(utcnow(), interval_ms=60_000)
    record(embedded, failed(schedule.id, "boom"))

    with embedded.runtime.sessions() as session:
        assert schedules.delete_schedule(session, schedule.id)

    with embedded.runtime.sessions() as session:
        assert session.get(ScheduleHealth, schedule.id) is None
