"""Optimistic concurrency on /api/scheduler/tasks/{id}: every answer carrying a task tags it with its ETag
("<id>-<version>"), and PUT, PATCH and DELETE sent with a stale If-Match are a 412 that changes nothing, so two
operators editing one task at once cannot silently overwrite each other. If-Match stays optional."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from shared import schedules
from shared.models import TaskSchedule
from shared.runtime import Runtime
from tests.api.conftest import TASKS, cron_task
from tests.api.test_bad_input import error_body

Create = Callable[[dict[str, Any]], dict[str, Any]]
StoredRow = Callable[[int], tuple[Any, ...] | None]
EDITS = [("PUT", {"name": "Renamed"}), ("PATCH", {"name": "Renamed"}), ("DELETE", None)]


@pytest.fixture
def stored_row(runtime: Runtime) -> StoredRow:
    """Every column of one schedule as stored (None when there is no such row): equal before and after means
    nothing changed."""

    def read(schedule_id: int) -> tuple[Any, ...] | None:
        with runtime.sessions() as session:
            row = session.execute(
                select(TaskSchedule.__table__).where(TaskSchedule.id == schedule_id)
            ).one_or_none()
        return None if row is None else tuple(row)

    return read


def etag(task: dict[str, Any]) -> str:
    return f'"{task["id"]}-{task["version"]}"'


def send(client: FlaskClient, method: str, task_id: int, body: Any, if_match: str | None) -> TestResponse:
    headers = {} if if_match is None else {"If-Match": if_match}
    return client.open(f"{TASKS}/{task_id}", method=method, json=body, headers=headers)


def edited(client: FlaskClient, task: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The task after an edit made without If-Match (another operator's): its version moves on."""
    response = client.patch(f"{TASKS}/{task['id']}", json=changes)
    assert response.status_code == 200, response.get_json()
    after: dict[str, Any] = response.get_json()
    assert after["version"] == task["version"] + 1
    return after


# --- The ETag -----------------------------------------------------------------------------------------------------


def test_create_get_and_each_edit_answer_the_tasks_etag_made_of_its_id_and_version(
    client: FlaskClient,
) -> None:
    created = client.post(TASKS, json=cron_task())
    task = created.get_json()
    assert (created.status_code, task["version"]) == (201, 1)
    assert created.headers["ETag"] == f'"{task["id"]}-1"'

    read = client.get(f"{TASKS}/{task['id']}")
    assert read.headers["ETag"] == f'"{task["id"]}-1"'

    for method, version in (("PATCH", 2), ("PUT", 3)):
        response = send(client, method, task["id"], {"name": f"Renamed {version}"}, None)
        assert response.status_code == 200
        assert response.get_json()["version"] == version
        assert response.headers["ETag"] == f'"{task["id"]}-{version}"'
    assert client.get(f"{TASKS}/{task['id']}").headers["ETag"] == f'"{task["id"]}-3"'


def test_every_edit_moves_the_etag_a_pause_by_filter_too(client: FlaskClient, create: Create) -> None:
    task = create(cron_task())
    read = client.get(f"{TASKS}/{task['id']}").headers["ETag"]

    assert client.post(f"{TASKS}/pause").get_json() == {"changed": [task["id"]]}
    paused = client.get(f"{TASKS}/{task['id']}")

    assert paused.headers["ETag"] == f'"{task["id"]}-2"' != read
    assert send(client, "PATCH", task["id"], {"name": "Mine"}, read).status_code == 412


# --- If-Match ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_an_edit_with_the_current_etag_applies_and_answers_the_next_one(
    client: FlaskClient, create: Create, method: str
) -> None:
    task = edited(client, create(cron_task()), owner="billing")

    response = send(client, method, task["id"], {"name": "Renamed"}, etag(task))

    assert response.status_code == 200
    assert (response.get_json()["name"], response.get_json()["version"]) == ("Renamed", 3)
    assert response.headers["ETag"] == f'"{task["id"]}-3"'


def test_a_delete_with_the_current_etag_deletes(
    client: FlaskClient, create: Create, stored_row: StoredRow
) -> None:
    task = edited(client, create(cron_task()), owner="billing")

    response = send(client, "DELETE", task["id"], None, etag(task))

    assert response.status_code == 204
    assert stored_row(task["id"]) is None


@pytest.mark.parametrize(("method", "body"), EDITS, ids=[method for method, _ in EDITS])
def test_a_stale_etag_is_a_412_naming_the_current_version_and_changes_nothing(
    client: FlaskClient, create: Create, stored_row: StoredRow, method: str, body: Any
) -> None:
    read = create(cron_task())
    now = edited(client, read, owner="someone else")  # behind the first reader's back
    before = stored_row(read["id"])

    response = send(client, method, read["id"], body, etag(read))

    assert response.status_code == 412
    answer = error_body(response)
    assert answer["status"] == "Precondition Failed"
    assert f"task {read['id']} changed since it was read" in answer["message"]
    assert f"version 2 now, ETag {etag(now)}" in answer["message"]
    assert response.headers["ETag"] == etag(now)
    assert stored_row(read["id"]) == before  # the row, its version and every field; a delete left it there
    assert client.get(f"{TASKS}/{read['id']}").get_json() == now


def test_a_stale_etag_is_a_412_before_the_change_is_validated(
    client: FlaskClient, create: Create, stored_row: StoredRow
) -> None:
    read = create(cron_task())
    edited(client, read, owner="someone else")
    before = stored_row(read["id"])

    response = send(client, "PATCH", read["id"], {"cronExpression": "0 0 31 2 *"}, etag(read))

    assert response.status_code == 412
    assert stored_row(read["id"]) == before


@pytest.mark.parametrize(("method", "body"), EDITS, ids=[method for method, _ in EDITS])
def test_without_if_match_or_with_a_star_nothing_is_compared(
    client: FlaskClient, create: Create, stored_row: StoredRow, method: str, body: Any
) -> None:
    for if_match in (None, "*", " * "):
        task = edited(client, create(cron_task()), owner="someone else")

        response = send(client, method, task["id"], body, if_match)

        assert response.status_code == (204 if method == "DELETE" else 200), if_match
        if method == "DELETE":
            assert stored_row(task["id"]) is None
        else:
            assert response.get_json()["version"] == 3


def test_a_list_of_tags_matches_when_any_is_current(client: FlaskClient, create: Create) -> None:
    task = edited(client, create(cron_task()), owner="billing")
    tags = f'"{task["id"]}-1", W/"x", "other",, "{task["id"]}-2"'

    response = send(client, "PATCH", task["id"], {"name": "Renamed"}, tags)

    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{task["id"]}-3"'


@pytest.mark.parametrize(
    "if_match",
    [
        'W/"{id}-1"',  # weak: If-Match compares strongly, a weak tag never matches
        '"{other}-1"',  # another task's tag at the same version
        '"{id}-01"',  # not the tag as the API writes it
        '"{id}-1-1"',
        "{id}-1",  # unquoted: malformed
        '"{id}-1',  # unterminated: malformed
        '*, "{id}-1"',  # "*" is the whole field or nothing: malformed
        '"{id}-1" "{id}-1"',  # no comma between tags: malformed
        "",  # an empty list names no tag
        '"{id}-99999999999999999999"',
    ],
)
def test_an_if_match_that_names_no_tag_of_the_task_as_it_is_is_a_412_and_changes_nothing(
    client: FlaskClient, create: Create, stored_row: StoredRow, if_match: str
) -> None:
    task = create(cron_task())
    other = create(cron_task(name="Another"))
    sent = if_match.format(id=task["id"], other=other["id"])
    before = stored_row(task["id"])

    for method, body in EDITS:
        response = send(client, method, task["id"], body, sent)

        assert response.status_code == 412, (method, sent)
        assert f"If-Match names no entity tag of task {task['id']}" in error_body(response)["message"]
        assert response.headers["ETag"] == etag(task)
    assert stored_row(task["id"]) == before


@pytest.mark.parametrize(("method", "body"), EDITS, ids=[method for method, _ in EDITS])
def test_if_match_on_a_task_that_does_not_exist_is_its_404(
    client: FlaskClient, method: str, body: Any
) -> None:
    for if_match in ('"999-1"', "*", "garbage"):
        assert send(client, method, 999, body, if_match).status_code == 404


# --- Two editors at once -------------------------------------------------------------------------------------------


def lock_together(monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """Hold each edit and delete just before it locks the row until ``parties`` of them are there: each has
    read what it reads beforehand, so a check made before the lock would pass for every one of them."""
    barrier = threading.Barrier(parties, timeout=15)
    lock = schedules.lock_schedule

    def locking_together(session: Any, schedule_id: int) -> TaskSchedule | None:
        barrier.wait()
        return lock(session, schedule_id)

    monkeypatch.setattr(schedules, "lock_schedule", locking_together)


def at_once(app: Flask, requests: list[tuple[str, int, Any, str | None]]) -> list[TestResponse]:
    """The requests sent at once, each from its own thread with its own client."""

    def one(request: tuple[str, int, Any, str | None]) -> TestResponse:
        return send(app.test_client(), *request)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, requests))


def test_two_edits_made_against_one_version_at_once_one_applies_the_other_is_a_412(
    app: Flask, client: FlaskClient, create: Create, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = create(cron_task())
    lock_together(monkeypatch, 2)

    first, second = at_once(
        app,
        [
            ("PATCH", task["id"], {"name": "Alice's"}, etag(task)),
            ("PATCH", task["id"], {"name": "Bob's"}, etag(task)),
        ],
    )

    assert sorted([first.status_code, second.status_code]) == [200, 412]
    winner, loser = (first, second) if first.status_code == 200 else (second, first)
    stored = client.get(f"{TASKS}/{task['id']}").get_json()
    assert (stored["name"], stored["version"]) == (winner.get_json()["name"], 2)
    assert loser.headers["ETag"] == winner.headers["ETag"] == f'"{task["id"]}-2"'


def test_an_edit_and_a_delete_made_against_one_version_at_once_only_one_happens(
    app: Flask, create: Create, stored_row: StoredRow, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = create(cron_task())
    lock_together(monkeypatch, 2)

    patched, deleted = at_once(
        app,
        [("PATCH", task["id"], {"name": "Kept"}, etag(task)), ("DELETE", task["id"], None, etag(task))],
    )

    row = stored_row(task["id"])
    if deleted.status_code == 204:  # the delete locked first: the edit found the task gone
        assert patched.status_code == 404 and row is None
    else:  # the edit locked first: the delete's tag was stale
        assert (patched.status_code, deleted.status_code) == (200, 412)
        assert row is not None and patched.get_json()["version"] == 2


def test_many_editors_of_one_version_at_once_exactly_one_applies(
    app: Flask, client: FlaskClient, create: Create
) -> None:
    task = create(cron_task())

    answers = at_once(app, [("PATCH", task["id"], {"owner": f"editor {n}"}, etag(task)) for n in range(8)])

    assert sorted(answer.status_code for answer in answers) == [200] + [412] * 7
    assert client.get(f"{TASKS}/{task['id']}").get_json()["version"] == 2


# --- The document -----------------------------------------------------------------------------------------------


def test_the_etag_if_match_and_412_are_documented(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    one_task = paths["/api/scheduler/tasks/{task_id}"]

    for operation, status in ((paths["/api/scheduler/tasks"]["post"], "201"), (one_task["get"], "200")):
        assert '"<id>-<version>"' in operation["responses"][status]["headers"]["ETag"]["description"]
    for method in ("put", "patch", "delete"):
        operation = one_task[method]
        (if_match,) = [p for p in operation["parameters"] if p["name"] == "If-Match"]
        assert (if_match["in"], if_match["required"]) == ("header", False)
        answer = operation["responses"]["412"]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert set(answer["headers"]) == {"ETag", "X-Request-ID"}
        if method != "delete":
            assert "ETag" in operation["responses"]["200"]["headers"]
    assert "412" not in one_task["get"]["responses"]
