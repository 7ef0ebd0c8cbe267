"""The worker's actors: thin shells around ``shared.protocol``. Run by the ``dramatiq`` CLI.

Importing this module connects to the database and broker named by the environment and declares every actor
on that broker: ticks (claim slots), runs (execute a handler) and one actor per system cron, which the beat
(``services.beat.main``) sends on periodiq's schedule. Each process batches its claims and its outcomes: the
actor threads hand them to a ``Batcher`` and acknowledge their message once the batch has committed.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.common import dq_name
from dramatiq.middleware import CurrentMessage, Middleware
from dramatiq.middleware.prometheus import Prometheus
from periodiq import cron
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from shared import protocol
from shared.batching import Batcher
from shared.db import utcnow
from shared.healing import INTERRUPTED, abandon_runs
from shared.heartbeat import Heartbeat, heartbeat_path
from shared.messaging import (
    RUN_ACTOR,
    RUN_QUEUE,
    SYSTEM_QUEUE,
    TICK_ACTOR,
    TICK_QUEUE,
    Outgoing,
    tick_message,
    tick_slots,
)
from shared.observability import configure_logging
from shared.protocol import RUNS
from shared.runtime import build_runtime
from shared.settings import Settings
from shared.system_tasks import SYSTEM_TASK_TYPE, SystemTask, offered_system_tasks

logger = logging.getLogger("cronwork.worker")

settings = Settings.from_env()
configure_logging(settings)  # over the format the dramatiq (or periodiq) command gave this process
runtime = build_runtime(settings, ping_on_checkout=False)  # every path here retries a dead connection
broker = runtime.broker

# Infrastructure failures (database briefly down) are retried by Dramatiq, briefly: the pump heals the rest, and
# a long backoff would hold a delayed message near RabbitMQ's consumer_timeout.
TRANSPORT_RETRIES: dict[str, Any] = {"max_retries": 5, "min_backoff": 500, "max_backoff": 15_000}
# A tick that arrives this little before its slot (another host's clock) waits here; earlier, it is sent back.
EARLY_TICK_WAIT_S = 1.0

# Two stages, each a batch on its own thread, so that one batch's publish overlaps the next batch's claim.
claimer: Batcher[protocol.ClaimRequest, bool] = Batcher(
    lambda requests: protocol.claim_slots(runtime, requests), name="claimer"
)
tick_publisher: Batcher[protocol.ClaimRequest, None] = Batcher(
    lambda requests: protocol.publish_claimed(runtime, requests), name="tick-publisher"
)
completer: Batcher[protocol.Outcome, bool] = Batcher(
    lambda outcomes: protocol.record_outcomes(runtime, outcomes), name="completer"
)


runs_in_progress = protocol.RunsInProgress()  # the task runs and system runs this process has started


def record_interrupted_runs() -> int:
    """Record the runs this process started and has not finished as interrupted (abandoned, and retried where
    they may be), rather than leave them ``running`` until their lease runs out. Returns how many."""
    in_progress = runs_in_progress.ids()
    if not in_progress:
        return 0
    try:
        return abandon_runs(runtime, select(RUNS.c.id).where(RUNS.c.id.in_(in_progress)), INTERRUPTED)
    except SQLAlchemyError:  # the database is away: the pump calls them abandoned once their lease runs out
        logger.exception("runs %s: their interruption could not be recorded", in_progress)
        return 0


class WorkerLifecycle(Middleware):
    """A worker process's life: keeps ``$HEARTBEAT_DIR/cronwork-worker.heartbeat`` fresh while it is up, stops
    as process managers ask, and finishes the batches in hand once its threads have stopped.

    Stopping: SIGTERM (or SIGHUP) drains, however many times it comes (systemd signals every process of the
    unit, and ``cronwork worker`` forwards the signal too; Dramatiq would take a second one as "kill"); SIGQUIT
    stops at once, recording the runs in progress as interrupted. SIGINT is Dramatiq's main process's to
    forward; this process ignores it, as Dramatiq has it."""

    def __init__(self, directory: str):
        self.heartbeat = Heartbeat(heartbeat_path(directory, "worker"))
        self.draining = False

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """In a worker process the ``dramatiq`` command started: take over its stop signals."""
        dramatiq_drain = signal.getsignal(signal.SIGTERM)
        if not callable(dramatiq_drain):  # not Dramatiq's worker process: leave its signals alone
            return

        def drain_once(signum: int, frame: FrameType | None) -> None:
            if self.draining:
                logger.info("already draining (SIGQUIT stops at once)")
                return
            self.draining = True
            dramatiq_drain(signum, frame)

        signal.signal(signal.SIGTERM, drain_once)
        signal.signal(signal.SIGHUP, drain_once)
        signal.signal(signal.SIGQUIT, lambda _signum, _frame: stop_now())

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.heartbeat.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After the worker threads (a SIGTERM drain) and only then: their last claims and outcomes are in the
        # batchers, and the liveness probe must not kill the pod halfway through the drain.
        claimer.close()
        tick_publisher.close()
        completer.close()
        # Runs still going when the shutdown timeout ran out: their threads die with the process.
        interrupted = record_interrupted_runs()
        if interrupted:
            logger.warning("%d run(s) outlasted the shutdown timeout: recorded as interrupted", interrupted)
        self.heartbeat.stop()


def stop_now() -> None:
    """Exit at once: record the outcomes already in hand, then the runs still in progress as interrupted."""
    completer.close(timeout_s=5)
    interrupted = record_interrupted_runs()
    logger.warning("stopped at once: %d run(s) in progress recorded as interrupted", interrupted)
    logging.shutdown()
    os._exit(0)  # the worker threads are cut short: their runs are recorded, their messages go back unacked


broker.add_middleware(WorkerLifecycle(settings.heartbeat_dir))


class PrometheusServedByTheSupervisor(Prometheus):
    """Dramatiq's Prometheus middleware (its ``dramatiq_*`` metrics), without the exposition server it would
    fork in each of the pod's three groups, all on one port: ``cronwork worker`` serves the directory they
    share, cronwork's run metrics included (``services.__main__.serve_worker_metrics``).

    It also lets a delayed message go when it leaves this process's memory for its queue. Dramatiq's own
    version lets it go only when this process runs the copy, so every copy another pod runs (half of them, with
    two pods) stays in its set and in ``dramatiq_delayed_messages_inprogress`` for good: a leak of a message id
    per delayed tick, about 12 MB an hour per tick worker at 200 fires/s (Bogdanp/dramatiq#672)."""

    @property
    def forks(self) -> list[Any]:
        """None."""
        return []

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        # The worker enqueues a due delayed message's copy under the same id, before anyone can run it.
        if message.message_id in self.delayed_messages:
            self.delayed_messages.discard(message.message_id)
            self.inprogress_delayed_messages.labels(dq_name(message.queue_name), message.actor_name).dec()


# Only where ``cronwork worker`` set up the metrics directory: in the embedded mode no process boot sets the
# middleware up, and the beat never processes a message.
if os.environ.get("dramatiq_prom_db"):  # noqa: SIM112 (Dramatiq's own variable)
    broker.add_middleware(PrometheusServedByTheSupervisor())


@dramatiq.actor(actor_name=TICK_ACTOR, queue_name=TICK_QUEUE, time_limit=60_000, **TRANSPORT_RETRIES)
def tick(tick_id: int, triples: list[list[Any]]) -> None:
    slots = tick_slots(triples)
    early_s = (max(slot.slot for slot in slots) - utcnow()).total_seconds()
    if early_s > EARLY_TICK_WAIT_S:
        # Delivered long before its slots by this host's clock: wait out the rest in the broker, unclaimed,
        # never longer than the horizon (far below RabbitMQ's consumer_timeout).
        delay_ms = int(min(early_s, settings.tick_horizon_s) * 1000)
        runtime.publisher.publish([Outgoing(tick_message(tick_id, slots), delay_ms)])
        return
    if early_s > 0:
        time.sleep(early_s)
    requests = [protocol.ClaimRequest(tick_id, slot) for slot in slots]
    claimer.submit(requests)
    # Acknowledged only once its runs and next ticks are published: a crash before leaves it to be delivered
    # again, and the redelivery (stale by then) completes the publishes.
    tick_publisher.submit(requests)


@dramatiq.actor(
    actor_name=RUN_ACTOR,
    queue_name=RUN_QUEUE,
    time_limit=settings.task_time_limit_s * 1000,
    **TRANSPORT_RETRIES,
)
def execute_run(history_id: int) -> None:
    protocol.execute_run(runtime, history_id, record=completer.submit, in_progress=runs_in_progress)


def system_slot(message: dramatiq.Message[Any] | None) -> datetime:
    """The minute a system-cron message belongs to: periodiq's ``scheduled_at``, or now for a manual send."""
    scheduled_at = message.options.get("scheduled_at") if message else None
    instant = datetime.fromisoformat(scheduled_at) if scheduled_at else datetime.now(UTC)
    return instant.astimezone(UTC).replace(second=0, microsecond=0)


def declare_system_actor(task: SystemTask) -> dramatiq.Actor[[], None]:
    def run_system_task() -> None:
        slot = system_slot(CurrentMessage.get_current_message())
        protocol.run_system_slot(
            runtime, task.id, SYSTEM_TASK_TYPE, slot, task.work, in_progress=runs_in_progress
        )

    run_system_task.__name__ = task.id
    return dramatiq.actor(
        actor_name=task.id,
        queue_name=SYSTEM_QUEUE,
        periodic=cron(task.cron_expression),
        max_retries=0,
        time_limit=settings.task_time_limit_s * 1000,
    )(run_system_task)


system_actors = {task.id: declare_system_actor(task) for task in offered_system_tasks(settings)}
