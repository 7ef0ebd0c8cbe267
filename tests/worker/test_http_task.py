"""The HTTP task in real worker processes: a schedule created over the REST API with a bearer token as a secret
calls a protected endpoint on its slots, and the token shows nowhere else; a schedule pointed at the cloud
metadata address fails with the refusal as its error message."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient

from services.api.app import create_app
from shared import healing
from shared.models import RunStatus, TriggeredBy
from shared.secrets import MASK
from shared.tasks.http import wire_time
from tests.conftest import wait_for
from tests.worker.conftest import Engine, run_now

TASKS = "/api/scheduler/tasks"
TOKEN = "cw-e2e-token-7d41b9a0c2"


@dataclass
class Endpoint:
    """A protected endpoint on 127.0.0.1: 200 to a request bearing the token (its answer echoes the
    Authorization header), 401 otherwise; it keeps the bodies it accepted."""

    url: str
    accepted: list[dict[str, Any]] = field(default_factory=list)
    unauthorised: int = 0


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            authorization = self.headers.get("Authorization")
            if authorization == f"Bearer {TOKEN}":
                target.accepted.append(json.loads(body))
                self.reply(200, f"accepted for {authorization}")
            else:
                target.unauthorised += 1
                self.reply(401, "no valid token")

        def reply(self, status: int, text: str) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    target = Endpoint(f"http://127.0.0.1:{server.server_address[1]}/hooks/nightly")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield target
    server.shutdown()
    server.server_close()


@pytest.fixture
def engine_with_secrets(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(http_allowed_networks="127.0.0.1/32", secret_keys=Fernet.generate_key().decode())


def answer(response: Any, status: int = 200) -> str:
    """A response's text, once its status is the one expected."""
    assert response.status_code == status, response.get_json()
    return str(response.get_data(as_text=True))


def test_a_bearer_token_sent_as_a_secret_reaches_the_endpoint_and_shows_nowhere_else(
    engine_with_secrets: Engine, endpoint: Endpoint
) -> None:
    engine = engine_with_secrets
    worker = engine.start_worker()
    api: FlaskClient = create_app(runtime=engine.runtime).test_client()
    created = api.post(
        TASKS,
        json={
            "name": "nightly hook",
            "taskType": "http_request",
            "scheduleType": "interval",
            "intervalMs": 1000,
            "config": {
                "url": endpoint.url,
                "method": "POST",
                "body": '{"slot": "{{scheduledFor}}", "run": {{runId}}}',
                "bearerToken": TOKEN,
            },
        },
    )
    answers = [answer(created, 201)]
    task_id = created.get_json()["id"]

    (run, *_) = engine.wait_for_runs(task_id, 1, 30, status=RunStatus.SUCCESS)
    # Stop the chain; the stored token is kept, although this edit sends the config without its value.
    answers.append(answer(api.patch(f"{TASKS}/{task_id}", json={"enabled": False})))
    answers.append(answer(api.post(f"{TASKS}/{task_id}/run"), 202))
    wait_for(lambda: engine.runs(task_id, TriggeredBy.MANUAL)[0].status == RunStatus.SUCCESS, 30, "Run Now")
    answers += [
        answer(api.get(f"{TASKS}/{task_id}")),
        answer(api.get(TASKS)),
        answer(api.get(f"/api/scheduler/history?scheduleId={task_id}")),
    ]

    assert run.output == f"HTTP 200: accepted for Bearer {MASK}"
    assert endpoint.accepted[0] == {"slot": wire_time(run.scheduled_for), "run": run.id}
    assert endpoint.unauthorised == 0
    assert created.get_json()["config"]["bearerToken"] == {"set": True}
    history = api.get(f"/api/scheduler/history?scheduleId={task_id}").get_json()
    assert {entry["output"] for entry in history} == {f"HTTP 200: accepted for Bearer {MASK}"}
    for text in answers:
        assert TOKEN not in text
    assert TOKEN not in json.dumps(engine.schedule(task_id).config), "stored encrypted"
    worker.terminate()
    assert "is ready for action" in worker.log() and TOKEN not in worker.log()


def test_a_schedule_at_the_cloud_metadata_address_fails_with_the_refusal_and_no_retry(engine: Engine) -> None:
    engine.start_worker()
    schedule = engine.create(  # three attempts allowed: a refusal takes none of the others
        name="what a new user tried",
        schedule_type="manual",
        task_type="http_request",
        config={"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"},
        max_attempts=3,
    )

    run_now(engine.runtime, schedule.id)

    wait_for(
        lambda: [r.status for r in engine.runs(schedule.id)] == [RunStatus.FAILED], 30, "the run to fail"
    )
    (run,) = engine.runs(schedule.id)
    assert run.error_message == (
        "refused: 169.254.169.254 is a link-local address (cloud metadata); allow it with HTTP_ALLOWED_NETWORKS"
    )
    assert run.output is None
    healing.pump(engine.runtime)  # a retry, had one been queued, would be due by now and dispatched
    assert len(engine.runs(schedule.id)) == 1
