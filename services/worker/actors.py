"""The worker's actors: thin shells around ``shared.protocol``. Run by the ``dramatiq`` CLI.

Importing this module connects to the database and broker named by the environment and declares every actor
on that broker: ticks (claim slots), runs (execute a handler) and one actor per system cron, which the beat
(``services.beat.main``) sends on periodiq's schedule. Each process batches its claims and its outcomes: the
actor threads hand them to a ``Batcher`` and acknowledge their message once the batch has committed.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage, Middleware
from dramatiq.middleware.prometheus import Prometheus
from periodiq import cron

from shared import protocol
from shared.batching import Batcher
from shared.db import utcnow
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


class WorkerLifecycle(Middleware):
    """Keeps ``$HEARTBEAT_DIR/cronwork-worker.heartbeat`` fresh while a worker process is up, and finishes the
    batches in hand once its threads have stopped."""

    def __init__(self, directory: str):
        self.heartbeat = Heartbeat(heartbeat_path(directory, "worker"))

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.heartbeat.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After the worker threads (a SIGTERM drain) and only then: their last claims and outcomes are in the
        # batchers, and the liveness probe must not kill the pod halfway through the drain.
        claimer.close()
        tick_publisher.close()
        completer.close()
        self.heartbeat.stop()


broker.add_middleware(WorkerLifecycle(settings.heartbeat_dir))


class PrometheusServedByTheSupervisor(Prometheus):
    """Dramatiq's Prometheus middleware (its ``dramatiq_*`` metrics), without the exposition server it would
    fork in each of the pod's three groups, all on one port: ``cronwork worker`` serves the directory they
    share, cronwork's run metrics included (``services.__main__.serve_worker_metrics``)."""

    @property
    def forks(self) -> list[Any]:
        """None."""
        return []


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
    protocol.execute_run(runtime, history_id, record=completer.submit)


def system_slot(message: dramatiq.Message[Any] | None) -> datetime:
    """The minute a system-cron message belongs to: periodiq's ``scheduled_at``, or now for a manual send."""
    scheduled_at = message.options.get("scheduled_at") if message else None
    instant = datetime.fromisoformat(scheduled_at) if scheduled_at else datetime.now(UTC)
    return instant.astimezone(UTC).replace(second=0, microsecond=0)


def declare_system_actor(task: SystemTask) -> dramatiq.Actor[[], None]:
    def run_system_task() -> None:
        slot = system_slot(CurrentMessage.get_current_message())
        protocol.run_system_slot(runtime, task.id, SYSTEM_TASK_TYPE, slot, task.work)

    run_system_task.__name__ = task.id
    return dramatiq.actor(
        actor_name=task.id,
        queue_name=SYSTEM_QUEUE,
        periodic=cron(task.cron_expression),
        max_retries=0,
        time_limit=settings.task_time_limit_s * 1000,
    )(run_system_task)


system_actors = {task.id: declare_system_actor(task) for task in offered_system_tasks(settings)}
