"""Raw Dramatiq, the yardstick: a no-op actor and an actor that commits one single-row UPDATE.

Run by ``dramatiq bench.raw_actors`` against ``BENCH_BROKER_URL`` and ``BENCH_DATABASE_URL``, exactly as a user
would write the fastest possible actors; cronwork's figures are quoted as ratios of these, measured in the
same run on the same broker and database.
"""

from __future__ import annotations

import os
import threading

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.raw import COUNTER_ROWS, RAW_QUEUE

broker = RabbitmqBroker(url=os.environ["BENCH_BROKER_URL"], confirm_delivery=True)
dramatiq.set_broker(broker)
_connections = threading.local()


def connection() -> psycopg.Connection:
    if getattr(_connections, "connection", None) is None:
        _connections.connection = psycopg.connect(os.environ["BENCH_DATABASE_URL"])
    return _connections.connection


@dramatiq.actor(queue_name=RAW_QUEUE, max_retries=0)
def noop(n: int) -> None:
    pass


@dramatiq.actor(queue_name=RAW_QUEUE, max_retries=0)
def update_one(n: int) -> None:
    with connection().transaction():
        connection().execute("UPDATE raw_counter SET hits = hits + 1 WHERE id = %s", (n % COUNTER_ROWS,))
