"""The protocol's steps in-process, against the real PostgreSQL and RabbitMQ: outboxes, pump, retention."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import select, update

from shared import protocol, schedules
from shared.db import utcnow
from shared.messaging import RUN_QUEUE, TICK_QUEUE
from shared.models import RunStatus, TaskRunHistory, TaskSchedule, TriggeredBy
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings

EMAIL = {"taskType": "send_email", "config": {"templateId": "weekly-digest"}}


def ready_and_delayed(runtime: Runtime, queue: str) -> tuple[int, int]:
    """Messages waiting in ``queue`` and in its delay queue."""
    ready, delayed, _dead = runtime.broker.get_queue_message_counts(queue)
    return ready, delayed


def unreachable_broker_runtime(runtime: Runtime) -> Runtime:
    broker = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", confirm_delivery=True)
    return Runtime(settings=runtime.settings, sessions=runtime.sessions, broker=broker)


def test_a_schedule_created_while_the_broker_is_down_is_stored_and_published_by_the_pump(
    runtime: Runtime,
) -> None:
    down = unreachable_broker_runtime(runtime)
    schedule = schedules.create_schedule(
        down, {"name": "born in an outage", "scheduleType": "interval", "intervalMs": 5000, **EMAIL}, "tests"
    )
    with runtime.sessions() as session:
        stored = session.get(TaskSchedule, schedule.id)
        assert stored is not None and stored.next_run_at is not None
        assert stored.tick_published_at is None, "the outbox flag records that nothing was published"
    before = ready_and_delayed(runtime, TICK_QUEUE)

    protocol.pump(runtime)  # the broker is back
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is not None
    assert ready_and_delayed(runtime, TICK_QUEUE) == (before[0], before[1] + 1)


def test_a_run_whose_message_was_lost_is_dispatched_again_by_the_pump(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "manual", "scheduleType": "manual", **EMAIL}, "tests"
    )
    run = schedules.run_now(unreachable_broker_runtime(runtime), schedule.id)
    assert run is not None
    with runtime.sessions.begin() as session:  # it has been waiting longer than the grace period
        session.execute(update(TaskRunHistory).values(due_at=utcnow() - timedelta(minutes=5)))
    before = ready_and_delayed(runtime, RUN_QUEUE)

    protocol.pump(runtime)
    assert ready_and_delayed(runtime, RUN_QUEUE) == (before[0] + 1, before[1])
    with runtime.sessions() as session:
        assert session.get(TaskRunHistory, run.id).dispatched_at is not None
    protocol.pump(runtime)  # dispatched just now: not again within the grace period
    assert ready_and_delayed(runtime, RUN_QUEUE) == (before[0] + 1, before[1])


def test_a_slot_beyond_the_horizon_is_published_by_the_pump_once_it_enters_it(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "hourly", "scheduleType": "interval", "intervalMs": 3_600_000, **EMAIL}, "tests"
    )
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is None, "an hour away: beyond H"
    protocol.pump(runtime)
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is None
    with runtime.sessions.begin() as session:  # time passes: the slot is now inside the horizon
        session.execute(update(TaskSchedule).values(next_run_at=utcnow() + timedelta(seconds=60)))
    protocol.pump(runtime)
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is not None


def test_a_stale_tick_is_dropped_and_a_current_one_claims_its_slot_once(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "claim", "scheduleType": "interval", "intervalMs": 60_000, **EMAIL}, "tests"
    )
    with runtime.sessions.begin() as session:
        row = session.get(TaskSchedule, schedule.id)
        row.next_run_at = utcnow() - timedelta(milliseconds=10)
        slot, key = row.next_run_at, row.dedupe_key

    assert protocol.claim_slot(runtime, schedule.id, slot, "not-the-key") is None
    claim = protocol.claim_slot(runtime, schedule.id, slot, key)
    assert claim is not None and claim.missed_slots == 0
    assert protocol.claim_slot(runtime, schedule.id, slot, key) is None, "a redelivered tick claims nothing"
    with runtime.sessions() as session:
        runs = session.scalars(select(TaskRunHistory)).all()
        assert [(r.scheduled_for, r.triggered_by) for r in runs] == [(slot, TriggeredBy.SCHEDULE)]
        assert session.get(TaskSchedule, schedule.id).next_run_at == slot + timedelta(minutes=1)


def test_retention_deletes_only_finished_runs_older_than_the_limit(runtime: Runtime) -> None:
    old = utcnow() - timedelta(days=runtime.settings.history_retention_days + 1)
    recent = utcnow() - timedelta(days=1)
    with runtime.sessions.begin() as session:
        for queued_at, status in (
            (old, RunStatus.SUCCESS),
            (old, RunStatus.FAILED),
            (old, RunStatus.RUNNING),
            (recent, RunStatus.SUCCESS),
        ):
            session.add(
                TaskRunHistory(
                    task_type="send_email",
                    status=status,
                    triggered_by=TriggeredBy.MANUAL,
                    queued_at=queued_at,
                    due_at=queued_at,
                )
            )
    assert protocol.delete_old_history(runtime).startswith("deleted 2 run(s)")
    with runtime.sessions() as session:
        left = sorted((r.status, r.queued_at > old) for r in session.scalars(select(TaskRunHistory)))
    assert left == [(RunStatus.RUNNING, False), (RunStatus.SUCCESS, True)]


def test_build_runtime_connects_with_publisher_confirms(settings: Settings) -> None:
    built = build_runtime(settings)
    assert isinstance(built.broker, RabbitmqBroker) and built.broker.confirm_delivery
    built.broker.close()


def test_a_run_delivered_twice_at_once_starts_once(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "manual", "scheduleType": "manual", **EMAIL}, "tests"
    )
    run = schedules.run_now(runtime, schedule.id)
    assert run is not None
    outcomes: list[str | None] = []
    deliveries = [
        threading.Thread(target=lambda: outcomes.append(protocol.execute_run(runtime, run.id)))
        for _ in range(4)
    ]
    for delivery in deliveries:
        delivery.start()
    for delivery in deliveries:
        delivery.join()
    assert sorted(outcomes, key=str) == [None, None, None, RunStatus.SUCCESS]
    with runtime.sessions() as session:
        assert session.get(TaskRunHistory, run.id).status == RunStatus.SUCCESS
        assert session.scalars(select(TaskRunHistory)).all() == [session.get(TaskRunHistory, run.id)]


def due_now(runtime: Runtime, schedule_id: int) -> tuple[datetime, str]:
    """Make the schedule's armed slot due (as if its time had come) and return (slot, key)."""
    with runtime.sessions.begin() as session:
        row = session.get(TaskSchedule, schedule_id)
        row.next_run_at = utcnow() - timedelta(milliseconds=10)
        return row.next_run_at, row.dedupe_key


def test_a_slot_re_armed_after_it_ran_is_moved_past_instead_of_retried_forever(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "skewed", "scheduleType": "interval", "intervalMs": 60_000, **EMAIL}, "tests"
    )
    slot, key = due_now(runtime, schedule.id)
    assert protocol.claim_slot(runtime, schedule.id, slot, key) is not None
    with runtime.sessions.begin() as session:  # an edit on a host whose clock is behind re-arms the same slot
        row = session.get(TaskSchedule, schedule.id)
        row.next_run_at, row.dedupe_key, row.tick_published_at = slot, "rearmed", None

    assert protocol.claim_slot(runtime, schedule.id, slot, "rearmed") is None
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).next_run_at == slot + timedelta(minutes=1)
        assert len(session.scalars(select(TaskRunHistory)).all()) == 1


def test_publishing_is_not_blocked_by_a_run_being_inserted_for_the_schedule(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "busy", "scheduleType": "interval", "intervalMs": 60_000, **EMAIL}, "tests"
    )
    with runtime.sessions.begin() as session:
        session.get(TaskSchedule, schedule.id).tick_published_at = None
    inserting = runtime.sessions()
    inserting.begin()
    # The foreign-key check of this uncommitted insert holds a key-share lock on the schedule row.
    inserting.add(
        TaskRunHistory(
            schedule_id=schedule.id,
            task_type="send_email",
            status=RunStatus.QUEUED,
            triggered_by=TriggeredBy.MANUAL,
        )
    )
    inserting.flush()
    published: list[bool] = []
    publisher = threading.Thread(target=lambda: published.append(protocol.publish_tick(runtime, schedule.id)))
    publisher.start()
    publisher.join(timeout=10)
    finished_while_insert_was_open = not publisher.is_alive()
    inserting.rollback()
    inserting.close()
    publisher.join()
    assert finished_while_insert_was_open, "publishing waited for an unrelated insert"
    assert published == [True], "the tick was published, not skipped"


def test_re_timing_a_schedule_whose_slot_is_due_runs_that_slot_first(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "retime", "scheduleType": "interval", "intervalMs": 60_000, **EMAIL}, "tests"
    )
    slot, _key = due_now(runtime, schedule.id)  # its tick is still on the way

    schedules.update_schedule(runtime, schedule.id, {"intervalMs": 120_000})
    with runtime.sessions() as session:
        [run] = session.scalars(select(TaskRunHistory)).all()
        assert (run.scheduled_for, run.triggered_by, run.status) == (
            slot,
            TriggeredBy.SCHEDULE,
            RunStatus.QUEUED,
        )
        assert run.dispatched_at is not None
        assert session.get(TaskSchedule, schedule.id).next_run_at > utcnow() + timedelta(seconds=119)


def test_a_scheduled_run_whose_schedule_was_disabled_before_it_started_is_skipped(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "stopped", "scheduleType": "interval", "intervalMs": 60_000, **EMAIL}, "tests"
    )
    slot, key = due_now(runtime, schedule.id)
    claim = protocol.claim_slot(runtime, schedule.id, slot, key)
    assert claim is not None
    schedules.update_schedule(runtime, schedule.id, {"enabled": False})

    assert protocol.execute_run(runtime, claim.history_id) is None
    with runtime.sessions() as session:
        run = session.get(TaskRunHistory, claim.history_id)
        assert run.status == RunStatus.SKIPPED and "disabled" in run.error_message


def test_many_concurrent_publishers_put_one_live_tick_in_the_broker(runtime: Runtime) -> None:
    schedule = schedules.create_schedule(
        runtime, {"name": "contended", "scheduleType": "interval", "intervalMs": 60_000, **EMAIL}, "tests"
    )
    with runtime.sessions.begin() as session:  # as if the first publish had failed: the outbox is open
        session.get(TaskSchedule, schedule.id).tick_published_at = None
    before = ready_and_delayed(runtime, TICK_QUEUE)
    results: list[bool] = []
    # The API, the claiming worker and pumps on several beats all try at once.
    publishers = [
        threading.Thread(
            target=lambda n=n: results.append(
                protocol.publish_tick(runtime, schedule.id, skip_locked=n % 2 == 0)
            )
        )
        for n in range(8)
    ]
    for publisher in publishers:
        publisher.start()
    for publisher in publishers:
        publisher.join()

    assert results.count(True) == 1
    assert ready_and_delayed(runtime, TICK_QUEUE) == (before[0], before[1] + 1)
