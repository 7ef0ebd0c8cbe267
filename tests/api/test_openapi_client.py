"""A Python client generated from the live OpenAPI document by openapi-python-client drives the API, served by a
real gunicorn in header auth mode: what the document says is what a client can use, operation names, enums,
errors and all."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.settings import Settings
from tests.conftest import OUTPUT_DIR, Services, environment, free_port, http_ok, wait_for

PACKAGE = "cronwork_client"
IDENTITY_HEADER = "X-Auth-Request-Email"


@dataclasses.dataclass(frozen=True)
class LiveApi:
    base_url: str
    document: dict[str, Any]


@pytest.fixture(scope="module")
def live_api(make_database: Callable[[str], str], make_vhost: Callable[[str], str]) -> Iterator[LiveApi]:
    """gunicorn serving the API on its own database and vhost, behind an (imagined) proxy's header, whose
    users are admins by default."""
    settings = Settings(
        database_url=make_database("client"),
        broker_url=make_vhost("client"),
        port=free_port(),
        demo_task_types="true",
    )
    running = Services(OUTPUT_DIR / "logs" / "openapi_client")
    running.start(
        "api",
        environment(settings, AUTH_MODE="header", AUTH_HEADER=IDENTITY_HEADER, AUTH_DEFAULT_ROLE="admin"),
    )
    base_url = f"http://127.0.0.1:{settings.port}"
    wait_for(lambda: http_ok(f"{base_url}/healthz"), 30, "gunicorn to answer /healthz")
    with urllib.request.urlopen(f"{base_url}/api/openapi.json", timeout=10) as response:
        document = json.load(response)
    yield LiveApi(base_url, document)
    running.stop_all()


@pytest.fixture(scope="module")
def generated(live_api: LiveApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Any]]:
    """Generates the client from the served document (any generator warning fails), and imports its modules:
    ``generated("models")``, ``generated("api.scheduler.create_task")``."""
    workdir = tmp_path_factory.mktemp("openapi_client")
    spec_path = workdir / "openapi.json"
    spec_path.write_text(json.dumps(live_api.document))
    config_path = workdir / "config.yaml"
    config_path.write_text("post_hooks: []\n")  # no formatting of the generated code: nothing reads it
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(spec_path),
            "--output-path",
            str(workdir / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config_path),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(workdir))
    yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    sys.path.remove(str(workdir))
    for module in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[module]


@pytest.fixture(scope="module")
def as_alice(live_api: LiveApi, generated: Callable[[str], Any]) -> Any:
    """A client that sends the identity header the document's security scheme names."""
    schemes = live_api.document["components"]["securitySchemes"].values()
    (scheme,) = [scheme for scheme in schemes if scheme["type"] == "apiKey"]
    assert scheme["name"] == IDENTITY_HEADER  # the server's AUTH_HEADER
    return generated("client").AuthenticatedClient(
        base_url=live_api.base_url, token="alice@example.com", prefix="", auth_header_name=scheme["name"]
    )


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_client_functions_are_named_by_the_operation_ids(
    live_api: LiveApi, generated: Callable[[str], Any]
) -> None:
    operation_ids = {
        operation["operationId"]
        for methods in live_api.document["paths"].values()
        for method, operation in methods.items()
        if method != "parameters"
    }
    scheduler: ModuleType = generated("api.scheduler")

    functions = {module.name for module in pkgutil.iter_modules([str(Path(scheduler.__file__).parent)])}

    assert functions == {snake_case(operation_id) for operation_id in operation_ids}
    assert {"create_task", "list_tasks", "run_task_now", "list_timezones"} <= functions


def test_the_generated_client_drives_a_task_through_its_life(
    generated: Callable[[str], Any], as_alice: Any
) -> None:
    models = generated("models")
    api = {name: generated(f"api.scheduler.{name}") for name in ("create_task", "get_task", "list_tasks")}
    api |= {name: generated(f"api.scheduler.{name}") for name in ("update_task", "patch_task", "delete_task")}
    api |= {name: generated(f"api.scheduler.{name}") for name in ("run_task_now", "list_history")}

    created = api["create_task"].sync_detailed(
        client=as_alice,
        body=models.TaskIn(
            name="Weekly compliance report",
            task_type="report_publish",
            schedule_type=models.ScheduleType.CRON,
            cron_expression="0 9 * * 1",
            timezone="Europe/Berlin",
            config=models.TaskInConfig.from_dict({"reportId": "compliance-weekly"}),
        ),
    )
    assert created.status_code == 201, created.content
    task = created.parsed
    assert isinstance(task, models.Task)
    assert (task.task_type, task.schedule_type, task.created_by) == (
        "report_publish",
        models.ScheduleType.CRON,
        "alice@example.com",
    )
    assert task.next_run_at is not None and task.last_run_status is None
    assert api["get_task"].sync(task.id, client=as_alice) == task

    api["create_task"].sync(
        client=as_alice,
        body=models.TaskIn(
            name="Export every minute",
            task_type="data_export",
            schedule_type=models.ScheduleType.INTERVAL,
            interval_ms=60_000,
            config=models.TaskInConfig.from_dict({"format": "csv"}),
        ),
    )
    first_page = api["list_tasks"].sync_detailed(client=as_alice, page=1, page_size=1)
    assert [listed.id for listed in first_page.parsed] == [task.id]
    # A list item is its own model: the task without its config, summed up in a line.
    [listed] = first_page.parsed
    assert isinstance(listed, models.TaskListItem) and not hasattr(listed, "config")
    assert (listed.name, listed.config_summary) == (task.name, "Weekly Compliance Report")
    pagination = json.loads(first_page.headers["X-Pagination"])
    assert (pagination["total"], pagination["next_page"]) == (2, 2)

    renamed = api["update_task"].sync(task.id, client=as_alice, body=models.TaskUpdate(name="Renamed"))
    assert (renamed.name, renamed.version, renamed.cron_expression) == ("Renamed", 2, "0 9 * * 1")
    disabled = api["patch_task"].sync(task.id, client=as_alice, body=models.TaskUpdate(enabled=False))
    assert (disabled.enabled, disabled.next_run_at) == (False, None)

    run = api["run_task_now"].sync_detailed(task.id, client=as_alice)
    assert run.status_code == 202
    assert (run.parsed.status, run.parsed.triggered_by) == (
        models.RunStatus.QUEUED,
        models.TriggeredBy.MANUAL,
    )
    history = api["list_history"].sync(client=as_alice, schedule_id=task.id, status=models.RunStatus.QUEUED)
    assert [listed.id for listed in history] == [run.parsed.id]

    assert api["delete_task"].sync_detailed(task.id, client=as_alice).status_code == 204
    gone = api["get_task"].sync_detailed(task.id, client=as_alice)
    assert gone.status_code == 404
    assert isinstance(gone.parsed, models.Error) and str(task.id) in gone.parsed.message


def test_a_validation_error_comes_back_as_the_documented_422(
    generated: Callable[[str], Any], as_alice: Any
) -> None:
    models = generated("models")

    rejected = generated("api.scheduler.create_task").sync_detailed(
        client=as_alice,
        body=models.TaskIn(
            name="Never",
            task_type="report_publish",
            schedule_type=models.ScheduleType.CRON,
            cron_expression="0 0 31 2 *",
            config=models.TaskInConfig.from_dict({"reportId": "compliance-weekly"}),
        ),
    )

    assert rejected.status_code == 422
    assert isinstance(rejected.parsed, models.Error)
    assert (rejected.parsed.code, rejected.parsed.status) == (422, "Unprocessable Entity")
    assert "never matches" in rejected.parsed.errors["json"]["cronExpression"][0]


def test_the_reference_lists_come_typed(generated: Callable[[str], Any], as_alice: Any) -> None:
    models = generated("models")

    task_types = generated("api.scheduler.list_task_types").sync(client=as_alice)
    timezones = generated("api.scheduler.list_timezones").sync(client=as_alice)
    me = generated("api.scheduler.get_me").sync(client=as_alice)

    assert {"http_request", "report_publish"} <= {task_type.id for task_type in task_types}
    http = next(task_type for task_type in task_types if task_type.id == "http_request")
    assert models.ConfigFieldType.URL in {config_field.type_ for config_field in http.config_fields}
    assert "Europe/Berlin" in timezones and all(isinstance(zone, str) for zone in timezones)
    assert (me.email, me.auth_mode) == ("alice@example.com", models.AuthMode.HEADER)


def test_without_the_identity_header_the_documented_401_comes_back(
    live_api: LiveApi, generated: Callable[[str], Any]
) -> None:
    anonymous = generated("client").Client(base_url=live_api.base_url)

    answer = generated("api.scheduler.get_me").sync_detailed(client=anonymous)

    assert answer.status_code == 401
    assert isinstance(answer.parsed, generated("models").Error)
    assert IDENTITY_HEADER in answer.parsed.message


def test_a_tool_authenticates_with_an_api_token_through_the_generated_client(
    live_api: LiveApi, generated: Callable[[str], Any], as_alice: Any
) -> None:
    models = generated("models")
    made = generated("api.scheduler.create_token").sync(
        client=as_alice, body=models.TokenIn(name="release pipeline", role=models.Role.OPERATOR)
    )
    assert isinstance(made, models.MadeToken) and made.secret.startswith("cw_")
    # The tool's client: the bearer scheme the document names, and no proxy header.
    tool = generated("client").AuthenticatedClient(base_url=live_api.base_url, token=made.secret)

    me = generated("api.scheduler.get_me").sync(client=tool)
    refused = generated("api.scheduler.create_token").sync_detailed(
        client=tool, body=models.TokenIn(name="escalation", role=models.Role.ADMIN)
    )

    assert (me.email, me.role) == (f"token:{made.id}", models.Role.OPERATOR)
    assert refused.status_code == 403
    assert isinstance(refused.parsed, models.Error) and "needs the admin role" in refused.parsed.message
