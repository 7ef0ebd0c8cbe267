"""Schemathesis against the API's own OpenAPI document: every operation, as every identity, with valid and
invalid input (its examples, its coverage cases, then a bounded number of generated ones). No answer is a 5xx,
every status answered is one the operation lists (not merely its ``default``), and every answer has the media
type, body and headers its documentation gives. Derandomized, so a run is the same run each time; against the real
PostgreSQL database, with schedules of each kind and their runs in it, so that answers carry real rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from shared.runtime import Runtime
from tests.api.conftest import TASKS, cron_task, interval_task
from tests.conftest import truncate

SEED = 20_260_112  # fixed: the same cases, in the same order, on every run
FUZZED_EXAMPLES = 80  # generated cases per operation and identity, after its examples and coverage cases
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    unsupported_method,  # the coverage phase's other methods: a 405 that names the route's own in Allow
]


@dataclass(frozen=True)
class Identity:
    """Who the fuzzer calls the API as: the Settings the app runs with, and the headers each request carries
    (made once the database exists, so that a role can store its token first)."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    headers: Callable[[Runtime], dict[str, str]] = lambda _runtime: {}


# One entry per identity the API tells apart: each role, as dev mode's MOCK_USER_EMAIL with MOCK_USER_ROLE, and an
# operator by the proxy's headers (a token would be one more entry whose ``headers`` sends it; the rows are
# truncated before each operation, so it would be made there). What a role may not do is its documented 403.
IDENTITIES = [
    Identity("dev-admin", {"auth_mode": "dev", "mock_user_role": "admin"}),
    Identity("dev-operator", {"auth_mode": "dev", "mock_user_role": "operator"}),
    Identity("dev-viewer", {"auth_mode": "dev", "mock_user_role": "viewer"}),
    # The proxy's headers, the role from a group: what a header-mode deployment sees.
    Identity(
        "header-operator",
        {"auth_mode": "header", "auth_operator_groups": "cron-ops", "auth_default_role": "none"},
        lambda _runtime: {"X-Forwarded-Email": "fuzz@example.com", "X-Forwarded-Groups": "staff,cron-ops"},
    ),
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",  # positive and negative cases alike
            "max-examples": FUZZED_EXAMPLES,
            "deterministic": True,  # Hypothesis' derandomize
            "database": "none",  # no .hypothesis/ example database written
        },
        "phases": {"stateful": {"enabled": False}},
        # Values that name what exists, mixed into what is generated: else nearly every id is one no task has, and
        # every new schedule names a task type no one installed, and the answers of success go untried.
        "dictionaries": {
            "task-ids": {"values": [1, 2, 3, 4, 5]},  # seed_rows' schedules
            "task-types": {"values": ["report_publish", "data_export", "dramatiq_message", "http_request"]},
            "timezones": {"values": ["UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati"]},
            "crons": {"values": ["0 9 * * 1", "*/5 * * * *", "@daily", "30 2 29 2 *", "0 0 31 4 *"]},
            "instants": {
                "values": ["2026-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "2999-12-31T23:59:59+14:00"]
            },
        },
        "parameters": {
            "path.task_id": {"dictionary": "task-ids", "probability": 0.5},
            "query.scheduleId": {"dictionary": "task-ids", "probability": 0.5},
            "query.taskId": {"dictionary": "task-ids", "probability": 0.5},
            "query.taskType": {"dictionary": "task-types", "probability": 0.5},
            "query.timezone": {"dictionary": "timezones", "probability": 0.5},
            "query.expression": {"dictionary": "crons", "probability": 0.5},
            "body.taskType": {"dictionary": "task-types", "probability": 0.5},
            "body.timezone": {"dictionary": "timezones", "probability": 0.5},
            "body.cronExpression": {"dictionary": "crons", "probability": 0.5},
            "body.startAt": {"dictionary": "instants", "probability": 0.3},
            "body.endAt": {"dictionary": "instants", "probability": 0.3},
        },
    }
)


# Bodies each operation accepts, given to Schemathesis as the operation's examples (its examples phase sends them,
# its coverage phase varies them): a generated config rarely is one a task type takes.
VALID_BODIES = {
    "createTask": [
        cron_task(owner="billing", labels={"team": "billing"}, jitterS=30, dstPolicy="both"),
        interval_task(enabled=False, startAt="2026-01-01T00:00:00Z", endAt="2030-01-01T00:00:00Z"),
        interval_task(misfirePolicy="catchUp", catchUpMax=3, catchUpWindowS=600, overlapPolicy="skip"),
        {
            "name": "Send it",
            "taskType": "dramatiq_message",
            "scheduleType": "manual",
            "config": {
                "queueName": "reports",
                "actorName": "publish",
                "args": [1, "two"],
                "kwargs": {"a": None},
            },
        },
        {
            "name": "Call it",
            "taskType": "http_request",
            "scheduleType": "manual",
            "config": {
                "url": "https://example.com/hook",
                "method": "POST",
                "bearerToken": {"env": "HOOK_TOKEN"},
            },
        },
    ],
    "updateTask": [{"name": "Renamed", "enabled": False}, {"scheduleType": "interval", "intervalMs": 5000}],
    "patchTask": [{"owner": None, "labels": {}}, {"cronExpression": "@daily", "timezone": "Asia/Kolkata"}],
    "runTaskNow": [{"config": {"reportId": "usage-monthly"}}, {}],
}


def seed_rows(app: Flask) -> None:
    """A schedule of each kind (``VALID_BODIES``), one disabled, each with a run: what lists, gets and history
    dump. Their ids are 1 to 5: each test's database starts empty, its ids at 1."""
    client = app.test_client()
    for body in VALID_BODIES["createTask"]:
        created = client.post(TASKS, json=body)
        assert created.status_code == 201, created.get_json()
        ran = client.post(f"{TASKS}/{created.get_json()['id']}/run")
        assert ran.status_code == 202, ran.get_json()


def with_valid_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """``VALID_BODIES`` as the examples of each operation's JSON body."""
    for methods in document["paths"].values():
        for method, operation in methods.items():
            bodies = VALID_BODIES.get(operation.get("operationId"), []) if method != "parameters" else []
            if bodies:
                media = operation["requestBody"]["content"]["application/json"]
                media["examples"] = {f"valid{index}": {"value": body} for index, body in enumerate(bodies)}
    return document


def without_default_responses(document: dict[str, Any]) -> dict[str, Any]:
    """The document with no operation's ``default`` response (flask-smorest's: the Error any status answers
    with), so that status_code_conformance holds each answer to the statuses its operation lists."""
    for methods in document["paths"].values():
        for method, operation in methods.items():
            if method != "parameters":
                operation["responses"].pop("default", None)
    return document


@pytest.fixture(autouse=True, scope="module")
def hypothesis_home_outside_the_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis keeps caches (constants, Unicode tables) in ./.hypothesis even with no example database: a
    directory of the run's own instead."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.mark.parametrize("identity", IDENTITIES, ids=[identity.name for identity in IDENTITIES])
def test_every_answer_is_documented_and_none_is_a_server_error(
    app_with: Callable[..., Flask], runtime: Runtime, subtests: pytest.Subtests, identity: Identity
) -> None:
    app = app_with(**identity.settings)
    headers = identity.headers(runtime)
    document = app.test_client().get("/api/openapi.json", headers=headers).get_json()
    schema = schemathesis.openapi.from_dict(
        with_valid_bodies(without_default_responses(document)), config=CONFIG
    )
    schema.app = app

    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    for operation in schema.get_all_operations():
        with subtests.test(operation.ok().label):
            truncate(runtime.settings.database_url)  # each operation against the same rows, ids from 1
            seed_rows(app_with(auth_mode="dev", mock_user_role="admin"))
            # Schemathesis' pytest loader (from_fixture) names subtests through an attribute pytest 9.2 removed;
            # this builds the Hypothesis test it does, with the phases CONFIG enables: examples, coverage, fuzzing.
            fuzz = build_operation_test(
                config=schema.config,
                operation=operation.ok(),
                test_func=call,
                given_kwargs={},
                feedback=FeedbackSources(),
            )
            fuzz()
