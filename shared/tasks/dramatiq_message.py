"""The Dramatiq-message task: each run sends one message to an actor of another Dramatiq application over
RabbitMQ, and succeeds once the broker has confirmed it.

The message is what Dramatiq's own ``actor.send_with_options`` would put on the queue (JSON, Dramatiq's default
encoding; the default exchange, routed by the queue's name), with ``options["cronwork"]`` naming the run, and a
message id derived from the run's id and attempt, so that a consumer can drop a copy.

It is published with pika, not through a Dramatiq ``RabbitmqBroker``: Dramatiq's enqueue declares the queue
before every publish, so a mistyped queue name would create a queue nobody consumes (and a queue the
application declared with other arguments, such as a max priority, would refuse the declaration). Here nothing
is declared: the publish carries the ``mandatory`` flag on a channel with publisher confirms, so a queue that
does not exist comes back as a failed run, and the run succeeds only once the broker has taken the message.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import dramatiq
import pika
import pika.exceptions
from dramatiq.encoder import JSONEncoder

from shared.messaging import bounded, with_connection_timeouts
from shared.secrets import MASK
from shared.task_types import ConfigField, FieldType, RunContext, TaskFailed, TaskType

# Message ids are uuid5(MESSAGE_ID_NAMESPACE, "<run id>:<attempt>"): the same for every copy of one attempt's
# message. Fixed forever, so that a consumer can compute the id of a run it knows.
MESSAGE_ID_NAMESPACE = uuid.UUID("94585172-b1fa-409a-ae42-c54434c27ba0")
AMQP_SCHEMES = ("amqp", "amqps")
# Dramatiq's own rule for queue names (``dramatiq.actor``); its delay and dead-letter queues end in these.
DRAMATIQ_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")
DRAMATIQ_INTERNAL_SUFFIXES = (".DQ", ".XQ")
PERSISTENT = 2  # AMQP delivery mode: the message survives a broker restart, as Dramatiq's own do


def message_id(run_id: int, attempt: int) -> str:
    """The id of the message sent by ``attempt`` of run ``run_id``: stable, so a copy can be recognised."""
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{run_id}:{attempt}"))


def masked_url(url: str) -> str:
    """``url`` without its password and query, for messages: ``amqp://user:••••••@host:5672/vhost``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    user = parts.username or ""
    credentials = f"{user}:{MASK}@" if parts.password else (f"{user}@" if user else "")
    return f"{parts.scheme}://{credentials}{host}{port}{parts.path}"


def cronwork_options(context: RunContext) -> dict[str, Any]:
    """What the message tells its consumer about the run that sent it (``options["cronwork"]``)."""
    slot = context.scheduled_for
    return {
        "scheduled_for": None if slot is None else _iso_z(slot),
        "run_id": context.run_id,
        "attempt": context.attempt,
        "schedule_id": context.schedule_id,
    }


def _iso_z(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dramatiq_message(context: RunContext) -> dramatiq.Message[Any]:
    """The message a run sends, as Dramatiq's ``send_with_options`` would build it."""
    config = context.config
    options: dict[str, Any] = {"cronwork": cronwork_options(context)}
    if config.get("priority") is not None:
        options["broker_priority"] = int(config["priority"])  # kept if the consumer's Retries re-enqueue it
    return dramatiq.Message(
        queue_name=config["queueName"],
        actor_name=config["actorName"],
        args=tuple(config.get("args") or ()),
        kwargs=dict(config.get("kwargs") or {}),
        options=options,
        message_id=message_id(context.run_id, context.attempt),
    )


def send_dramatiq_message(context: RunContext) -> str:
    """Publish the run's message and wait for the broker's confirm; the result names what was sent."""
    url = context.config.get("brokerUrl") or context.settings.broker_url
    if not url:
        raise TaskFailed(
            "no broker to send to: brokerUrl is not set and this cronwork has no BROKER_URL (embedded mode)"
        )
    message = dramatiq_message(context)
    broker = _broker_for(url)
    broker.publish(message, wait_s=context.time_limit_s)
    return f"sent {message.actor_name} to {message.queue_name} (message id {message.message_id})"


class BrokerConnection:
    """One RabbitMQ connection with a confirming channel, shared by the threads of a process, one at a time.

    Parameters:
      url: an ``amqp://`` or ``amqps://`` URL. Cronwork's publish waits apply whatever it says (one connection
        attempt, 5 s per socket operation and while the broker blocks publishers), as to its own publishes.

    The connection is opened on first use and kept. A cached connection may have died since (a broker restart,
    missed heartbeats while idle): a publish that fails on it is tried once more on a fresh one, with the same
    message id. Every error's text names the broker by ``masked_url``.
    """

    def __init__(self, url: str):
        self.url = url
        self.shown_url = masked_url(url)
        self._lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None

    def publish(self, message: dramatiq.Message[Any], wait_s: float) -> None:
        """Publish ``message`` with the ``mandatory`` flag and wait for its confirm; ``TaskFailed`` saying why
        the broker did not take it. Waits up to ``wait_s`` for another thread's publish to the same broker."""
        if not self._lock.acquire(timeout=wait_s):
            raise TaskFailed(f"gave up after {wait_s} s waiting for another publish to {self.shown_url}")
        try:
            self._publish_retrying_once(message)
        except pika.exceptions.UnroutableError:
            raise TaskFailed(
                f"no queue {message.queue_name!r} on {self.shown_url}: the broker returned the message "
                "(is the queue name right, and has the application's worker declared it?)"
            ) from None
        except pika.exceptions.NackError:
            raise TaskFailed(f"{self.shown_url} refused the message to {message.queue_name!r}") from None
        except (pika.exceptions.AMQPError, OSError, ValueError) as exc:
            raise TaskFailed(f"cannot publish to {self.shown_url}: {self._described(exc)}") from None
        finally:
            self._lock.release()

    def _publish_retrying_once(self, message: dramatiq.Message[Any]) -> None:
        reused = self._channel is not None
        try:
            self._publish(message)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError, OSError):
            if not reused:
                raise
            # The cached connection died since its last use. Had the publish reached the broker before its
            # confirm was lost, the copy sent now carries the same message id.
            self._publish(message)

    def _publish(self, message: dramatiq.Message[Any]) -> None:
        try:
            channel = self._open_channel()
            channel.basic_publish(
                exchange="",
                routing_key=message.queue_name,
                body=JSONEncoder().encode(message.asdict()),
                properties=pika.BasicProperties(
                    delivery_mode=PERSISTENT, priority=message.options.get("broker_priority")
                ),
                mandatory=True,
            )
        except BaseException:
            # Also Dramatiq's time limit, which may interrupt pika mid-frame: the connection cannot be trusted.
            self._forget_connection()
            raise

    def _open_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            self._connection.process_data_events(0)  # answers heartbeats; raises if the broker closed it
            return self._channel
        self._forget_connection()
        parameters = bounded(pika.URLParameters(with_connection_timeouts(self.url)))
        self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        return self._channel

    def _forget_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; dropped anyway
                connection.close()

    def _described(self, exc: BaseException) -> str:
        # pika's connection errors say what they are only in their repr ("AMQPConnectionError: (...)").
        text = repr(exc) if isinstance(exc, pika.exceptions.AMQPError) else f"{type(exc).__name__}: {exc}"
        try:
            password = urlsplit(self.url).password
        except ValueError:
            password = None
        for form in {password, unquote(password)} if password else ():
            text = text.replace(form, MASK)
        return text


_brokers: dict[str, BrokerConnection] = {}
_brokers_lock = threading.Lock()


def _broker_for(url: str) -> BrokerConnection:
    """This process's connection to ``url`` (opened on its first publish)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in AMQP_SCHEMES:
        raise TaskFailed(f"the broker URL must start with amqp:// or amqps://, not {scheme or 'nothing'}://")
    with _brokers_lock:
        if url not in _brokers:
            _brokers[url] = BrokerConnection(url)
        return _brokers[url]


def _forget_brokers_in_child() -> None:
    # A forked process must not share its parent's sockets: it opens its own connections.
    global _brokers_lock
    _brokers.clear()
    _brokers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_brokers_in_child)


def check_dramatiq_config(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Rules the field types cannot say: Dramatiq's queue-name rule, args a list, kwargs an object, an integer
    priority."""
    errors: dict[str, list[str]] = {}
    queue_name = config["queueName"]
    if not DRAMATIQ_QUEUE_NAME.fullmatch(queue_name):
        errors["queueName"] = [
            "must be a Dramatiq queue name: letters, digits, '.', '_' and '-', starting with a letter or '_'"
        ]
    elif queue_name.endswith(DRAMATIQ_INTERNAL_SUFFIXES):
        errors["queueName"] = ["must name the actor's queue, not its delay (.DQ) or dead-letter (.XQ) queue"]
    if config["actorName"] != config["actorName"].strip():
        errors["actorName"] = ["must not start or end with spaces"]
    if config.get("args") is not None and not isinstance(config["args"], list):
        errors["args"] = ["must be a JSON list (the actor's positional arguments)"]
    if config.get("kwargs") is not None and not isinstance(config["kwargs"], dict):
        errors["kwargs"] = ["must be a JSON object (the actor's keyword arguments)"]
    priority = config.get("priority")
    if priority is not None and priority != int(priority):
        errors["priority"] = ["must be a whole number"]
    return errors


DRAMATIQ_MESSAGE = TaskType(
    id="dramatiq_message",
    label="Dramatiq Message",
    description="Sends a message to an actor of a Dramatiq application over RabbitMQ; "
    "succeeds once the broker confirms it",
    handler=send_dramatiq_message,
    config_fields=(
        ConfigField(
            "queueName",
            "Queue",
            FieldType.TEXT,
            required=True,
            help="The actor's queue_name (Dramatiq's default is 'default'); it must already exist on the broker",
        ),
        ConfigField(
            "actorName",
            "Actor",
            FieldType.TEXT,
            required=True,
            help="The actor's name (by default its function's name)",
        ),
        ConfigField("args", "Arguments", FieldType.JSON, help="A JSON list of positional arguments"),
        ConfigField("kwargs", "Keyword arguments", FieldType.JSON, help="A JSON object of keyword arguments"),
        ConfigField(
            "brokerUrl",
            "Broker URL",
            FieldType.TEXT,
            secret=True,
            help="The application's RabbitMQ (amqp:// or amqps://); unset, cronwork's own BROKER_URL is used",
        ),
        ConfigField(
            "priority",
            "Priority",
            FieldType.NUMBER,
            minimum=0,
            maximum=255,
            help="Dramatiq's broker_priority; only a queue declared with a max priority honours it",
        ),
    ),
    check_config=check_dramatiq_config,
)
