"""The email task through real worker processes: a Run Now of a ``send_email`` schedule reaches a real SMTP
server (aiosmtpd, in this process) once, and the run says so; a refused recipient fails every attempt with the
server's answer."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller

from shared.models import RunStatus, TaskRunHistory
from tests.conftest import free_port, wait_for
from tests.shared.test_email_task import Mailbox  # the same server the handler's own tests talk to
from tests.worker.conftest import Engine, run_now

MAIL = {
    "to": "ops@example.com",
    "subject": "Nightly check, run {{runId}}",
    "body": "Run {{runId}}, attempt {{attempt}}.",
}


@dataclass
class MailServer:
    mailbox: Mailbox
    port: int


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield MailServer(mailbox, port)
    controller.stop()


@pytest.fixture
def engine(make_engine: Callable[..., Engine], mail_server: MailServer) -> Engine:
    """An engine whose worker sends through the test's mail server, in clear text (a trusted relay)."""
    return make_engine(
        smtp_host="127.0.0.1",
        smtp_port=mail_server.port,
        smtp_security="none",
        smtp_from="cronwork@example.com",
    )


def finished_runs(engine: Engine, schedule_id: int, count: int) -> list[TaskRunHistory]:
    def finished() -> list[TaskRunHistory] | None:
        runs = [run for run in engine.runs(schedule_id) if run.completed_at]
        return runs if len(runs) >= count else None

    return wait_for(finished, 30, f"{count} finished runs of schedule {schedule_id}")  # type: ignore[return-value]


def test_run_now_of_a_send_email_schedule_delivers_one_mail_and_the_run_says_so(
    engine: Engine, mail_server: MailServer
) -> None:
    engine.start_worker()
    schedule = engine.create(task_type="send_email", schedule_type="manual", config=MAIL)

    queued = run_now(engine.runtime, schedule.id)
    assert queued is not None
    (run,) = finished_runs(engine, schedule.id, 1)
    time.sleep(1)  # a second delivery, were there one, would have come by now

    assert (run.id, run.status, run.attempt, run.error_message) == (queued.id, RunStatus.SUCCESS, 1, None)
    (envelope,) = mail_server.mailbox.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("cronwork@example.com", ["ops@example.com"])
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == f"Nightly check, run {run.id}"
    assert message.get_content().strip() == f"Run {run.id}, attempt 1."
    assert message["Message-ID"].startswith(f"<cronwork.run-{run.id}.attempt-1.")
    assert run.output == f"sent to 1 recipient(s) (message id {message['Message-ID']})"


def test_a_refused_recipient_fails_every_attempt_with_the_servers_answer(
    engine: Engine, mail_server: MailServer
) -> None:
    engine.start_worker()
    schedule = engine.create(
        task_type="send_email",
        schedule_type="manual",
        max_attempts=2,
        config={**MAIL, "to": "nobody@example.com"},
    )

    assert run_now(engine.runtime, schedule.id) is not None
    runs = finished_runs(engine, schedule.id, 2)

    assert [(run.attempt, run.status) for run in runs] == [(1, RunStatus.FAILED), (2, RunStatus.FAILED)]
    for run in runs:
        assert run.error_message == (
            "the mail server refused every recipient: nobody@example.com (550 5.1.1 no such user here)"
        )
    assert mail_server.mailbox.envelopes == []
