"""The broker and the three kinds of message the services exchange over it.

RabbitMQ is only a transport: any message may be lost, duplicated or late. Each message therefore names a row
in the database, and the receiver checks that row before acting (see ``shared.protocol``).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import BrokerError, ConnectionClosed
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from shared.settings import Settings

TICK_QUEUE = "cronwork.ticks"  # tiny claim transactions: never stuck behind a long handler
RUN_QUEUE = "cronwork.runs"  # task handlers
SYSTEM_QUEUE = "cronwork.system"  # the system crons sent by the beat
QUEUES = (TICK_QUEUE, RUN_QUEUE, SYSTEM_QUEUE)

TICK_ACTOR = "claim_ticks"
RUN_ACTOR = "execute_run"

# Periodiq drops a system-cron message older than this: a minute-old pump or cleanup slot is not worth
# running late, the next slot does the same work.
SYSTEM_MESSAGE_SKIP_DELAY_S = 30

# A batch publish gives up after this long (a broker under a memory alarm blocks publishers): a claim batch's
# ticks wait for it before they are acknowledged, and the pump's cycle must not stall.
PUBLISH_TIMEOUT_S = 5
PERSISTENT = pika.BasicProperties(delivery_mode=2)


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
    publishers, and a publish must fail (and leave the outbox to the pump) rather than hang."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in (("blocked_connection_timeout", "30"), ("socket_timeout", "10"), ("heartbeat", "60")):
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(frozen=True)
class TickSlot:
    """One (schedule, slot, dedupe key) triple a tick asks a worker to claim."""

    schedule_id: int
    slot: datetime
    dedupe_key: str


def tick_message(tick_id: int, slots: Sequence[TickSlot]) -> dramatiq.Message[None]:
    """A tick: the slots of several schedules due in the same short bucket, claimed together.

    ``tick_id`` names the tick's row in ``ticks_in_flight`` (the tick budget's ledger), which the claim deletes.
    """
    triples = [[slot.schedule_id, slot.slot.isoformat(), slot.dedupe_key] for slot in slots]
    return dramatiq.Message(
        queue_name=TICK_QUEUE, actor_name=TICK_ACTOR, args=(tick_id, triples), kwargs={}, options={}
    )


def tick_slots(triples: Sequence[Sequence[Any]]) -> list[TickSlot]:
    """The triples of a tick message, parsed."""
    return [
        TickSlot(int(schedule_id), datetime.fromisoformat(slot), key) for schedule_id, slot, key in triples
    ]


def run_message(history_id: int, time_limit_s: int) -> dramatiq.Message[None]:
    """Asks a worker to start the queued run ``history_id``, interrupting it after ``time_limit_s`` (Dramatiq's
    time-limit middleware reads the message's option before the actor's)."""
    return dramatiq.Message(
        queue_name=RUN_QUEUE,
        actor_name=RUN_ACTOR,
        args=(history_id,),
        kwargs={},
        options={"time_limit": time_limit_s * 1000},
    )


@dataclass(frozen=True)
class Outgoing:
    """A message and how long the broker should hold it (None: deliver now)."""

    message: dramatiq.Message[None]
    delay_ms: int | None = None


class Publisher:
    """Hands batches of messages to the broker and returns once the broker has taken them all.

    On RabbitMQ each calling thread gets its own connection and a channel in AMQP transaction mode: a batch is
    any number of ``basic.publish`` and one ``tx.commit``, so a batch costs one round trip instead of one
    confirm wait per message, and either every message is taken or the call raises (``BrokerError``). A
    ``mandatory`` flag turns a publish to a queue that does not exist into an error instead of a silent drop.
    Waits are bounded (``PUBLISH_TIMEOUT_S``): a broker under a memory alarm must make callers give up in
    seconds, not retry for minutes. On the in-process broker (the
    embedded mode) messages are enqueued one by one.
    """

    def __init__(self, broker: dramatiq.Broker):
        self.broker = broker
        self._state = threading.local()
        self._parameters: list[pika.ConnectionParameters] | None = None
        if isinstance(broker, RabbitmqBroker):
            given = broker.parameters if isinstance(broker.parameters, list) else [broker.parameters]
            self._parameters = [bounded(parameters) for parameters in given]

    def publish(self, batch: Sequence[Outgoing]) -> None:
        """Publish every message of ``batch``; raise ``BrokerError`` unless the broker took them all."""
        if not batch:
            return
        if self._parameters is None:
            for outgoing in batch:
                self.broker.enqueue(outgoing.message, delay=outgoing.delay_ms)
            return
        reused = getattr(self._state, "channel", None) is not None
        try:
            self._publish_in_transaction(batch)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._forget_connection()
            if not reused:
                raise ConnectionClosed(exc) from None
            # The cached connection may have died with a broker restart since it was last used: one more try
            # on a fresh one. (Had the first commit reached the broker, the copies are dropped by row checks.)
            try:
                self._publish_in_transaction(batch)
            except (pika.exceptions.AMQPError, OSError) as again:
                self._forget_connection()
                raise ConnectionClosed(again) from None

    def _publish_in_transaction(self, batch: Sequence[Outgoing]) -> None:
        channel = self._channel()
        returned = self._state.returned
        returned.clear()
        for outgoing in batch:
            message = self._routed(outgoing)
            channel.basic_publish(
                exchange="",
                routing_key=message.queue_name,
                body=message.encode(),
                properties=PERSISTENT,
                mandatory=True,
            )
        channel.tx_commit()
        channel.connection.process_data_events(0)  # a basic.return arrives before tx.commit-ok
        if returned:
            reason = f"the broker returned {len(returned)} message(s): no queue {returned[0]!r}"
            raise QueueNotFound(reason)  # type: ignore[no-untyped-call]  # dramatiq's errors are unannotated

    def close(self) -> None:
        """Close this thread's connections."""
        self._forget_connection()

    @staticmethod
    def _routed(outgoing: Outgoing) -> dramatiq.Message[None]:
        if not outgoing.delay_ms or outgoing.delay_ms <= 0:
            return outgoing.message
        return outgoing.message.copy(
            queue_name=dq_name(outgoing.message.queue_name),
            options={"eta": current_millis() + outgoing.delay_ms},
        )

    def _channel(self) -> Any:
        channel = getattr(self._state, "channel", None)
        if channel is not None and channel.is_open:
            return channel
        self._forget_connection()
        assert isinstance(self.broker, RabbitmqBroker)
        for queue_name in QUEUES:  # declared by Dramatiq's own channel, with its dead-letter arguments
            self.broker.declare_queue(queue_name, ensure=True)
        connection = pika.BlockingConnection(self._parameters)
        channel = connection.channel()
        channel.tx_select()
        self._state.returned = []
        channel.add_on_return_callback(
            lambda _channel, _method, _properties, body: self._state.returned.append(body[:200])
        )
        self._state.connection, self._state.channel = connection, channel
        return channel

    def _forget_connection(self) -> None:
        connection = getattr(self._state, "connection", None)
        self._state.connection = self._state.channel = None
        if connection is not None and connection.is_open:
            with contextlib.suppress(
                Exception
            ):  # a broken connection may fail to close; it is dropped anyway
                connection.close()


def bounded(parameters: pika.ConnectionParameters) -> pika.ConnectionParameters:
    """``parameters`` with waits of ``PUBLISH_TIMEOUT_S`` and a single connection attempt."""
    parameters = copy.copy(parameters)
    parameters.socket_timeout = PUBLISH_TIMEOUT_S
    parameters.blocked_connection_timeout = PUBLISH_TIMEOUT_S
    parameters.connection_attempts = 1
    parameters.retry_delay = 0
    return parameters


class QueueNotFound(BrokerError):
    """The broker returned a message: the queue it was published to does not exist."""


def broker_is_reachable(settings: Settings, timeout_s: float = 2.0) -> bool:
    """Whether a fresh AMQP connection to ``BROKER_URL`` opens (always true for the in-process broker)."""
    if not settings.broker_url:
        return True
    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = timeout_s
    parameters.blocked_connection_timeout = timeout_s
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except Exception:
        return False
    return True
