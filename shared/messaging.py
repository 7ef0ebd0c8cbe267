"""The broker and the three kinds of message the services exchange over it.

RabbitMQ is only a transport: any message may be lost, duplicated or late. Each message therefore names a row
in the database, and the receiver checks that row before acting (see ``shared.protocol``).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from shared.settings import Settings

TICK_QUEUE = "cronwork.ticks"  # tiny claim transactions: never stuck behind a long handler
RUN_QUEUE = "cronwork.runs"  # task handlers
SYSTEM_QUEUE = "cronwork.system"  # the system crons sent by the beat
QUEUES = (TICK_QUEUE, RUN_QUEUE, SYSTEM_QUEUE)

TICK_ACTOR = "tick"
RUN_ACTOR = "execute_run"

# Periodiq drops a system-cron message older than this: a minute-old pump or cleanup slot is not worth
# running late, the next slot does the same work.
SYSTEM_MESSAGE_SKIP_DELAY_S = 30


def build_broker(settings: Settings) -> dramatiq.Broker:
    """RabbitMQ with publisher confirms when ``BROKER_URL`` is set, else Dramatiq's in-process broker."""
    broker: dramatiq.Broker
    if settings.broker_url:
        # Without confirms a publish the broker refused or lost goes unnoticed; with them it raises, and the
        # outbox flag stays unset for the pump to retry.
        broker = RabbitmqBroker(url=with_connection_timeouts(settings.broker_url), confirm_delivery=True)
    else:
        broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PeriodiqMiddleware(skip_delay=SYSTEM_MESSAGE_SKIP_DELAY_S))
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def with_connection_timeouts(url: str) -> str:
    """The broker URL with bounded waits, unless it sets its own: a RabbitMQ under a memory or disk alarm blocks
    publishers, and a publish made while holding a row lock must fail (and leave the outbox to the pump)
    rather than hang."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in (("blocked_connection_timeout", "30"), ("socket_timeout", "10"), ("heartbeat", "60")):
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


def send_tick(
    broker: dramatiq.Broker, schedule_id: int, slot: datetime, dedupe_key: str, delay_ms: int
) -> None:
    """Ask a worker to claim ``slot`` of a schedule, no earlier than ``delay_ms`` from now."""
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=TICK_QUEUE,
        actor_name=TICK_ACTOR,
        args=(schedule_id, slot.isoformat(), dedupe_key),
        kwargs={},
        options={},
    )
    broker.enqueue(message, delay=max(0, delay_ms) or None)


def send_run(broker: dramatiq.Broker, history_id: int, delay_ms: int = 0) -> None:
    """Ask a worker to start the queued run ``history_id``."""
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=RUN_QUEUE,
        actor_name=RUN_ACTOR,
        args=(history_id,),
        kwargs={},
        options={},
    )
    broker.enqueue(message, delay=max(0, delay_ms) or None)


def broker_is_reachable(settings: Settings, timeout_s: float = 2.0) -> bool:
    """Whether a fresh AMQP connection to ``BROKER_URL`` opens (always true for the in-process broker)."""
    if not settings.broker_url:
        return True
    import pika

    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = timeout_s
    parameters.blocked_connection_timeout = timeout_s
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except Exception:
        return False
    return True
