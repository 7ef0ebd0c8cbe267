"""Who the caller is and what they may do: identity by ``AUTH_MODE`` (dev, header), the role from the caller's
groups, and every operation checked against every role: 401 without identity, 403 without the role, each as
JSON naming what is missing, and nothing changed by a refused call. (oidc mode: test_oidc.py; API tokens:
test_tokens.py.)"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.audit import jsonable as wire_time
from shared.db import utcnow
from shared.settings import Settings
from tests.api.conftest import TASKS, cron_task

ME = "/api/scheduler/me"
GROUPS = {
    "auth_admin_groups": "cron-admins",
    "auth_operator_groups": "cron-ops",
    "auth_viewer_groups": "staff",
}
# A member of each role's group (and of an unrelated one), and an identified caller in none of them.
CALLERS = {
    "admin": {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-Groups": "everyone,cron-admins"},
    "operator": {"X-Forwarded-Email": "otto@example.com", "X-Forwarded-Groups": "cron-ops"},
    "viewer": {"X-Forwarded-Email": "vera@example.com", "X-Forwarded-Groups": "staff"},
    "none": {"X-Forwarded-Email": "nora@example.com", "X-Forwarded-Groups": "contractors"},
}
RANK = {"none": 0, "viewer": 1, "operator": 2, "admin": 3}

# The least role each operation needs: the table, written out here rather than read from the code
# under test. getMe answers any identified caller (to tell them they have no role).
LEAST_ROLE = {
    "listTasks": "viewer",
    "getTask": "viewer",
    "listHistory": "viewer",
    "listSystemTasks": "viewer",
    "listTaskTypes": "viewer",
    "listTimezones": "viewer",
    "previewCron": "viewer",
    "listAudit": "viewer",
    "getMe": "none",
    "runTaskNow": "operator",
    "backfillTask": "operator",
    "pauseTasks": "operator",
    "resumeTasks": "operator",
    "patchTask": "operator",  # with only enabled sent; any other field needs an admin (below)
    "updateTask": "operator",
    "createTask": "admin",
    "deleteTask": "admin",
    "listTokens": "admin",
    "createToken": "admin",
    "revokeToken": "admin",
}


@pytest.fixture
def header_app(app_with: Callable[..., Flask]) -> Flask:
    """An API behind a proxy that sets X-Forwarded-Email and X-Forwarded-Groups; callers in no role's group
    get no role."""
    return app_with(auth_mode="header", auth_default_role="none", **GROUPS)


@pytest.fixture
def header_client(header_app: Flask) -> FlaskClient:
    return header_app.test_client()


def requests_of(task_id: int, token_id: int) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    """A request for each operation, valid for an admin: (method, path, JSON body)."""
    task = f"{TASKS}/{task_id}"
    return {
        "listTasks": ("get", TASKS, None),
        "getTask": ("get", task, None),
        "listHistory": ("get", "/api/scheduler/history", None),
        "listSystemTasks": ("get", "/api/scheduler/system-tasks", None),
        "listTaskTypes": ("get", "/api/scheduler/task-types", None),
        "listTimezones": ("get", "/api/scheduler/timezones", None),
        "previewCron": ("get", "/api/scheduler/cron/preview?expression=0+9+*+*+1", None),
        "listAudit": ("get", "/api/scheduler/audit", None),
        "getMe": ("get", ME, None),
        "runTaskNow": ("post", f"{task}/run", None),
        "backfillTask": (
            "post",
            f"{task}/backfill",
            {"from": wire_time(utcnow() - timedelta(days=8)), "to": wire_time(utcnow() - timedelta(hours=1))},
        ),
        "pauseTasks": ("post", f"{TASKS}/pause", None),
        "resumeTasks": ("post", f"{TASKS}/resume", None),
        "patchTask": ("patch", task, {"enabled": False}),
        "updateTask": ("put", task, {"enabled": True}),
        "createTask": ("post", TASKS, cron_task(name="made by the matrix")),
        "deleteTask": ("delete", task, None),
        "listTokens": ("get", "/api/scheduler/tokens", None),
        "createToken": ("post", "/api/scheduler/tokens", {"name": "matrix", "role": "viewer"}),
        "revokeToken": ("delete", f"/api/scheduler/tokens/{token_id}", None),
    }


def call(
    client: FlaskClient, request: tuple[str, str, dict[str, Any] | None], headers: dict[str, str]
) -> Any:
    method, path, body = request
    return client.open(path, method=method.upper(), json=body, headers=headers)


def test_the_role_table_covers_every_operation(header_client: FlaskClient) -> None:
    document = header_client.get("/api/openapi.json").get_json()
    operations = {
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }

    assert operations == set(LEAST_ROLE) == set(requests_of(1, 1))


@pytest.mark.parametrize("role", list(CALLERS))
@pytest.mark.parametrize("operation", list(LEAST_ROLE))
def test_every_operation_checks_the_callers_role(
    header_client: FlaskClient,
    stored_state: Callable[[], Any],
    audit_events: Callable[[], list[dict[str, Any]]],
    operation: str,
    role: str,
) -> None:
    admin = CALLERS["admin"]
    task = header_client.post(TASKS, json=cron_task(), headers=admin).get_json()
    token = header_client.post(
        "/api/scheduler/tokens", json={"name": "to revoke", "role": "viewer"}, headers=admin
    ).get_json()
    request = requests_of(task["id"], token["id"])[operation]
    before, trail = stored_state(), audit_events()

    response = call(header_client, request, CALLERS[role])

    if RANK[role] >= RANK[LEAST_ROLE[operation]]:
        assert response.status_code < 400, response.get_json()
    else:
        assert response.status_code == 403
        body = response.get_json()
        assert f"needs the {LEAST_ROLE[operation]} role" in body["message"]
        assert CALLERS[role]["X-Forwarded-Email"] in body["message"]
        assert body["requestId"] == response.headers["X-Request-ID"]
        assert (stored_state(), audit_events()) == (before, trail)


def test_editing_more_than_enabled_needs_an_admin(
    header_client: FlaskClient, stored_state: Callable[[], Any]
) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=CALLERS["admin"]).get_json()
    before = stored_state()

    response = header_client.patch(
        f"{TASKS}/{task['id']}", json={"enabled": False, "name": "renamed"}, headers=CALLERS["operator"]
    )

    assert response.status_code == 403
    assert "edit needs the admin role" in response.get_json()["message"]
    assert stored_state() == before


def test_an_operator_pauses_and_resumes_a_task(header_client: FlaskClient) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=CALLERS["admin"]).get_json()

    paused = header_client.patch(
        f"{TASKS}/{task['id']}", json={"enabled": False}, headers=CALLERS["operator"]
    )
    resumed = header_client.post(f"{TASKS}/resume", headers=CALLERS["operator"])

    assert paused.status_code == 200
    assert paused.get_json()["enabled"] is False
    assert resumed.get_json() == {"changed": [task["id"]]}


@pytest.mark.parametrize("role", list(CALLERS))
def test_me_names_the_role_and_what_it_permits(header_client: FlaskClient, role: str) -> None:
    me = header_client.get(ME, headers=CALLERS[role]).get_json()

    assert me["email"] == CALLERS[role]["X-Forwarded-Email"]
    assert me["authMode"] == "header"
    assert me["role"] == (None if role == "none" else role)
    expected = {
        "none": set(),
        "viewer": {"view"},
        "operator": {"view", "runNow", "toggle", "backfill"},
        "admin": {"view", "runNow", "toggle", "backfill", "create", "edit", "delete", "manageTokens"},
    }[role]
    assert set(me["permissions"]) == expected
    assert me["roleNeeded"] == {
        "view": "viewer",
        "runNow": "operator",
        "toggle": "operator",
        "backfill": "operator",
        "create": "admin",
        "edit": "admin",
        "delete": "admin",
        "manageTokens": "admin",
    }


def test_the_highest_role_of_the_callers_groups_wins(header_client: FlaskClient) -> None:
    headers = {"X-Forwarded-Email": "both@example.com", "X-Forwarded-Groups": "staff , cron-ops"}

    assert header_client.get(ME, headers=headers).get_json()["role"] == "operator"


def test_the_default_role_is_given_to_callers_in_no_group(app_with: Callable[..., Flask]) -> None:
    client = app_with(auth_mode="header", auth_default_role="operator", **GROUPS).test_client()

    me = client.get(ME, headers={"X-Forwarded-Email": "new@example.com"}).get_json()

    assert me["role"] == "operator"


def test_the_groups_header_is_configurable(app_with: Callable[..., Flask]) -> None:
    client = app_with(
        auth_mode="header", auth_default_role="none", auth_groups_header="X-Auth-Request-Groups", **GROUPS
    ).test_client()

    configured = {"X-Forwarded-Email": "ada@example.com", "X-Auth-Request-Groups": "cron-admins"}
    ignored = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-Groups": "cron-admins"}
    assert client.get(ME, headers=configured).get_json()["role"] == "admin"
    assert client.get(ME, headers=ignored).get_json()["role"] is None


def test_dev_mode_takes_the_user_and_role_from_settings(app_with: Callable[..., Flask]) -> None:
    client = app_with(
        auth_mode="dev", mock_user_email="carol@example.com", mock_user_role="viewer"
    ).test_client()

    me = client.get(ME, headers=CALLERS["admin"]).get_json()
    refused = client.post(TASKS, json=cron_task())

    assert (me["email"], me["role"]) == ("carol@example.com", "viewer")
    assert refused.status_code == 403


def test_dev_mode_is_an_admin_by_default(client: FlaskClient) -> None:
    response = client.post(TASKS, json=cron_task(), headers={"X-Forwarded-Email": "mallory@example.com"})

    assert response.status_code == 201
    assert response.get_json()["createdBy"] == "dev@localhost"


def test_role_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "AUTH_MODE": "header",
            "AUTH_HEADER": "X-MS-CLIENT-PRINCIPAL-NAME",
            "AUTH_GROUPS_HEADER": "X-MS-CLIENT-PRINCIPAL-GROUPS",
            "AUTH_ADMIN_GROUPS": "a,b",
            "AUTH_DEFAULT_ROLE": "none",
        }
    )
    default = Settings.from_env({"AUTH_MODE": "header"})

    assert (settings.auth_header, settings.auth_groups_header) == (
        "X-MS-CLIENT-PRINCIPAL-NAME",
        "X-MS-CLIENT-PRINCIPAL-GROUPS",
    )
    assert (settings.auth_admin_groups, settings.auth_default_role) == ("a,b", "none")
    assert (default.auth_header, default.auth_groups_header, default.auth_default_role) == (
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "viewer",
    )


def test_created_by_is_the_creator_not_the_editor(header_client: FlaskClient) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=CALLERS["admin"]).get_json()
    other_admin = {**CALLERS["admin"], "X-Forwarded-Email": "bob@example.com"}

    edited = header_client.patch(f"{TASKS}/{task['id']}", json={"name": "renamed"}, headers=other_admin)

    assert edited.get_json()["createdBy"] == "ada@example.com"


def test_header_mode_reads_the_configured_header(app_with: Callable[..., Flask]) -> None:
    client = app_with(
        auth_mode="header", auth_header="X-MS-CLIENT-PRINCIPAL-NAME", auth_default_role="admin"
    ).test_client()

    accepted = client.post(
        TASKS, json=cron_task(), headers={"X-MS-CLIENT-PRINCIPAL-NAME": "dave@example.com"}
    )
    refused = client.post(TASKS, json=cron_task(), headers={"X-Forwarded-Email": "dave@example.com"})

    assert accepted.status_code == 201
    assert accepted.get_json()["createdBy"] == "dave@example.com"
    assert refused.status_code == 401


@pytest.mark.parametrize("operation", list(LEAST_ROLE))
def test_no_identity_is_a_401_on_every_operation(
    header_client: FlaskClient, stored_state: Callable[[], Any], operation: str
) -> None:
    before = stored_state()

    response = call(header_client, requests_of(1, 1)[operation], {})

    assert response.status_code == 401
    assert "X-Forwarded-Email" in response.get_json()["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stored_state() == before


@pytest.mark.parametrize("identity", ["", "   ", "a" * 256], ids=["empty", "blank", "too long"])
def test_an_unusable_identity_is_a_401_and_stores_nothing(
    header_client: FlaskClient, stored_state: Callable[[], Any], identity: str
) -> None:
    before = stored_state()

    response = header_client.post(
        TASKS, json=cron_task(), headers={"X-Forwarded-Email": identity, "X-Forwarded-Groups": "cron-admins"}
    )

    assert response.status_code == 401
    assert stored_state() == before


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/openapi.json", "/"])
def test_probes_the_page_and_the_api_document_need_no_identity(header_client: FlaskClient, path: str) -> None:
    assert header_client.get(path).status_code == 200
