"""Failed attempts are retried with backoff, each attempt visible, without touching the chain."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.models import RunStatus, TriggeredBy
from tests.conftest import wait_for
from tests.worker.conftest import LOOPBACK, Engine, StubUpstream, run_now


def test_a_failing_http_request_is_retried_to_its_maximum_and_ends_failed(
    make_engine: Callable[..., Engine], upstream: StubUpstream
) -> None:
    engine = make_engine(http_allowed_networks=LOOPBACK)
    engine.start_worker()
    schedule = engine.create(
        name="probe upstream",
        schedule_type="cron",
        cron_expression="0 0 1 1 *",
        task_type="http_request",
        config={"url": upstream.url, "timeoutS": 5},
    )
    next_slot = engine.schedule(schedule.id).next_run_at
    run_now(engine.runtime, schedule.id)

    def three_attempts_finished() -> bool:
        runs = engine.runs(schedule.id, TriggeredBy.MANUAL)
        return len(runs) == 3 and all(run.status == RunStatus.FAILED for run in runs)

    wait_for(three_attempts_finished, 30, "three failed attempts")
    runs = engine.runs(schedule.id, TriggeredBy.MANUAL)
    assert [run.attempt for run in runs] == [1, 2, 3]
    for run in runs:
        assert "HTTP 503" in run.error_message and "upstream maintenance window" in run.error_message
    # Exponential backoff: the second wait is about twice the first (base 200 ms in these tests).
    first_wait = runs[1].started_at - runs[0].completed_at
    second_wait = runs[2].started_at - runs[1].completed_at
    assert first_wait.total_seconds() >= 0.2 and second_wait.total_seconds() >= 0.4
    assert upstream.calls == 3, "no fourth attempt"
    assert engine.schedule(schedule.id).next_run_at == next_slot, "retries never move the chain"


class Receiver(BaseHTTPRequestHandler):
    """Answers 204 and keeps what it was sent."""

    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        Receiver.received.append((self.path, self.headers.get("Content-Type", ""), self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_successful_http_request_posts_its_body_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(http_allowed_networks=LOOPBACK)
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine.start_worker()
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/nightly"
        schedule = engine.create(
            schedule_type="manual",
            task_type="http_request",
            config={"url": url, "method": "POST", "body": '{"report": "nightly"}'},
        )
        run_now(engine.runtime, schedule.id)
        wait_for(
            lambda: [r.status for r in engine.runs(schedule.id)] == [RunStatus.SUCCESS],
            20,
            "the request to succeed",
        )
    finally:
        server.shutdown()
    assert Receiver.received == [("/hooks/nightly", "application/json", b'{"report": "nightly"}')]
