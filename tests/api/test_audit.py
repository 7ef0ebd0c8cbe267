"""The audit trail: every create, update (each changed field before and after), delete, enable, disable, Run
Now, backfill and token change leaves one entry naming who made it, when and from which request; GET /audit
filters it by schedule, actor, action and time, newest first, paged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from shared.audit import jsonable as wire_time
from shared.db import utcnow
from tests.api.conftest import TASKS, cron_task, interval_task, parse_utc

AUDIT = "/api/scheduler/audit"
ADA = {
    "X-Forwarded-Email": "ada@example.com",
    "X-Forwarded-Groups": "cron-admins",
    "X-Request-ID": "req-ada-1",
}
OTTO = {"X-Forwarded-Email": "otto@example.com", "X-Forwarded-Groups": "cron-ops"}


@pytest.fixture
def header_client(app_with: Callable[..., Flask]) -> FlaskClient:
    return app_with(
        auth_mode="header",
        auth_admin_groups="cron-admins",
        auth_operator_groups="cron-ops",
        secret_keys=Fernet.generate_key().decode(),
    ).test_client()


def trail(client: FlaskClient, **filters: Any) -> list[dict[str, Any]]:
    response = client.get(AUDIT, query_string={"page_size": 1000, **filters}, headers=OTTO)
    assert response.status_code == 200, response.get_json()
    events: list[dict[str, Any]] = response.get_json()
    return events


def test_a_create_records_who_when_which_request_and_every_field_set(header_client: FlaskClient) -> None:
    before = utcnow()
    task = header_client.post(TASKS, json=cron_task(), headers=ADA).get_json()

    (event,) = trail(header_client)

    assert event["action"] == "create"
    assert (event["actor"], event["scheduleId"], event["scheduleName"]) == (
        "ada@example.com",
        task["id"],
        "Weekly compliance report",
    )
    assert event["requestId"] == "req-ada-1"
    assert parse_utc(event["at"]) >= before.replace(microsecond=before.microsecond // 1000 * 1000)
    assert event["changes"]["cronExpression"] == {"before": None, "after": "0 9 * * 1"}
    assert event["changes"]["timezone"] == {"before": None, "after": "Europe/Berlin"}
    assert event["changes"]["config.reportId"] == {"before": None, "after": "compliance-weekly"}


def test_an_update_records_each_changed_field_before_and_after_and_nothing_else(
    header_client: FlaskClient,
) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=ADA).get_json()

    header_client.patch(
        f"{TASKS}/{task['id']}",
        json={"name": "Monthly report", "cronExpression": "0 9 1 * *", "timezone": "Europe/Berlin"},
        headers=ADA,
    )
    header_client.patch(f"{TASKS}/{task['id']}", json={"name": "Monthly report"}, headers=ADA)  # no change

    update, _create = trail(header_client, scheduleId=task["id"])
    assert update["action"] == "update"
    assert update["changes"] == {
        "name": {"before": "Weekly compliance report", "after": "Monthly report"},
        "cronExpression": {"before": "0 9 * * 1", "after": "0 9 1 * *"},
    }


def test_a_secret_config_field_is_recorded_as_changed_never_by_its_value(header_client: FlaskClient) -> None:
    task = header_client.post(
        TASKS,
        json=interval_task(
            taskType="http_request", config={"url": "https://example.com/hook", "bearerToken": "s3cret-one"}
        ),
        headers=ADA,
    ).get_json()

    header_client.patch(
        f"{TASKS}/{task['id']}",
        json={"config": {"url": "https://example.com/hook", "bearerToken": "s3cret-two"}},
        headers=ADA,
    )

    update, create = trail(header_client, scheduleId=task["id"])
    assert create["changes"]["config.bearerToken"] == {"before": None, "after": "(secret)"}
    assert update["changes"] == {"config.bearerToken": {"before": "(secret)", "after": "(secret)"}}
    assert "s3cret" not in str(header_client.get(AUDIT, headers=OTTO).get_data(as_text=True))


def test_enable_disable_run_now_backfill_and_delete_each_leave_their_entry(
    header_client: FlaskClient,
) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=ADA).get_json()
    path = f"{TASKS}/{task['id']}"

    header_client.patch(path, json={"enabled": False}, headers=OTTO)
    header_client.post(f"{TASKS}/resume", headers=OTTO)
    run = header_client.post(
        f"{path}/run", json={"config": {"reportId": "usage-monthly"}}, headers=OTTO
    ).get_json()
    window = {
        "from": wire_time(utcnow() - timedelta(days=15)),
        "to": wire_time(utcnow() - timedelta(minutes=1)),
    }
    filled = header_client.post(f"{path}/backfill", json=window, headers=OTTO).get_json()
    header_client.delete(path, headers=ADA)

    events = trail(header_client, scheduleId=task["id"])
    assert [(event["action"], event["actor"]) for event in events] == [
        ("delete", "ada@example.com"),
        ("backfill", "otto@example.com"),
        ("runNow", "otto@example.com"),
        ("enable", "otto@example.com"),
        ("disable", "otto@example.com"),
        ("create", "ada@example.com"),
    ]
    delete, backfill, run_now, enable, disable, _ = events
    assert disable["changes"] == {"enabled": {"before": True, "after": False}}
    assert enable["changes"] == {"enabled": {"before": False, "after": True}}
    assert run_now["detail"] == {"runId": run["id"], "configOverride": ["reportId"]}
    assert run["requestedBy"] == "otto@example.com"
    assert backfill["detail"]["queued"] == filled["queued"] >= 2
    assert delete["detail"] == {"version": 3}
    backfilled = header_client.get(
        "/api/scheduler/history",
        query_string={"scheduleId": task["id"], "triggeredBy": "backfill"},
        headers=OTTO,
    ).get_json()
    assert {entry["requestedBy"] for entry in backfilled} == {"otto@example.com"}


def test_a_refused_or_invalid_change_leaves_no_entry(header_client: FlaskClient) -> None:
    task = header_client.post(TASKS, json=cron_task(), headers=ADA).get_json()

    header_client.delete(f"{TASKS}/{task['id']}", headers=OTTO)  # 403
    header_client.patch(f"{TASKS}/{task['id']}", json={"cronExpression": "every day"}, headers=ADA)  # 422
    header_client.patch(
        f"{TASKS}/{task['id']}", json={"name": "x"}, headers={**ADA, "If-Match": '"1-9"'}
    )  # 412

    assert [event["action"] for event in trail(header_client)] == ["create"]


def test_the_trail_filters_by_actor_action_and_time_and_pages(header_client: FlaskClient) -> None:
    first = header_client.post(TASKS, json=cron_task(name="first"), headers=ADA).get_json()
    middle = utcnow()
    second = header_client.post(TASKS, json=cron_task(name="second"), headers=ADA).get_json()
    header_client.post(f"{TASKS}/{second['id']}/run", headers=OTTO)

    by_otto = trail(header_client, actor="otto@example.com")
    creates = trail(header_client, action="create")
    since = trail(header_client, **{"from": wire_time(middle)})
    until = trail(header_client, to=wire_time(middle))
    page = header_client.get(AUDIT, query_string={"page_size": 2, "page": 2}, headers=OTTO)

    assert [(event["action"], event["scheduleId"]) for event in by_otto] == [("runNow", second["id"])]
    assert [event["scheduleId"] for event in creates] == [second["id"], first["id"]]
    assert [event["action"] for event in since] == ["runNow", "create"]
    assert [event["scheduleId"] for event in until] == [first["id"]]
    assert [event["scheduleId"] for event in page.get_json()] == [first["id"]]
    assert '"total": 3' in page.headers["X-Pagination"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"action": "reboot"}, "action"),
        ({"scheduleId": 2**31}, "scheduleId"),
        ({"actor": "x" * 256}, "actor"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(
    header_client: FlaskClient, query: dict[str, Any], field: str
) -> None:
    response = header_client.get(AUDIT, query_string=query, headers=OTTO)

    assert response.status_code == 422
    assert field in str(response.get_json()["errors"])


def test_applying_a_file_is_audited_as_its_source(runtime: Any, header_client: FlaskClient) -> None:
    from shared.schedules_as_code import DesiredSchedule, apply_plan, plan_changes

    desired = [
        DesiredSchedule(
            "nightly",
            {
                "name": "nightly",
                "task_type": "report_publish",
                "schedule_type": "manual",
                "config": {"reportId": "usage-monthly"},
            },
        )
    ]
    with runtime.sessions() as session:
        plan = plan_changes(runtime, session, "team-a", desired, prune=False)
    with runtime.sessions() as session:
        apply_plan(runtime, session, plan)

    (event,) = trail(header_client)
    assert (event["actor"], event["action"]) == ("apply:team-a", "create")
