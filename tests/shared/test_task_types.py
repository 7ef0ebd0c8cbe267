"""The task-type registry: what is found under the cronwork.task_types entry points, and what is left out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from shared import task_types
from shared.settings import Settings
from shared.task_types import ConfigField, FieldType, TaskType, installed_task_types, offered_task_types


def no_op(_context: object) -> None:
    return None


NIGHTLY = TaskType("nightly", "Nightly", "A plugin's type", no_op)
ALSO_NIGHTLY = TaskType("nightly", "Another", "The same id again", no_op)
DEMO = TaskType("pretend", "Pretend", "Simulated", no_op, demo=True)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """The entry points the registry will find: a test appends to the list."""
    published: list[EntryPoint] = []
    monkeypatch.setattr(
        task_types, "entry_points", lambda group: [ep for ep in published if ep.group == group]
    )
    installed_task_types.cache_clear()
    yield published
    installed_task_types.cache_clear()


def published(name: str, target: str) -> EntryPoint:
    return EntryPoint(name, target, task_types.ENTRY_POINT_GROUP)


def test_a_published_task_type_is_found_by_its_id(plugins: list[EntryPoint]) -> None:
    plugins.append(published("nightly", f"{__name__}:NIGHTLY"))

    assert dict(installed_task_types()) == {"nightly": NIGHTLY}


def test_a_plugin_that_fails_to_load_is_left_out_and_logged_and_the_others_load(
    plugins: list[EntryPoint], caplog: pytest.LogCaptureFixture
) -> None:
    plugins += [published("broken", "no_such_module_here:TYPE"), published("nightly", f"{__name__}:NIGHTLY")]

    with caplog.at_level(logging.ERROR, "cronwork.task_types"):
        found = installed_task_types()

    assert list(found) == ["nightly"]
    assert "task type plugin broken (no_such_module_here:TYPE) failed to load" in caplog.text


def test_an_entry_point_that_is_not_a_task_type_and_a_repeated_id_are_left_out(
    plugins: list[EntryPoint], caplog: pytest.LogCaptureFixture
) -> None:
    plugins += [
        published("a_nightly", f"{__name__}:NIGHTLY"),
        published("b_nightly_again", f"{__name__}:ALSO_NIGHTLY"),
        published("c_not_a_type", f"{__name__}:no_op"),
    ]

    with caplog.at_level(logging.ERROR, "cronwork.task_types"):
        found = installed_task_types()

    assert dict(found) == {"nightly": NIGHTLY}
    assert "repeats the id 'nightly'" in caplog.text and "is not a TaskType" in caplog.text


def test_demo_types_are_offered_only_when_turned_on(plugins: list[EntryPoint]) -> None:
    plugins += [published("nightly", f"{__name__}:NIGHTLY"), published("pretend", f"{__name__}:DEMO")]

    assert list(offered_task_types(Settings(demo_task_types="false"))) == ["nightly"]
    assert list(offered_task_types(Settings(demo_task_types="true"))) == ["nightly", "pretend"]


def test_cronwork_publishes_its_own_types_as_plugins_do() -> None:
    assert {"http_request", "report_publish", "data_export"} <= set(installed_task_types())


def test_a_secret_fields_value_is_not_checked_as_its_type_but_its_presence_is() -> None:
    signed = TaskType(
        "signed",
        "Signed",
        "",
        no_op,
        config_fields=(ConfigField("key", "Key", FieldType.TEXT, required=True, secret=True),),
    )

    assert signed.config_errors({"key": {"encrypted": "gAAAA..."}}) == {}
    assert signed.config_errors({}) == {"key": ["is required"]}


def test_a_types_own_rules_across_fields_run_once_each_field_is_valid() -> None:
    def one_of_two(config: object) -> dict[str, list[str]]:
        return {"_schema": ["set a or b, not both"]}

    picky = TaskType(
        "picky",
        "Picky",
        "",
        no_op,
        config_fields=(ConfigField("a", "A", FieldType.NUMBER), ConfigField("b", "B", FieldType.NUMBER)),
        check_config=one_of_two,
    )

    assert picky.config_errors({"a": "x"}) == {"a": ["must be a number"]}
    assert picky.config_errors({"a": 1, "b": 2}) == {"_schema": ["set a or b, not both"]}
