"""The protocol's steps in-process, against the real PostgreSQL and RabbitMQ: outboxes, pump, retention."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import OperationalError

from shared import healing, protocol
from shared.db import utcnow
from shared.messaging import RUN_QUEUE, TICK_QUEUE, Outgoing, Publisher, TickSlot, tick_slots
from shared.models import RunStatus, TaskRunHistory, TaskSchedule, TickInFlight, TriggeredBy
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings
from tests.conftest import make_settings
from tests.worker.conftest import create_schedule, run_now, update_schedule

REPORT = {"task_type": "report_publish", "config": {"reportId": "compliance-weekly"}}


def ready_and_delayed(runtime: Runtime, queue: str) -> tuple[int, int]:
    """Messages waiting in ``queue`` and in its delay queue."""
    ready, delayed, _dead = runtime.broker.get_queue_message_counts(queue)
    return ready, delayed


def unreachable_broker_runtime(runtime: Runtime) -> Runtime:
    broker = RabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", confirm_delivery=True)
    return Runtime(
        settings=runtime.settings, sessions=runtime.sessions, broker=broker, publisher=Publisher(broker)
    )


def claim(runtime: Runtime, schedule_id: int, slot: datetime, key: str) -> bool:
    """Deliver one tick naming one slot to the claimer; whether it claimed the slot."""
    [claimed] = protocol.claim_ticks(runtime, [protocol.ClaimRequest(0, TickSlot(schedule_id, slot, key))])
    return claimed


def test_a_schedule_created_while_the_broker_is_down_is_stored_and_published_by_the_pump(
    runtime: Runtime,
) -> None:
    down = unreachable_broker_runtime(runtime)
    schedule = create_schedule(
        down,
        {"name": "born in an outage", "schedule_type": "interval", "interval_ms": 5000, **REPORT},
        "tests",
    )
    with runtime.sessions() as session:
        stored = session.get(TaskSchedule, schedule.id)
        assert stored is not None and stored.next_run_at is not None
        assert stored.tick_published_at is None, "the outbox flag records that nothing was published"
    before = ready_and_delayed(runtime, TICK_QUEUE)

    healing.pump(runtime)  # the broker is back
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is not None
    assert ready_and_delayed(runtime, TICK_QUEUE) == (before[0], before[1] + 1)


def test_a_run_whose_message_was_lost_is_dispatched_again_by_the_pump(runtime: Runtime) -> None:
    schedule = create_schedule(runtime, {"name": "manual", "schedule_type": "manual", **REPORT}, "tests")
    run = run_now(unreachable_broker_runtime(runtime), schedule.id)
    assert run is not None
    with runtime.sessions.begin() as session:  # it has been waiting longer than the grace period
        session.execute(update(TaskRunHistory).values(due_at=utcnow() - timedelta(minutes=5)))
    before = ready_and_delayed(runtime, RUN_QUEUE)

    healing.pump(runtime)
    assert ready_and_delayed(runtime, RUN_QUEUE) == (before[0] + 1, before[1])
    with runtime.sessions() as session:
        assert session.get(TaskRunHistory, run.id).dispatched_at is not None
    healing.pump(runtime)  # dispatched just now: not again within the grace period
    assert ready_and_delayed(runtime, RUN_QUEUE) == (before[0] + 1, before[1])


def test_a_run_sent_long_ago_and_never_started_is_sent_once_more_per_lease(runtime: Runtime) -> None:
    schedule = create_schedule(runtime, {"name": "manual", "schedule_type": "manual", **REPORT}, "tests")
    run = run_now(runtime, schedule.id)
    assert run is not None
    long_ago = utcnow() - runtime.lease - timedelta(minutes=1)
    with runtime.sessions.begin() as session:  # sent a lease ago, and its message lost since
        session.execute(update(TaskRunHistory).values(due_at=long_ago, dispatched_at=long_ago))
    before = ready_and_delayed(runtime, RUN_QUEUE)

    healing.pump(runtime)
    healing.pump(runtime)

    assert ready_and_delayed(runtime, RUN_QUEUE) == (before[0] + 1, before[1])
    with runtime.sessions() as session:
        assert session.get(TaskRunHistory, run.id).dispatched_at > long_ago


def test_a_slot_beyond_the_horizon_is_published_by_the_pump_once_it_enters_it(runtime: Runtime) -> None:
    schedule = create_schedule(
        runtime, {"name": "hourly", "schedule_type": "interval", "interval_ms": 3_600_000, **REPORT}, "tests"
    )
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is None, "an hour away: beyond H"
    healing.pump(runtime)
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is None
    with runtime.sessions.begin() as session:  # time passes: the slot is now inside the horizon
        session.execute(update(TaskSchedule).values(next_run_at=utcnow() + timedelta(seconds=60)))
    healing.pump(runtime)
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).tick_published_at is not None


def test_a_stale_tick_is_dropped_and_a_current_one_claims_its_slot_once(runtime: Runtime) -> None:
    schedule = create_schedule(
        runtime, {"name": "claim", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    with runtime.sessions.begin() as session:
        row = session.get(TaskSchedule, schedule.id)
        row.next_run_at = utcnow() - timedelta(milliseconds=10)
        slot, key = row.next_run_at, row.dedupe_key

    assert not claim(runtime, schedule.id, slot, "not-the-key")
    assert claim(runtime, schedule.id, slot, key)
    assert not claim(runtime, schedule.id, slot, key), "a redelivered tick claims nothing"
    with runtime.sessions() as session:
        runs = session.scalars(select(TaskRunHistory)).all()
        assert [(r.scheduled_for, r.triggered_by, r.missed_slots) for r in runs] == [
            (slot, TriggeredBy.SCHEDULE, 0)
        ]
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
                    task_type="report_publish",
                    status=status,
                    triggered_by=TriggeredBy.MANUAL,
                    queued_at=queued_at,
                    due_at=queued_at,
                )
            )
    assert healing.delete_old_history(runtime).startswith("deleted 2 run(s)")
    with runtime.sessions() as session:
        left = sorted((r.status, r.queued_at > old) for r in session.scalars(select(TaskRunHistory)))
    assert left == [(RunStatus.RUNNING, False), (RunStatus.SUCCESS, True)]


def test_build_runtime_connects_with_publisher_confirms(settings: Settings) -> None:
    built = build_runtime(settings)
    assert isinstance(built.broker, RabbitmqBroker) and built.broker.confirm_delivery
    built.broker.close()


def test_a_run_delivered_twice_at_once_starts_once(runtime: Runtime) -> None:
    schedule = create_schedule(runtime, {"name": "manual", "schedule_type": "manual", **REPORT}, "tests")
    run = run_now(runtime, schedule.id)
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
    schedule = create_schedule(
        runtime, {"name": "skewed", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    slot, key = due_now(runtime, schedule.id)
    assert claim(runtime, schedule.id, slot, key)
    with runtime.sessions.begin() as session:  # an edit on a host whose clock is behind re-arms the same slot
        row = session.get(TaskSchedule, schedule.id)
        row.next_run_at, row.dedupe_key, row.tick_published_at = slot, "rearmed", None

    assert claim(runtime, schedule.id, slot, "rearmed"), "the row check passes; the unique index stops it"
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).next_run_at == slot + timedelta(minutes=1)
        assert len(session.scalars(select(TaskRunHistory)).all()) == 1


def test_publishing_is_not_blocked_by_a_run_being_inserted_for_the_schedule(runtime: Runtime) -> None:
    schedule = create_schedule(
        runtime, {"name": "busy", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    with runtime.sessions.begin() as session:
        session.get(TaskSchedule, schedule.id).tick_published_at = None
    inserting = runtime.sessions()
    inserting.begin()
    # The foreign-key check of this uncommitted insert holds a key-share lock on the schedule row.
    inserting.add(
        TaskRunHistory(
            schedule_id=schedule.id,
            task_type="report_publish",
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
    schedule = create_schedule(
        runtime, {"name": "retime", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    slot, _key = due_now(runtime, schedule.id)  # its tick is still on the way

    update_schedule(runtime, schedule.id, {"interval_ms": 120_000})
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
    schedule = create_schedule(
        runtime, {"name": "stopped", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    slot, key = due_now(runtime, schedule.id)
    assert claim(runtime, schedule.id, slot, key)
    update_schedule(runtime, schedule.id, {"enabled": False})
    with runtime.sessions() as session:
        [run] = session.scalars(select(TaskRunHistory)).all()

    assert protocol.execute_run(runtime, run.id) is None
    with runtime.sessions() as session:
        run = session.get(TaskRunHistory, run.id)
        assert run.status == RunStatus.SKIPPED and "disabled" in run.error_message


def test_many_concurrent_publishers_put_one_live_tick_in_the_broker(runtime: Runtime) -> None:
    schedule = create_schedule(
        runtime, {"name": "contended", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    with runtime.sessions.begin() as session:  # as if the first publish had failed: the outbox is open
        session.get(TaskSchedule, schedule.id).tick_published_at = None
    before = ready_and_delayed(runtime, TICK_QUEUE)
    published_slots: list[int] = []

    def publish(n: int) -> None:
        if n % 2:  # the API or a claiming worker, for this schedule
            published_slots.append(int(protocol.publish_tick(runtime, schedule.id)))
        else:  # a pump, for the earliest unpublished slots
            published_slots.append(protocol.publish_outboxes(runtime, "pump", earliest_ticks=10)[1])

    # The API, the claiming worker and pumps on several beats all try at once.
    publishers = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for publisher in publishers:
        publisher.start()
    for publisher in publishers:
        publisher.join()

    assert sorted(published_slots) == [0] * 7 + [1]
    assert ready_and_delayed(runtime, TICK_QUEUE) == (before[0], before[1] + 1)


# --- Batches ----------------------------------------------------------------------------------------------------


def run_rows(runtime: Runtime) -> list[TaskRunHistory]:
    with runtime.sessions() as session:
        return list(session.scalars(select(TaskRunHistory).order_by(TaskRunHistory.id)))


def ticks_in_flight(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(TickInFlight)) or 0


def take_ticks(runtime: Runtime) -> list[tuple[int, list[TickSlot]]]:
    """Take every tick waiting in the broker (due, or delayed), as a worker would receive them: (id, slots)."""
    runtime.broker.declare_queue(TICK_QUEUE, ensure=True)
    channel = runtime.broker.channel
    ticks = []
    for queue in (TICK_QUEUE, f"{TICK_QUEUE}.DQ"):
        while True:
            _method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if body is None:
                break
            tick_id, triples = dramatiq.Message.decode(body).args
            ticks.append((tick_id, tick_slots(triples)))
    return ticks


def requests_of(ticks: list[tuple[int, list[TickSlot]]]) -> list[protocol.ClaimRequest]:
    return [protocol.ClaimRequest(tick_id, slot) for tick_id, slots in ticks for slot in slots]


def test_a_batch_with_a_stale_tick_and_a_duplicate_claims_each_current_slot_once(runtime: Runtime) -> None:
    current, edited = (
        create_schedule(
            runtime, {"name": name, "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
        )
        for name in ("current", "edited")
    )
    slot, key = due_now(runtime, current.id)
    edited_slot, _edited_key = due_now(runtime, edited.id)
    batch = [
        protocol.ClaimRequest(1, TickSlot(current.id, slot, key)),
        protocol.ClaimRequest(2, TickSlot(edited.id, edited_slot, "the key before an edit")),
        protocol.ClaimRequest(3, TickSlot(current.id, slot, key)),  # the same tick, delivered twice
    ]

    assert protocol.claim_ticks(runtime, batch) == [True, False, False]
    assert [(run.schedule_id, run.scheduled_for) for run in run_rows(runtime)] == [(current.id, slot)]
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, current.id).next_run_at == slot + timedelta(minutes=1)
        assert session.get(TaskSchedule, edited.id).next_run_at == edited_slot, "a stale tick moves nothing"


def test_a_batch_whose_commit_fails_changes_nothing_and_claims_when_delivered_again(runtime: Runtime) -> None:
    take_ticks(runtime)  # earlier tests' ticks, on this run's shared vhost
    schedule = create_schedule(
        runtime, {"name": "fragile", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    slot, key = due_now(runtime, schedule.id)
    [(tick_id, _slots)] = take_ticks(runtime)  # the tick its creation published
    batch = [protocol.ClaimRequest(tick_id, TickSlot(schedule.id, slot, key))]

    def database_gone(_session: object) -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    event.listen(runtime.sessions, "before_commit", database_gone)
    try:
        with pytest.raises(OperationalError):
            protocol.claim_ticks(runtime, batch)
    finally:
        event.remove(runtime.sessions, "before_commit", database_gone)
    assert run_rows(runtime) == []
    with runtime.sessions() as session:
        assert session.get(TaskSchedule, schedule.id).next_run_at == slot
    assert ticks_in_flight(runtime) == 1, "the tick is still counted: it will be delivered again"

    assert protocol.claim_ticks(runtime, batch) == [True]  # the redelivery
    assert [run.scheduled_for for run in run_rows(runtime)] == [slot]
    assert ticks_in_flight(runtime) == 1, "the consumed tick is forgotten, the next one counted"


def test_a_publish_that_fails_mid_batch_sends_nothing_and_leaves_every_outbox_to_the_pump(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    take_ticks(runtime)
    batch = []
    for n in range(6):
        schedule = create_schedule(
            runtime,
            {"name": f"chain {n}", "schedule_type": "interval", "interval_ms": 60_000, **REPORT},
            "tests",
        )
        slot, key = due_now(runtime, schedule.id)
        batch.append(protocol.ClaimRequest(0, TickSlot(schedule.id, slot, key)))
    take_ticks(runtime)
    runs_before = ready_and_delayed(runtime, RUN_QUEUE)
    in_flight_before = ticks_in_flight(runtime)
    publisher = runtime.publisher
    routed = publisher._routed
    published = {"count": 0}

    def broker_lost_after_three(outgoing: Outgoing) -> dramatiq.Message:
        published["count"] += 1
        if published["count"] > 3:  # three messages are on the wire, uncommitted; the retry fails too
            raise pika.exceptions.StreamLostError("connection reset by peer")
        return routed(outgoing)

    monkeypatch.setattr(publisher, "_routed", broker_lost_after_three)
    assert protocol.claim_ticks(runtime, batch) == [True] * 6  # the claims themselves committed
    monkeypatch.setattr(publisher, "_routed", routed)

    assert ready_and_delayed(runtime, RUN_QUEUE) == runs_before, (
        "an uncommitted AMQP transaction delivers nothing"
    )
    assert take_ticks(runtime) == []
    runs = run_rows(runtime)
    assert len(runs) == 6 and all(run.dispatched_at is None for run in runs)
    with runtime.sessions() as session:
        assert all(row.tick_published_at is None for row in session.scalars(select(TaskSchedule)))
    assert ticks_in_flight(runtime) == in_flight_before, "no next tick was counted, as none went out"

    with runtime.sessions.begin() as session:  # the grace period passes
        session.execute(update(TaskRunHistory).values(due_at=utcnow() - timedelta(minutes=5)))
    healing.pump(runtime)
    assert ready_and_delayed(runtime, RUN_QUEUE)[0] == runs_before[0] + 6
    assert sorted(slot.schedule_id for _tick, slots in take_ticks(runtime) for slot in slots) == sorted(
        request.slot.schedule_id for request in batch
    )


def test_a_slot_claimed_before_an_edit_and_its_retry_run_the_config_of_when_it_came_due(
    runtime: Runtime,
) -> None:
    schedule = create_schedule(
        runtime, {"name": "edited", "schedule_type": "interval", "interval_ms": 60_000, **REPORT}, "tests"
    )
    with runtime.sessions.begin() as session:
        row = session.get(TaskSchedule, schedule.id)
        row.next_run_at = utcnow() - timedelta(milliseconds=10)
        slot, key = row.next_run_at, row.dedupe_key
    assert claim(runtime, schedule.id, slot, key)

    edited = {"task_type": "data_export", "config": {"format": "csv"}, "name": "edited again"}
    update_schedule(runtime, schedule.id, edited)
    with runtime.sessions() as session:
        [queued] = session.scalars(select(TaskRunHistory).where(TaskRunHistory.schedule_id == schedule.id))
    started = protocol.start_run(runtime, queued.id)

    assert started is not None
    assert (started.task_type, started.config, started.schedule_name) == (
        "report_publish",
        REPORT["config"],
        "edited",
    )
    protocol.record_outcomes(
        runtime, [protocol.Outcome(started, RunStatus.FAILED, "boom", 1, may_retry=True)]
    )
    with runtime.sessions() as session:
        retry = session.scalars(select(TaskRunHistory).where(TaskRunHistory.attempt == 2)).one()
    assert (retry.task_type, retry.config, retry.scheduled_for) == ("report_publish", REPORT["config"], slot)


def test_a_tick_redelivered_after_its_claim_but_before_its_publishes_completes_them(runtime: Runtime) -> None:
    take_ticks(runtime)
    schedule = create_schedule(
        runtime,
        {"name": "interrupted", "schedule_type": "interval", "interval_ms": 60_000, **REPORT},
        "tests",
    )
    slot, key = due_now(runtime, schedule.id)
    take_ticks(runtime)
    tick = [protocol.ClaimRequest(0, TickSlot(schedule.id, slot, key))]
    # The claim commits; its worker dies before the publishes (here: they fail).
    assert protocol.claim_ticks(unreachable_broker_runtime(runtime), tick) == [True]
    [run] = run_rows(runtime)
    assert run.dispatched_at is None
    runs_before = ready_and_delayed(runtime, RUN_QUEUE)

    assert protocol.claim_ticks(runtime, tick) == [False], "the redelivered tick is stale..."
    assert ready_and_delayed(runtime, RUN_QUEUE)[0] == runs_before[0] + 1, "...but it sends the run"
    [(_id, [next_tick])] = take_ticks(runtime)
    assert (next_tick.schedule_id, next_tick.slot) == (schedule.id, slot + timedelta(minutes=1))
    assert len(run_rows(runtime)) == 1


def test_a_schedule_with_nothing_to_publish_is_stored_while_the_budget_is_busy(runtime: Runtime) -> None:
    engine = runtime.sessions.kw["bind"]
    with engine.connect() as publisher:  # another publisher, holding the fleet-wide budget lock
        publisher.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": protocol.TICK_BUDGET_LOCK})
        created: list[int] = []
        nightly = {"name": "nightly", "schedule_type": "cron", "cron_expression": "0 3 * * *", **REPORT}
        create = threading.Thread(
            target=lambda: created.append(create_schedule(runtime, nightly, "tests").id)
        )
        create.start()
        create.join(timeout=10)
        finished_while_the_lock_was_held = not create.is_alive()
        publisher.rollback()  # lets a create that waited for the lock finish, so the thread always ends
    create.join()

    # Its first slot lies beyond the horizon: the create never waited for the lock it did not need.
    assert finished_while_the_lock_was_held
    assert len(created) == 1


def test_slots_beyond_the_budget_wait_and_are_published_earliest_first(
    settings: Settings, runtime: Runtime
) -> None:
    budgeted = build_runtime(
        make_settings(settings.database_url, settings.broker_url, tick_budget=100, tick_bucket_ms=0),
        broker=runtime.broker,
    )
    now = utcnow()
    with budgeted.sessions.begin() as session:  # 250 schedules, one slot every 10 ms from 30 s on
        for n in range(250):
            session.add(
                TaskSchedule(
                    name=f"s{n}",
                    task_type="report_publish",
                    schedule_type="interval",
                    interval_ms=60_000,
                    config={"reportId": "compliance-weekly"},
                    created_by="tests",
                    next_run_at=now + timedelta(seconds=30, milliseconds=10 * (249 - n)),
                    dedupe_key=f"key{n}",
                )
            )
    with budgeted.sessions() as session:
        slots = sorted(session.scalars(select(TaskSchedule.next_run_at)))

    take_ticks(budgeted)
    healing.pump(budgeted)
    first = take_ticks(budgeted)
    assert ticks_in_flight(budgeted) == 100, "the budget is full, not exceeded"
    assert sorted(slot.slot for _id, tick in first for slot in tick) == slots[:100], "the earliest 100 slots"

    healing.pump(budgeted)  # nothing consumed: nothing more may go out
    assert take_ticks(budgeted) == []

    # A worker claims the first 40 ticks (their slots come due): 40 places free up, for the next 40 slots.
    with budgeted.sessions.begin() as session:
        session.execute(text("UPDATE task_schedules SET next_run_at = next_run_at - interval '31 seconds'"))
    consumed = [
        (tick_id, [replace(slot, slot=slot.slot - timedelta(seconds=31)) for slot in tick])
        for tick_id, tick in first[:40]
    ]
    assert all(protocol.claim_ticks(budgeted, requests_of(consumed)))
    healing.pump(budgeted)
    second = take_ticks(budgeted)
    assert ticks_in_flight(budgeted) == 100
    published = sorted(slot.slot for _id, tick in second for slot in tick)
    assert published == [slot - timedelta(seconds=31) for slot in slots[100:140]], (
        "the next 40, in slot order"
    )
