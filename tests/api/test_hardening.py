"""Hardening: security headers on every answer (the API's, the page's, its files', errors), a bound on a request's
body (413) and on a schedule's config (422), and a task list that carries no configs. Against the real
PostgreSQL and RabbitMQ, through Flask's test client."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import services.api.app as api_app
from services.api.app import STATIC_DIR
from shared.schedules import MAX_CONFIG_BYTES
from shared.secrets import SUMMARY_MAX_CHARS
from shared.settings import SMALLEST_REQUEST_LIMIT, Settings
from tests.api.conftest import TASKS, cron_task

ERROR_FIELDS = {"code", "status", "message", "errors", "requestId"}
QUEUE = {"queueName": "reports", "actorName": "publish"}  # dramatiq_message: free JSON in "args"
LIMIT = Settings().max_request_bytes


def error_body(response: TestResponse) -> dict[str, Any]:
    """An error's body: the documented Error, with this response's request id."""
    body: dict[str, Any] = response.get_json()
    assert set(body) <= ERROR_FIELDS, body
    assert (body["code"], body["requestId"]) == (response.status_code, response.headers["X-Request-ID"])
    return body


def manual(**overrides: Any) -> dict[str, Any]:
    """A valid manual dramatiq_message schedule (its config takes any JSON in ``args``)."""
    return {
        "name": "Send it",
        "taskType": "dramatiq_message",
        "scheduleType": "manual",
        "config": QUEUE,
        **overrides,
    }


def config_of_size(size: int) -> dict[str, Any]:
    """A valid dramatiq_message config whose compact JSON is exactly ``size`` bytes."""
    config: dict[str, Any] = {**QUEUE, "args": [""]}
    padding = size - len(json.dumps(config, separators=(",", ":")).encode())
    assert padding >= 0
    return {**QUEUE, "args": ["x" * padding]}


@pytest.fixture
def task(create: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    return create(manual())


# --- Security headers ------------------------------------------------------------------------------------------


def policy(response: TestResponse) -> dict[str, list[str]]:
    """The answer's Content-Security-Policy, by directive."""
    header = response.headers["Content-Security-Policy"]
    return {name: sources for name, *sources in (part.split() for part in header.split(";"))}


def assert_secured(response: TestResponse) -> dict[str, list[str]]:
    """The security headers every answer carries; returns its policy."""
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    directives = policy(response)
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == directives["base-uri"] == ["'none'"]
    for directive in ("script-src", "style-src"):
        assert directives[directive][0] == "'self'"
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(directives[directive])
    return directives


def test_the_page_its_files_and_the_api_answer_with_the_strict_policy(client: FlaskClient) -> None:
    for path in (
        "/",
        "/static/app.css",
        "/static/js/main.js",
        "/static/js/theme-init.js",
        "/static/favicon.svg",
        TASKS,
        "/api/scheduler/me",
        "/api/openapi.json",
        "/healthz",
        "/metrics",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        directives = assert_secured(response)
        assert directives["script-src"] == directives["style-src"] == directives["img-src"] == ["'self'"], (
            path
        )
        assert directives["connect-src"] == ["'self'"], path


def test_errors_answer_with_the_security_headers_too(
    client: FlaskClient, app_with: Callable[..., Flask], task: dict[str, Any]
) -> None:
    answers = [
        client.get("/no-such-page"),
        client.get("/static/js/no-such-file.js"),
        client.get(f"{TASKS}/999999"),
        client.post(TASKS, json={"name": ""}),
        client.post(TASKS, data="{", content_type="application/json"),
        client.post(TASKS, data=b"x" * (LIMIT + 1), content_type="application/json"),
        client.delete("/healthz"),
        app_with(auth_mode="header").test_client().get(TASKS),
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 404, 422, 400, 413, 405, 401]
    for answer in answers:
        assert_secured(answer)


def test_an_unexpected_error_on_the_page_is_a_json_500_with_the_headers_and_no_word_of_it(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("cannot read /srv/cronwork/services/api/static/index.html: password=hunter2")

    monkeypatch.setattr(api_app, "send_from_directory", fail)

    response = client.get("/")

    assert (response.status_code, response.mimetype) == (500, "application/json")
    assert error_body(response)["status"] == "Internal Server Error"
    text = response.get_data(as_text=True)
    for leak in ("hunter2", "OSError", "Traceback", "index.html"):
        assert leak not in text
    assert_secured(response)


class InlineCode(HTMLParser):
    """What a policy without 'unsafe-inline' would block in a page: inline scripts, style elements and
    attributes, event-handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and not named.get("src"):
            self._in_inline_script = True
            self.found.append("an inline <script>")
        if tag == "style":
            self.found.append("a <style> element")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False


def test_the_page_holds_no_inline_script_style_or_handler_and_loads_the_theme_from_a_file() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    parser = InlineCode()
    parser.feed(page)

    assert parser.found == []
    assert '<script src="/static/js/theme-init.js"></script>' in page  # classic, before first paint
    for script in (STATIC_DIR / "js").glob("*.js"):
        code = script.read_text()
        # Styles set from JS go through the CSSOM (element.style), which the policy allows; markup may not.
        assert not re.search(r"innerHTML\s*=.*(style=|\son\w+=)", code), script.name
        assert "eval(" not in code and "new Function" not in code, script.name


def test_swagger_ui_answers_with_its_own_policy_allowing_its_inline_start_up_script_by_hash(
    client: FlaskClient,
) -> None:
    response = client.get("/api/docs")

    assert response.status_code == 200
    directives = assert_secured(response)
    page = response.get_data(as_text=True)
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert directives["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert directives["img-src"] == ["'self'", "data:"]  # its stylesheet's icons
    assert directives["style-src"] == ["'self'"]
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        assert_secured(client.get(f"/api/docs/assets/{asset}"))


# --- The body's size: 413 ------------------------------------------------------------------------------------


def oversized(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON of ``size`` bytes, padded with spaces: a well-formed body only its size refuses."""
    text = json.dumps(body).encode()
    return text[:-1] + b" " * (size - len(text)) + b"}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "", manual()),
        ("PUT", "/{id}", {"name": "Renamed"}),
        ("PATCH", "/{id}", {"name": "Renamed"}),
        ("POST", "/{id}/run", {"config": {"args": [1]}}),
        ("POST", "/{id}/backfill", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
    ],
)
def test_a_body_over_the_limit_is_a_json_413_and_changes_nothing(
    client: FlaskClient,
    task: dict[str, Any],
    stored_state: Callable[[], Any],
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    before = stored_state()
    url = TASKS + path.format(id=task["id"])

    response = client.open(
        url, method=method, data=oversized(body, LIMIT + 1), content_type="application/json"
    )

    assert response.status_code == 413
    error = error_body(response)
    assert error["status"] == "Request Entity Too Large"
    assert (
        error["message"]
        == "the body is larger than 1,048,576 bytes (MAX_REQUEST_BYTES): refused, nothing done"
    )
    assert stored_state() == before


def test_the_limit_is_the_setting_and_a_body_at_it_is_read(
    app_with: Callable[..., Flask], stored_schedules: Callable[[], int]
) -> None:
    client = app_with(max_request_bytes=SMALLEST_REQUEST_LIMIT).test_client()
    # The smallest limit still carries a config as large as a schedule may keep.
    at_bound = manual(config=config_of_size(MAX_CONFIG_BYTES))

    at_limit = client.post(
        TASKS, data=oversized(at_bound, SMALLEST_REQUEST_LIMIT), content_type="application/json"
    )
    over = client.post(
        TASKS, data=oversized(at_bound, SMALLEST_REQUEST_LIMIT + 1), content_type="application/json"
    )

    assert at_limit.status_code == 201, at_limit.get_json()
    assert over.status_code == 413
    assert f"{SMALLEST_REQUEST_LIMIT:,} bytes" in error_body(over)["message"]
    assert stored_schedules() == 1


def test_a_chunked_body_of_no_stated_length_is_cut_off_at_the_limit(
    client: FlaskClient, stored_schedules: Callable[[], int]
) -> None:
    response = client.post(
        TASKS,
        input_stream=io.BytesIO(oversized(manual(), LIMIT + 1)),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},  # a server that de-chunks says so
    )

    assert response.status_code == 413
    error_body(response)
    assert stored_schedules() == 0


# --- A config's size: 422 ------------------------------------------------------------------------------------


def assert_config_too_large(response: TestResponse, size: int) -> None:
    assert response.status_code == 422, response.get_json()
    errors = error_body(response)["errors"]["json"]
    assert errors == {"config": [f"must be at most 64 KiB (65,536 bytes) as JSON, not {size:,} bytes"]}


def test_a_config_at_the_bound_is_kept_and_one_byte_more_is_a_422_naming_it(
    client: FlaskClient, stored_schedules: Callable[[], int]
) -> None:
    at_bound = config_of_size(MAX_CONFIG_BYTES)
    over = config_of_size(MAX_CONFIG_BYTES + 1)

    refused = client.post(TASKS, json=manual(config=over))
    created = client.post(TASKS, json=manual(config=at_bound))

    assert_config_too_large(refused, MAX_CONFIG_BYTES + 1)
    assert created.status_code == 201, created.get_json()
    assert client.get(f"{TASKS}/{created.get_json()['id']}").get_json()["config"] == at_bound
    assert stored_schedules() == 1


def test_the_bound_counts_utf8_bytes_and_only_the_size_is_named_for_an_oversized_config(
    client: FlaskClient, stored_schedules: Callable[[], int]
) -> None:
    # 30,000 "é" are 60,000 bytes of UTF-8: with an unknown key beside them, the size is the one reason given.
    config = {**QUEUE, "args": ["é" * 30_000], "unknown": "x" * 6_000}
    size = len(json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode())

    assert_config_too_large(client.post(TASKS, json=manual(config=config)), size)
    assert stored_schedules() == 0


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_an_edit_to_a_config_over_the_bound_is_a_422_and_changes_nothing(
    client: FlaskClient, task: dict[str, Any], stored_state: Callable[[], Any], method: str
) -> None:
    before = stored_state()

    response = client.open(
        f"{TASKS}/{task['id']}", method=method, json={"config": config_of_size(MAX_CONFIG_BYTES + 100)}
    )

    assert_config_too_large(response, MAX_CONFIG_BYTES + 100)
    assert stored_state() == before


def test_a_run_now_override_over_the_bound_is_a_422_and_queues_nothing(
    client: FlaskClient, task: dict[str, Any], stored_state: Callable[[], Any]
) -> None:
    before = stored_state()

    response = client.post(f"{TASKS}/{task['id']}/run", json={"config": config_of_size(MAX_CONFIG_BYTES + 1)})
    at_bound = client.post(f"{TASKS}/{task['id']}/run", json={"config": config_of_size(MAX_CONFIG_BYTES)})

    assert_config_too_large(response, MAX_CONFIG_BYTES + 1)
    assert at_bound.status_code == 202, at_bound.get_json()
    assert stored_state()[0] == before[0] and len(stored_state()[1]) == len(before[1]) + 1


def test_the_smallest_request_limit_leaves_room_for_the_largest_config() -> None:
    assert SMALLEST_REQUEST_LIMIT >= 2 * MAX_CONFIG_BYTES


# --- The list is light -----------------------------------------------------------------------------------------


def test_the_list_carries_no_config_but_a_summary_and_the_task_itself_carries_it(
    client: FlaskClient, create: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    large = create(manual(name="large", config=config_of_size(MAX_CONFIG_BYTES)))
    report = create(cron_task(name="report"))

    listed = client.get(TASKS).get_json()
    one = client.get(f"{TASKS}/{large['id']}").get_json()

    assert [item["id"] for item in listed] == [large["id"], report["id"]]
    assert all("config" not in item for item in listed)
    assert one["config"] == config_of_size(MAX_CONFIG_BYTES) and "configSummary" not in one
    assert {key: value for key, value in one.items() if key != "config"} == {
        key: value for key, value in listed[0].items() if key != "configSummary"
    }
    assert listed[1]["configSummary"] == "Weekly Compliance Report"  # a select by its option's label
    summary = listed[0]["configSummary"]
    assert len(summary) == SUMMARY_MAX_CHARS and summary.endswith("…")
    assert summary.startswith('Queue: reports · Actor: publish · Arguments: ["xxx')
    assert len(client.get(TASKS).get_data()) < 10_000  # not the 64 KiB config


def test_a_summary_names_a_secret_as_set_or_by_its_reference_never_its_value(
    client: FlaskClient, create: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    create(
        {
            "name": "Append",
            "taskType": "example_append_line",
            "scheduleType": "manual",
            "config": {"path": "/tmp/lines.txt", "signature": {"env": "SIGNING_KEY"}},
        }
    )
    create(manual(name="no args", config={**QUEUE, "args": None, "kwargs": {"to": "ops"}, "priority": 5}))

    first, second = client.get(TASKS).get_json()

    assert first["configSummary"] == "File: /tmp/lines.txt · Signing key: from env SIGNING_KEY"
    assert (
        second["configSummary"]
        == 'Queue: reports · Actor: publish · Keyword arguments: {"to":"ops"} · Priority: 5'
    )
