"""The dramatiq_message task type without a broker: its config checks, the message it builds, and its errors
when it cannot publish (never holding the broker's password)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.secrets import MASK
from shared.settings import Settings
from shared.task_types import RunContext, TaskFailed, installed_task_types
from shared.tasks.dramatiq_message import (
    DRAMATIQ_MESSAGE,
    dramatiq_message,
    masked_url,
    message_id,
    send_dramatiq_message,
)

VALID = {"queueName": "reports", "actorName": "build_report", "args": [1, "two"], "kwargs": {"region": "eu"}}
SLOT = datetime(2026, 12, 7, 6, 30, tzinfo=UTC)


def context(config: dict[str, Any], *, settings: Settings | None = None, **fields: Any) -> RunContext:
    values: dict[str, Any] = {
        "run_id": 41,
        "attempt": 2,
        "schedule_id": 7,
        "scheduled_for": SLOT,
        "time_limit_s": 10,
        "settings": settings or Settings(),
        **fields,
    }
    return RunContext(config=config, **values)


def test_it_is_published_under_the_task_type_entry_points_and_is_not_a_demo() -> None:
    assert installed_task_types()["dramatiq_message"] is DRAMATIQ_MESSAGE
    assert not DRAMATIQ_MESSAGE.demo
    assert DRAMATIQ_MESSAGE.secret_keys == {"brokerUrl"}


def test_a_queue_and_an_actor_are_enough() -> None:
    assert DRAMATIQ_MESSAGE.config_errors({"queueName": "default", "actorName": "tick"}) == {}
    assert DRAMATIQ_MESSAGE.config_errors({**VALID, "priority": 5}) == {}


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        ({"actorName": "a"}, {"queueName": ["is required"]}),
        ({"queueName": "q", "actorName": ""}, {"actorName": ["is required"]}),
        ({**VALID, "args": {"a": 1}}, {"args": ["must be a JSON list (the actor's positional arguments)"]}),
        ({**VALID, "args": "1, 2"}, {"args": ["must be a JSON list (the actor's positional arguments)"]}),
        ({**VALID, "kwargs": [1]}, {"kwargs": ["must be a JSON object (the actor's keyword arguments)"]}),
        ({**VALID, "priority": 2.5}, {"priority": ["must be a whole number"]}),
        ({**VALID, "priority": 256}, {"priority": ["must be at most 255"]}),
        ({**VALID, "actorName": " build_report"}, {"actorName": ["must not start or end with spaces"]}),
        ({**VALID, "exchange": "x"}, {"exchange": ["unknown key for task type dramatiq_message"]}),
    ],
)
def test_a_config_that_cannot_make_a_message_is_refused_by_field(
    config: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    assert DRAMATIQ_MESSAGE.config_errors(config) == errors


@pytest.mark.parametrize("queue_name", ["1reports", "-reports", "re ports", "reports/eu", "rapports_été"])
def test_a_queue_name_dramatiq_would_refuse_is_refused(queue_name: str) -> None:
    errors = DRAMATIQ_MESSAGE.config_errors({**VALID, "queueName": queue_name})
    assert errors == {
        "queueName": [
            "must be a Dramatiq queue name: letters, digits, '.', '_' and '-', starting with a letter or '_'"
        ]
    }


@pytest.mark.parametrize("queue_name", ["reports.DQ", "reports.XQ"])
def test_a_delay_or_dead_letter_queue_is_refused(queue_name: str) -> None:
    errors = DRAMATIQ_MESSAGE.config_errors({**VALID, "queueName": queue_name})
    assert errors == {
        "queueName": ["must name the actor's queue, not its delay (.DQ) or dead-letter (.XQ) queue"]
    }


def test_the_message_carries_the_config_and_names_the_run_in_its_options() -> None:
    message = dramatiq_message(context({**VALID, "priority": 3}))
    assert (message.queue_name, message.actor_name) == ("reports", "build_report")
    assert message.args == (1, "two")
    assert message.kwargs == {"region": "eu"}
    assert message.options == {
        "cronwork": {
            "scheduled_for": "2026-12-07T06:30:00.000Z",
            "run_id": 41,
            "attempt": 2,
            "schedule_id": 7,
        },
        "broker_priority": 3,
    }


def test_a_run_now_message_has_no_slot_and_empty_arguments_by_default() -> None:
    message = dramatiq_message(context({"queueName": "q", "actorName": "a"}, scheduled_for=None))
    assert (message.args, message.kwargs) == ((), {})
    assert message.options == {
        "cronwork": {"scheduled_for": None, "run_id": 41, "attempt": 2, "schedule_id": 7}
    }


def test_the_message_id_is_the_same_for_the_same_attempt_and_differs_between_attempts() -> None:
    assert dramatiq_message(context(VALID)).message_id == message_id(41, 2) == message_id(41, 2)
    assert len({message_id(41, 1), message_id(41, 2), message_id(42, 1)}) == 3
    # uuid5 of the fixed namespace and "41:2": consumers may compute it, so it never changes.
    assert message_id(41, 2) == "5a7e6f82-5461-5998-b7ef-9aa68766c836"


def test_a_masked_url_keeps_user_host_and_vhost_but_not_the_password() -> None:
    shown = masked_url("amqp://app:s3cr%40t-pw@rabbit.internal:5672/reports?heartbeat=30")
    assert shown == f"amqp://app:{MASK}@rabbit.internal:5672/reports"
    assert masked_url("amqps://rabbit.internal/") == "amqps://rabbit.internal/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_broker_that_cannot_be_reached_fails_the_run_without_its_password() -> None:
    url = f"amqp://app:hunter2-secret@127.0.0.1:{free_port()}/reports"
    with pytest.raises(TaskFailed) as failed:
        send_dramatiq_message(context({**VALID, "brokerUrl": url}))
    error = str(failed.value)
    assert error.startswith(f"cannot publish to amqp://app:{MASK}@127.0.0.1:")
    assert "Connection refused" in error
    assert "hunter2" not in error


def test_a_broker_url_that_is_not_amqp_fails_without_being_echoed() -> None:
    with pytest.raises(TaskFailed) as failed:
        send_dramatiq_message(context({**VALID, "brokerUrl": "https://app:hunter2-secret@example.com/"}))
    assert str(failed.value) == "the broker URL must start with amqp:// or amqps://, not https://"


def test_without_a_broker_url_in_embedded_mode_the_run_fails_saying_what_to_set() -> None:
    with pytest.raises(TaskFailed) as failed:
        send_dramatiq_message(context(VALID, settings=Settings()))
    assert "brokerUrl is not set and this cronwork has no BROKER_URL" in str(failed.value)
