"""The dramatiq_message task type against a real, separate Dramatiq application: its own worker process
(``tests/worker/dramatiq_app.py``) on its own vhost, with its own RabbitMQ user, reached through a broker URL
the schedule holds as a secret reference; cronwork's worker processes send it one message per run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest

from shared.models import RunStatus, TriggeredBy
from shared.secrets import MASK
from shared.settings import Settings
from shared.task_types import RunContext
from shared.tasks.dramatiq_message import message_id, send_dramatiq_message
from tests.conftest import OUTPUT_DIR, RABBITMQ_URL, RUN_ID, wait_for
from tests.worker.conftest import Engine, run_now

REPO = Path(__file__).resolve().parents[2]
# The application's queue and actor, as tests/worker/dramatiq_app.py declares them (importing it here would
# make its broker this process's global one).
APP_QUEUE, APP_ACTOR = "reports", "record_delivery"
APP_URL_VARIABLE = "REPORTS_BROKER_URL"  # the cronwork worker's environment holds the app's broker URL
ARGS = [2026, "eu-west", {"format": "pdf", "pages": [1, 2]}]
KWARGS = {"recipients": ["ops@example.com"], "dry_run": False}


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass
class DramatiqApp:
    """The separate application, and what its actor received.

    ``url`` is what cronwork is given: a user and password of its own on the application's vhost (the
    application's worker connects as another user).
    """

    url: str
    user: str
    password: str
    record_path: Path

    def received(self) -> list[dict[str, Any]]:
        if not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines()]

    def has_queue(self, name: str) -> bool:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            connection.channel().queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if connection.is_open:
                connection.close()
        return True


@pytest.fixture(scope="module")
def dramatiq_app_process(
    make_vhost: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DramatiqApp]:
    """``python -m dramatiq tests.worker.dramatiq_app`` on a vhost and a user of its own."""
    app_url = make_vhost("dramatiq_app")
    vhost = app_url.rsplit("/", 1)[1]
    user, password = f"cronwork_sender_{RUN_ID}", f"pw-{uuid.uuid4().hex}"
    rabbitmqctl("add_user", user, password)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    host = RABBITMQ_URL.split("@", 1)[1]
    app = DramatiqApp(
        f"amqp://{user}:{password}@{host}/{vhost}",
        user,
        password,
        tmp_path_factory.mktemp("app") / "received.jsonl",
    )
    env = {**os.environ, "DRAMATIQ_APP_BROKER_URL": app_url, "DRAMATIQ_APP_RECORD_PATH": str(app.record_path)}
    log_path = OUTPUT_DIR / "logs" / "dramatiq_app.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "tests.worker.dramatiq_app",
                "--processes",
                "1",
                "--threads",
                "1",
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: app.has_queue(APP_QUEUE) or process.poll() is not None, 30, "the app's queue")
        assert process.poll() is None, log_path.read_text()
        yield app
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True, timeout=60)


@pytest.fixture
def app(dramatiq_app_process: DramatiqApp) -> DramatiqApp:
    """The application, with nothing received yet by this test."""
    dramatiq_app_process.record_path.unlink(missing_ok=True)
    return dramatiq_app_process


def test_each_run_sends_the_app_one_message_naming_its_slot_run_and_attempt(
    engine: Engine, app: DramatiqApp
) -> None:
    engine.start_worker(**{APP_URL_VARIABLE: app.url})
    schedule = engine.create(
        name="nightly reports",
        schedule_type="interval",
        interval_ms=1000,
        task_type="dramatiq_message",
        config={
            "queueName": APP_QUEUE,
            "actorName": APP_ACTOR,
            "args": ARGS,
            "kwargs": KWARGS,
            "priority": 5,
            "brokerUrl": {"env": APP_URL_VARIABLE},
        },
    )
    engine.wait_for_runs(schedule.id, 3, 30, status=RunStatus.SUCCESS)
    run_now(engine.runtime, schedule.id)
    wait_for(lambda: engine.runs(schedule.id, TriggeredBy.MANUAL), 10, "the Run Now run")
    engine.update(schedule.id, enabled=False)
    finished = {RunStatus.SUCCESS, RunStatus.SKIPPED}  # a slot claimed just before the disable is skipped
    wait_for(
        lambda: all(run.status in finished for run in engine.runs(schedule.id)), 15, "every run to finish"
    )
    runs = [run for run in engine.runs(schedule.id) if run.status == RunStatus.SUCCESS]
    wait_for(lambda: len(app.received()) >= len(runs), 15, "the app to receive a message per run")
    time.sleep(1)  # room for a duplicate to arrive, if anything sent one

    received = app.received()
    assert sorted(message["options"]["cronwork"]["run_id"] for message in received) == [
        run.id for run in runs
    ]
    by_run = {message["options"]["cronwork"]["run_id"]: message for message in received}
    for run in runs:
        message = by_run[run.id]
        slot = run.scheduled_for and run.scheduled_for.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        )
        assert message["options"]["cronwork"] == {
            "scheduled_for": slot,
            "run_id": run.id,
            "attempt": 1,
            "schedule_id": schedule.id,
        }
        assert message["options"]["broker_priority"] == 5
        assert (message["args"], message["kwargs"]) == (ARGS, KWARGS)
        assert message["message_id"] == message_id(run.id, 1)
        assert run.output == (f"sent {APP_ACTOR} to {APP_QUEUE} (message id {message_id(run.id, 1)})")
    assert [run.scheduled_for is None for run in runs].count(True) == 1, "one Run Now, without a slot"


def test_a_message_to_a_queue_that_does_not_exist_fails_the_run_naming_it_without_the_password(
    engine: Engine, app: DramatiqApp
) -> None:
    engine.start_worker(**{APP_URL_VARIABLE: app.url})
    schedule = engine.create(
        name="mistyped queue",
        schedule_type="cron",
        cron_expression="0 0 1 1 *",
        task_type="dramatiq_message",
        max_attempts=1,
        config={
            "queueName": "reprots",
            "actorName": APP_ACTOR,
            "brokerUrl": {"env": APP_URL_VARIABLE},
        },
    )
    run_now(engine.runtime, schedule.id)
    (run,) = wait_for(
        lambda: [r for r in engine.runs(schedule.id) if r.status == RunStatus.FAILED], 15, "the run to fail"
    )

    assert run.error_message.startswith(f"no queue 'reprots' on amqp://{app.user}:{MASK}@")
    assert "the broker returned the message" in run.error_message
    assert app.password not in run.error_message
    assert run.output is None
    assert not app.has_queue("reprots"), "cronwork declares nothing on the application's broker"
    assert app.received() == []


def test_without_a_broker_url_the_message_goes_to_cronworks_own_broker_over_a_connection_kept_between_runs(
    app: DramatiqApp,
) -> None:
    # In this process, the handler as a worker thread calls it; cronwork's BROKER_URL is the app's here.
    settings = Settings(database_url="postgresql://unused/cronwork", broker_url=app.url)
    config = {"queueName": APP_QUEUE, "actorName": APP_ACTOR, "args": ["first"]}

    def run(run_id: int, args: list[str]) -> str | None:
        context = RunContext(
            config={**config, "args": args},
            run_id=run_id,
            attempt=1,
            schedule_id=None,
            scheduled_for=None,
            time_limit_s=10,
            settings=settings,
        )
        return send_dramatiq_message(context)

    assert run(1, ["first"]) == f"sent {APP_ACTOR} to {APP_QUEUE} (message id {message_id(1, 1)})"
    # The broker drops the kept connection (a restart, a failover): the next run opens a fresh one.
    rabbitmqctl("close_all_user_connections", app.user, "test: a broker restart")
    run(2, ["second"])
    wait_for(lambda: len(app.received()) == 2, 10, "both messages")
    assert [message["args"] for message in app.received()] == [["first"], ["second"]]
