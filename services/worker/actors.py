"""The worker's actors: thin shells around ``shared.protocol``. Run by the ``dramatiq`` CLI.

Importing this module connects to the database and broker named by the environment and declares every actor
on that broker: ticks (claim a slot), runs (execute a handler) and one actor per system cron, which the beat
(``services.beat.main``) sends on periodiq's schedule.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage, Middleware
from periodiq import cron

from shared import protocol
from shared.heartbeat import Heartbeat, heartbeat_path
from shared.messaging import RUN_ACTOR, RUN_QUEUE, SYSTEM_QUEUE, TICK_ACTOR, TICK_QUEUE
from shared.runtime import build_runtime
from shared.settings import Settings
from shared.system_tasks import SYSTEM_TASK_TYPE, SYSTEM_TASKS, SystemTask

logger = logging.getLogger("cronwork.worker")

settings = Settings.from_env()
runtime = build_runtime(settings)
broker = runtime.broker

# Infrastructure failures (database briefly down) are retried by Dramatiq, briefly: the pump heals the rest, and
# a long backoff would hold a delayed message near RabbitMQ's consumer_timeout.
TRANSPORT_RETRIES: dict[str, Any] = {"max_retries": 5, "min_backoff": 500, "max_backoff": 15_000}


class WorkerHeartbeat(Middleware):
    """Keeps ``$HEARTBEAT_DIR/cronwork-worker.heartbeat`` fresh while a worker process is up."""

    def __init__(self, directory: str):
        self.heartbeat = Heartbeat(heartbeat_path(directory, "worker"))

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.heartbeat.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Not before: a SIGTERM drain can last the whole task time limit, and the liveness probe must not kill
        # the pod halfway through it.
        self.heartbeat.stop()


broker.add_middleware(WorkerHeartbeat(settings.heartbeat_dir))


@dramatiq.actor(actor_name=TICK_ACTOR, queue_name=TICK_QUEUE, time_limit=60_000, **TRANSPORT_RETRIES)
def tick(schedule_id: int, slot: str, dedupe_key: str) -> None:
    protocol.claim_slot(runtime, schedule_id, datetime.fromisoformat(slot), dedupe_key)


@dramatiq.actor(
    actor_name=RUN_ACTOR,
    queue_name=RUN_QUEUE,
    time_limit=settings.task_time_limit_s * 1000,
    **TRANSPORT_RETRIES,
)
def execute_run(history_id: int) -> None:
    protocol.execute_run(runtime, history_id)


def system_slot(message: dramatiq.Message | None) -> datetime:
    """The minute a system-cron message belongs to: periodiq's ``scheduled_at``, or now for a manual send."""
    scheduled_at = message.options.get("scheduled_at") if message else None
    instant = datetime.fromisoformat(scheduled_at) if scheduled_at else datetime.now(UTC)
    return instant.astimezone(UTC).replace(second=0, microsecond=0)


def declare_system_actor(task: SystemTask) -> dramatiq.Actor:
    def run_system_task() -> None:
        slot = system_slot(CurrentMessage.get_current_message())
        protocol.run_system_slot(runtime, task.id, SYSTEM_TASK_TYPE, slot, task.work)

    run_system_task.__name__ = task.id
    return dramatiq.actor(
        run_system_task,
        actor_name=task.id,
        queue_name=SYSTEM_QUEUE,
        periodic=cron(task.cron_expression),
        max_retries=0,
        time_limit=settings.task_time_limit_s * 1000,
    )


system_actors = {task.id: declare_system_actor(task) for task in SYSTEM_TASKS}
