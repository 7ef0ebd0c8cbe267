"""Who the caller is: ``AUTH_MODE=dev`` takes ``MOCK_USER_EMAIL``; ``AUTH_MODE=header`` trusts the header the
authenticating proxy sets (``AUTH_HEADER``, default ``X-Forwarded-Email``); no identity is a 401."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.settings import Settings
from tests.api.conftest import HISTORY, TASKS, cron_task

EVERY_ENDPOINT = [
    ("get", TASKS),
    ("post", TASKS),
    ("get", f"{TASKS}/1"),
    ("put", f"{TASKS}/1"),
    ("patch", f"{TASKS}/1"),
    ("delete", f"{TASKS}/1"),
    ("post", f"{TASKS}/1/run"),
    ("get", HISTORY),
    ("get", "/api/scheduler/system-tasks"),
    ("get", "/api/scheduler/task-types"),
    ("get", "/api/scheduler/timezones"),
    ("get", "/api/scheduler/cron/preview?expression=*+*+*+*+*"),
]


@pytest.fixture
def header_client(app_with: Callable[..., Flask]) -> FlaskClient:
    """An API behind a proxy that sets ``X-Forwarded-Email`` (the default header)."""
    return app_with(auth_mode="header").test_client()


def test_dev_mode_takes_the_user_from_mock_user_email(app_with: Callable[..., Flask]) -> None:
    client = app_with(auth_mode="dev", mock_user_email="carol@example.com").test_client()

    response = client.post(TASKS, json=cron_task(), headers={"X-Forwarded-Email": "mallory@example.com"})

    assert response.status_code == 201
    assert response.get_json()["createdBy"] == "carol@example.com"


def test_mock_user_email_comes_from_the_environment() -> None:
    settings = Settings.from_env({"AUTH_MODE": "dev", "MOCK_USER_EMAIL": "carol@example.com"})

    assert (settings.auth_mode, settings.mock_user_email) == ("dev", "carol@example.com")


def test_header_mode_takes_the_user_from_x_forwarded_email(header_client: FlaskClient) -> None:
    response = header_client.post(TASKS, json=cron_task(), headers={"X-Forwarded-Email": "alice@example.com"})

    assert response.status_code == 201
    assert response.get_json()["createdBy"] == "alice@example.com"


def test_me_says_who_the_caller_is(header_client: FlaskClient, app_with: Callable[..., Flask]) -> None:
    answer = header_client.get("/api/scheduler/me", headers={"X-Forwarded-Email": "ops@example.com"})
    assert answer.get_json() == {"email": "ops@example.com", "authMode": "header"}
    assert header_client.get("/api/scheduler/me").status_code == 401
    dev = app_with(mock_user_email="demo@example.com").test_client().get("/api/scheduler/me").get_json()
    assert dev == {"email": "demo@example.com", "authMode": "dev"}


def test_created_by_is_the_creator_not_the_editor(header_client: FlaskClient) -> None:
    task = header_client.post(
        TASKS, json=cron_task(), headers={"X-Forwarded-Email": "alice@example.com"}
    ).get_json()

    edited = header_client.patch(
        f"{TASKS}/{task['id']}", json={"name": "renamed"}, headers={"X-Forwarded-Email": "bob@example.com"}
    ).get_json()

    assert edited["createdBy"] == "alice@example.com"


def test_header_mode_reads_the_configured_header(app_with: Callable[..., Flask]) -> None:
    client = app_with(auth_mode="header", auth_header="X-MS-CLIENT-PRINCIPAL-NAME").test_client()

    accepted = client.post(
        TASKS, json=cron_task(), headers={"X-MS-CLIENT-PRINCIPAL-NAME": "dave@example.com"}
    )
    refused = client.post(TASKS, json=cron_task(), headers={"X-Forwarded-Email": "dave@example.com"})

    assert accepted.status_code == 201
    assert accepted.get_json()["createdBy"] == "dave@example.com"
    assert refused.status_code == 401


def test_auth_header_comes_from_the_environment() -> None:
    settings = Settings.from_env({"AUTH_MODE": "header", "AUTH_HEADER": "X-MS-CLIENT-PRINCIPAL-NAME"})
    default = Settings.from_env({"AUTH_MODE": "header"})

    assert (settings.auth_mode, settings.auth_header) == ("header", "X-MS-CLIENT-PRINCIPAL-NAME")
    assert default.auth_header == "X-Forwarded-Email"


@pytest.mark.parametrize(("method", "path"), EVERY_ENDPOINT, ids=[f"{m} {p}" for m, p in EVERY_ENDPOINT])
def test_no_identity_is_a_401_on_every_endpoint(header_client: FlaskClient, method: str, path: str) -> None:
    response = getattr(header_client, method)(path, json=cron_task())

    assert response.status_code == 401
    assert "X-Forwarded-Email" in response.get_json()["message"]


@pytest.mark.parametrize("identity", ["", "   "], ids=["empty", "blank"])
def test_a_blank_identity_is_a_401_and_stores_nothing(
    header_client: FlaskClient, stored_schedules: Callable[[], int], identity: str
) -> None:
    response = header_client.post(TASKS, json=cron_task(), headers={"X-Forwarded-Email": identity})

    assert response.status_code == 401
    assert stored_schedules() == 0


def test_a_run_now_without_identity_queues_nothing(
    header_client: FlaskClient,
    stored_runs: Callable[[], int],
    create: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    task = create(cron_task())

    assert header_client.post(f"{TASKS}/{task['id']}/run").status_code == 401
    assert stored_runs() == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/openapi.json"])
def test_probes_and_the_api_document_need_no_identity(header_client: FlaskClient, path: str) -> None:
    assert header_client.get(path).status_code == 200
