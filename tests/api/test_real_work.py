"""What a schedule carries to run real work, over REST: task types from plugins, secret config fields that
never come back, per-schedule run settings, owner and labels (filters, pause and resume by filter), and Run
Now's one-off override."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from shared.models import TaskSchedule
from tests.api.conftest import HISTORY, TASKS, cron_task

SECRET = "hunter2-signing-key"


def plugin_task(**overrides: Any) -> dict[str, Any]:
    """A schedule of the example plugin's type, its secret field set."""
    body = {
        "name": "Append a line",
        "taskType": "example_append_line",
        "scheduleType": "manual",
        "config": {"path": "/tmp/lines.txt", "signature": SECRET},
    }
    return {**body, **overrides}


@pytest.fixture
def keyed(app_with: Callable[..., Flask]) -> FlaskClient:
    """A client of an API that has SECRET_KEYS."""
    return app_with(secret_keys=Fernet.generate_key().decode()).test_client()


# --- Plugins ------------------------------------------------------------------------------------------------


def test_an_installed_plugins_type_is_listed_with_its_form(client: FlaskClient) -> None:
    types = {task_type["id"]: task_type for task_type in client.get("/api/scheduler/task-types").get_json()}

    example = types["example_append_line"]
    assert (example["label"], example["maxAttempts"], example["timeLimitS"]) == (
        "Append a line (example plugin)",
        2,
        30,
    )
    fields = {field["key"]: field for field in example["configFields"]}
    assert (fields["path"]["required"], fields["path"]["secret"]) == (True, False)
    assert (fields["signature"]["secret"], fields["signature"]["help"]) == (
        True,
        "An example of a secret field",
    )


def test_demo_types_are_offered_only_when_turned_on(app_with: Callable[..., Flask]) -> None:
    production = app_with(demo_task_types="false").test_client()

    listed = {task_type["id"] for task_type in production.get("/api/scheduler/task-types").get_json()}
    refused = production.post(TASKS, json=cron_task())

    assert "report_publish" not in listed and {"http_request", "example_append_line"} <= listed
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["json"]["taskType"] == ["unknown task type 'report_publish'"]


# --- Secrets ------------------------------------------------------------------------------------------------


def test_a_secret_is_stored_encrypted_and_never_answered(
    keyed: FlaskClient, schedule_row: Callable[[int], TaskSchedule | None]
) -> None:
    created = keyed.post(TASKS, json=plugin_task())
    assert created.status_code == 201, created.get_json()
    task = created.get_json()

    assert task["config"] == {"path": "/tmp/lines.txt", "signature": {"set": True}}
    for answer in (keyed.get(f"{TASKS}/{task['id']}"), keyed.get(TASKS), keyed.get(HISTORY)):
        assert SECRET not in answer.get_data(as_text=True)
    stored = schedule_row(task["id"])
    assert stored is not None and set(stored.config["signature"]) == {"encrypted"}
    assert SECRET not in str(stored.config)


def test_sending_back_what_was_read_keeps_the_secret_and_a_new_value_replaces_it(
    keyed: FlaskClient, schedule_row: Callable[[int], TaskSchedule | None]
) -> None:
    task = keyed.post(TASKS, json=plugin_task()).get_json()
    before = schedule_row(task["id"]).config["signature"]  # type: ignore[union-attr]

    kept = keyed.patch(f"{TASKS}/{task['id']}", json={"config": {**task["config"], "path": "/tmp/other.txt"}})
    assert kept.status_code == 200, kept.get_json()
    assert schedule_row(task["id"]).config["signature"] == before  # type: ignore[union-attr]

    keyed.patch(
        f"{TASKS}/{task['id']}", json={"config": {"path": "/tmp/other.txt", "signature": "new-key-123"}}
    )
    assert schedule_row(task["id"]).config["signature"] != before  # type: ignore[union-attr]


def test_a_secret_may_be_a_reference_which_is_shown_as_stored(client: FlaskClient) -> None:
    reference = {"env": "SIGNING_KEY"}
    created = client.post(TASKS, json=plugin_task(config={"path": "/tmp/x", "signature": reference}))

    assert created.status_code == 201, created.get_json()
    assert created.get_json()["config"]["signature"] == reference


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (SECRET, 'cannot be stored: set SECRET_KEYS, or send a reference ({"env": ...} or {"file": ...})'),
        ({"set": True}, "is not set yet: send its value"),
        ({"vault": "x"}, 'must be a string, {"env": "NAME"}, {"file": "/path"} or {"set": true}'),
        (42, 'must be a string, {"env": "NAME"}, {"file": "/path"} or {"set": true}'),
    ],
)
def test_a_secret_that_cannot_be_stored_is_refused_naming_it(
    client: FlaskClient, stored_schedules: Callable[[], int], signature: Any, reason: str
) -> None:
    # This API has no SECRET_KEYS: a value cannot be encrypted, a reference can be kept.
    refused = client.post(TASKS, json=plugin_task(config={"path": "/tmp/x", "signature": signature}))

    assert refused.status_code == 422
    assert refused.get_json()["errors"]["json"] == {"config.signature": [reason]}
    assert stored_schedules() == 0


# --- Run settings, owner, labels ----------------------------------------------------------------------------


def test_run_settings_owner_and_labels_are_stored_and_answered(create: Callable[..., dict[str, Any]]) -> None:
    task = create(
        cron_task(
            maxAttempts=5,
            retryBaseDelayMs=30_000,
            timeLimitS=60,
            owner="billing-oncall@example.com",
            labels={"team": "billing", "tier": "1"},
        )
    )

    assert (task["maxAttempts"], task["retryBaseDelayMs"], task["timeLimitS"]) == (5, 30_000, 60)
    assert (task["owner"], task["labels"], task["source"]) == (
        "billing-oncall@example.com",
        {"team": "billing", "tier": "1"},
        None,
    )
    assert (create(cron_task())["maxAttempts"], create(cron_task())["labels"]) == (None, {})


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"maxAttempts": 0}, "maxAttempts", "must be from 1 to 10"),
        ({"maxAttempts": 11}, "maxAttempts", "must be from 1 to 10"),
        ({"retryBaseDelayMs": -1}, "retryBaseDelayMs", "must be from 0 to 3600000"),
        ({"timeLimitS": 0}, "timeLimitS", "must be from 1 to 300"),
        ({"timeLimitS": 301}, "timeLimitS", "must be from 1 to 300"),  # the deployment's TASK_TIME_LIMIT_S
        ({"owner": "x" * 256}, "owner", "must be text of at most 255 characters"),
        (
            {"labels": {"-team": "x"}},
            "labels.-team",
            "a key is 1 to 63 letters, digits, '-', '_', '.' or '/', starting and ending alphanumeric",
        ),
        ({"labels": {"team": "x" * 64}}, "labels.team", "must be text of at most 63 characters"),
    ],
)
def test_run_settings_and_labels_out_of_bounds_are_refused_naming_the_field(
    client: FlaskClient, stored_schedules: Callable[[], int], fields: dict[str, Any], field: str, reason: str
) -> None:
    refused = client.post(TASKS, json=cron_task(**fields))

    assert refused.status_code == 422
    assert refused.get_json()["errors"]["json"] == {field: [reason]}
    assert stored_schedules() == 0


def test_the_list_filters_by_owner_and_labels(
    client: FlaskClient, create: Callable[..., dict[str, Any]]
) -> None:
    billing = create(cron_task(name="billing", owner="ann", labels={"team": "billing", "tier": "1"}))
    create(cron_task(name="billing tier 2", owner="ann", labels={"team": "billing", "tier": "2"}))
    create(cron_task(name="search", owner="bob", labels={"team": "search"}))

    def names(query: str) -> list[str]:
        return [task["name"] for task in client.get(f"{TASKS}?{query}").get_json()]

    assert names("label=team=billing&label=tier=1") == [billing["name"]]
    assert names("owner=bob") == ["search"]
    assert names("label=team=billing") == ["billing", "billing tier 2"]
    assert client.get(f"{TASKS}?label=team").status_code == 422


def test_pause_and_resume_act_on_every_schedule_the_filter_selects(
    client: FlaskClient, create: Callable[..., dict[str, Any]]
) -> None:
    billing = [create(cron_task(name=f"billing {n}", labels={"team": "billing"})) for n in range(3)]
    search = create(cron_task(name="search", labels={"team": "search"}))

    paused = client.post(f"{TASKS}/pause?label=team=billing")
    assert paused.status_code == 200
    assert sorted(paused.get_json()["changed"]) == sorted(task["id"] for task in billing)
    for task in billing:
        shown = client.get(f"{TASKS}/{task['id']}").get_json()
        assert (shown["enabled"], shown["nextRunAt"]) == (False, None)
    assert client.get(f"{TASKS}/{search['id']}").get_json()["enabled"] is True
    assert client.post(f"{TASKS}/pause?label=team=billing").get_json()["changed"] == []

    resumed = client.post(f"{TASKS}/resume?label=team=billing").get_json()["changed"]
    assert sorted(resumed) == sorted(task["id"] for task in billing)
    assert all(client.get(f"{TASKS}/{task['id']}").get_json()["nextRunAt"] for task in billing)


# --- Run Now's override -------------------------------------------------------------------------------------


def test_run_now_records_its_config_override(
    client: FlaskClient, create: Callable[..., dict[str, Any]]
) -> None:
    task = create(plugin_task(config={"path": "/tmp/lines.txt"}))

    run = client.post(f"{TASKS}/{task['id']}/run", json={"config": {"line": "once"}})

    assert run.status_code == 202, run.get_json()
    assert run.get_json()["configOverride"] == {"line": "once"}
    assert client.post(f"{TASKS}/{task['id']}/run").get_json()["configOverride"] is None


@pytest.mark.parametrize(
    ("override", "errors"),
    [
        ({"colour": "red"}, {"config.colour": ["unknown key for task type example_append_line"]}),
        ({"signature": "x"}, {"config.signature": ["is a secret: set it on the schedule, not for one run"]}),
        ({"path": ""}, {"config.path": ["is required"]}),
    ],
)
def test_a_run_now_override_that_does_not_fit_the_type_is_refused(
    client: FlaskClient,
    create: Callable[..., dict[str, Any]],
    stored_runs: Callable[[], int],
    override: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    task = create(plugin_task(config={"path": "/tmp/lines.txt"}))

    refused = client.post(f"{TASKS}/{task['id']}/run", json={"config": override})

    assert refused.status_code == 422
    assert refused.get_json()["errors"]["json"] == errors
    assert stored_runs() == 0
