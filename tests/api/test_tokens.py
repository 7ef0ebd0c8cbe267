"""API tokens for internal tools: an admin makes one (the secret shown once, stored only as a hash), a tool
sends it as ``Authorization: Bearer`` in any AUTH_MODE and acts with the token's role, its last use is recorded,
and a revoked or expired token is a 401 saying so."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from shared.audit import jsonable as wire_time
from shared.db import utcnow
from shared.models import ApiToken
from shared.runtime import Runtime
from tests.api.conftest import TASKS, cron_task, parse_utc

TOKENS = "/api/scheduler/tokens"
ADMIN = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-Groups": "cron-admins"}


@pytest.fixture
def header_client(app_with: Callable[..., Flask]) -> FlaskClient:
    """Behind a proxy; no one has a role but the admins group and API tokens."""
    return app_with(
        auth_mode="header", auth_default_role="none", auth_admin_groups="cron-admins"
    ).test_client()


def make_token(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post(TOKENS, json={"name": "deploy bot", "role": "operator", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.get_json()
    made: dict[str, Any] = response.get_json()
    return made


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_the_secret_is_shown_once_and_stored_only_as_its_hash(
    header_client: FlaskClient, runtime: Runtime
) -> None:
    made = make_token(header_client)

    listed = header_client.get(TOKENS, headers=ADMIN).get_json()
    with runtime.sessions() as session:
        stored = session.execute(select(ApiToken.__table__)).one()

    assert made["secret"].startswith("cw_") and len(made["secret"]) > 40
    assert made["secretPrefix"] == made["secret"][:10]
    assert (made["name"], made["role"], made["createdBy"], made["revokedAt"]) == (
        "deploy bot",
        "operator",
        "ada@example.com",
        None,
    )
    assert [token["id"] for token in listed] == [made["id"]]
    assert "secret" not in listed[0]
    assert made["secret"] not in [str(value) for value in stored]
    assert stored.secret_hash == hashlib.sha256(made["secret"].encode()).hexdigest()


def test_a_token_acts_with_its_role_without_the_proxys_headers(header_client: FlaskClient) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=ADMIN).get_json()
    secret = make_token(header_client, role="operator")["secret"]

    run = header_client.post(f"{TASKS}/{task['id']}/run", headers=bearer(secret))
    delete = header_client.delete(f"{TASKS}/{task['id']}", headers=bearer(secret))
    me = header_client.get("/api/scheduler/me", headers=bearer(secret)).get_json()

    assert run.status_code == 202
    assert run.get_json()["requestedBy"] == me["email"]
    assert delete.status_code == 403
    assert "needs the admin role" in delete.get_json()["message"]
    assert (me["role"], me["email"]) == ("operator", f"token:{made_id(header_client)}")


def made_id(client: FlaskClient) -> int:
    (token,) = client.get(TOKENS, headers=ADMIN).get_json()
    token_id: int = token["id"]
    return token_id


def test_a_token_works_in_dev_mode_too(app_with: Callable[..., Flask]) -> None:
    client = app_with(auth_mode="dev").test_client()
    secret = client.post(TOKENS, json={"name": "ci", "role": "viewer"}).get_json()["secret"]

    me = client.get("/api/scheduler/me", headers=bearer(secret)).get_json()
    refused = client.post(TASKS, json=cron_task(), headers=bearer(secret))

    assert me["role"] == "viewer"
    assert refused.status_code == 403


def test_the_last_use_is_recorded(header_client: FlaskClient) -> None:
    made = make_token(header_client)
    before = utcnow()

    header_client.get(TASKS, headers=bearer(made["secret"]))

    (listed,) = header_client.get(TOKENS, headers=ADMIN).get_json()
    assert made["lastUsedAt"] is None
    assert parse_utc(listed["lastUsedAt"]) >= before.replace(microsecond=before.microsecond // 1000 * 1000)


def test_a_revoked_token_is_refused_and_stays_listed(
    header_client: FlaskClient, audit_events: Callable[..., list[dict[str, Any]]]
) -> None:
    made = make_token(header_client)
    assert header_client.get(TASKS, headers=bearer(made["secret"])).status_code == 200

    revoked = header_client.delete(f"{TOKENS}/{made['id']}", headers=ADMIN)
    again = header_client.delete(f"{TOKENS}/{made['id']}", headers=ADMIN)
    refused = header_client.get(TASKS, headers=bearer(made["secret"]))

    assert (revoked.status_code, again.status_code) == (204, 204)
    assert refused.status_code == 401
    assert f"API token {made['id']} (deploy bot) was revoked" in refused.get_json()["message"]
    (listed,) = header_client.get(TOKENS, headers=ADMIN).get_json()
    assert listed["revokedBy"] == "ada@example.com" and listed["revokedAt"] is not None
    actions = [event["action"] for event in audit_events(actor="ada@example.com")]
    assert actions == ["tokenRevoke", "tokenCreate"]  # revoking a revoked token records nothing


def test_an_expired_token_is_refused(header_client: FlaskClient, runtime: Runtime) -> None:
    made = make_token(header_client, expiresAt=wire_time(utcnow() + timedelta(hours=1)))
    assert header_client.get(TASKS, headers=bearer(made["secret"])).status_code == 200
    with runtime.sessions() as session, session.begin():
        session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))

    refused = header_client.get(TASKS, headers=bearer(made["secret"]))

    assert refused.status_code == 401
    assert "expired" in refused.get_json()["message"]


@pytest.mark.parametrize(
    "secret", ["cw_not-a-token-of-ours", "cw_", "cw_" + "x" * 5000], ids=["unknown", "empty", "huge"]
)
def test_an_unknown_token_is_a_401(header_client: FlaskClient, secret: str) -> None:
    response = header_client.get(TASKS, headers=bearer(secret))

    assert response.status_code == 401
    assert "not an API token of this deployment" in response.get_json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "viewer"}, "name"),
        ({"name": "  ", "role": "viewer"}, "name"),
        ({"name": "x" * 101, "role": "viewer"}, "name"),
        ({"name": "bot", "role": "root"}, "role"),
        ({"name": "bot", "role": "viewer", "expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"),
        ({"name": "bot", "role": "viewer", "expiresAt": "soon"}, "expiresAt"),
        ({"name": "bot", "role": "viewer", "secret": "cw_mine"}, "secret"),
    ],
)
def test_a_bad_token_request_is_a_422_naming_the_field_and_makes_nothing(
    header_client: FlaskClient, stored_state: Callable[[], Any], body: dict[str, Any], field: str
) -> None:
    before = stored_state()

    response = header_client.post(TOKENS, json=body, headers=ADMIN)

    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]
    assert stored_state() == before


def test_revoking_an_unknown_token_is_a_404(header_client: FlaskClient) -> None:
    assert header_client.delete(f"{TOKENS}/4242", headers=ADMIN).status_code == 404
