"""A separate Dramatiq application for the dramatiq_message task's tests, run as its own process:

    DRAMATIQ_APP_BROKER_URL=amqp://... DRAMATIQ_APP_RECORD_PATH=/tmp/received.jsonl \\
        python -m dramatiq tests.worker.dramatiq_app --processes 1 --threads 1

Its one actor appends what it received (args, kwargs, the message's options and id) as a JSON line to the file
named by ``DRAMATIQ_APP_RECORD_PATH``. Its queue is declared by its own worker at start-up, as a real
application's is; cronwork declares nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage

QUEUE = "reports"
ACTOR = "record_delivery"

broker = RabbitmqBroker(url=os.environ["DRAMATIQ_APP_BROKER_URL"], max_priority=10)
broker.add_middleware(CurrentMessage())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, actor_name=ACTOR, max_retries=0)
def record_delivery(*args: Any, **kwargs: Any) -> None:
    message = CurrentMessage.get_current_message()
    assert message is not None
    received = {
        "message_id": message.message_id,
        "args": list(args),
        "kwargs": kwargs,
        "options": message.options,
    }
    with open(os.environ["DRAMATIQ_APP_RECORD_PATH"], "a") as record:
        record.write(json.dumps(received) + "\n")
