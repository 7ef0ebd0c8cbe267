"""The chart's `schedules`: a list applied by a post-install and post-upgrade hook Job (`cronwork apply --source
chart --prune`) from a ConfigMap, rendered only when the list is not empty, valid Kubernetes, locked down like the
migration Job, its schema the API's wire fields; and the file it renders applies as the Job runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.api.schemas import TaskInSchema
from shared.models import ScheduleType
from shared.settings import Settings
from tests.conftest import environment
from tests.deploy.test_chart import CUSTOM_RESOURCE_KINDS, env_of, find, only, pod_spec

SCHEDULES = [
    {
        "key": "nightly-export",
        "name": "Nightly export",
        "taskType": "data_export",
        "scheduleType": "cron",
        "cronExpression": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "config": {"format": "csv"},
    },
    {
        "key": "hourly-report",
        "name": "Hourly report",
        "taskType": "report_publish",
        "scheduleType": "interval",
        "intervalMs": 3_600_000,  # Helm reads it as a float: it must still reach cronwork as an integer
        "maxAttempts": 2,
        "config": {"reportId": "usage-monthly"},
        "labels": {"team": "billing"},
    },
]
CRONWORK = Path(sys.executable).parent / "cronwork"


@pytest.fixture(scope="module")
def with_schedules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A values file that gives the chart ``SCHEDULES``."""
    path = tmp_path_factory.mktemp("values") / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": SCHEDULES}))
    return path


def hook_job(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return only(manifests, "Job", "-apply-schedules")


def rendered_config_map(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return only(manifests, "ConfigMap", "-schedules")


def rendered_file(manifests: list[dict[str, Any]]) -> str:
    data: str = rendered_config_map(manifests)["data"]["schedules.yaml"]
    return data


def test_no_schedules_render_no_hook_and_no_config_map(chart):
    for manifests in (chart.render(), chart.render_all_on()):
        assert find(manifests, "Job", "-apply-schedules") == []
        assert find(manifests, "ConfigMap", "-schedules") == []


def test_schedules_are_applied_by_a_post_install_and_post_upgrade_hook(chart, with_schedules):
    manifests = chart.render(values=(with_schedules,))
    job = hook_job(manifests)
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    spec = pod_spec(job)
    [container] = spec["containers"]
    assert container["args"] == ["apply", "-f", "/schedules/schedules.yaml", "--source", "chart", "--prune"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    config_map = rendered_config_map(manifests)
    assert volumes[mounts["/schedules"]]["configMap"]["name"] == config_map["metadata"]["name"]
    # The ConfigMap is an ordinary object: it exists, updated, before a post hook runs.
    assert "helm.sh/hook" not in config_map["metadata"].get("annotations", {})
    assert yaml.safe_load(rendered_file(manifests)) == {"schedules": SCHEDULES}


def test_the_hook_and_its_config_map_pass_strict_kubernetes_validation(chart, with_schedules):
    for values in [(with_schedules,), (chart.all_on_values, with_schedules)]:
        rendered = chart.template(values=values).stdout
        result = chart.validate(rendered)
        assert result.returncode == 0, result.stdout + result.stderr
        manifests = [m for m in yaml.safe_load_all(rendered) if m]
        core = [m for m in manifests if m["kind"] not in CUSTOM_RESOURCE_KINDS]
        assert result.stdout.count(" passed for resource ") == len(core), result.stdout
        for kind, manifest in (("job", hook_job(manifests)), ("configmap", rendered_config_map(manifests))):
            assert f" passed for resource {kind}/{manifest['metadata']['name']} " in result.stdout


def test_the_chart_with_schedules_passes_strict_lint(chart, with_schedules):
    result = chart.lint(with_schedules)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("all_on", [False, True], ids=["defaults", "all-on"])
def test_the_hook_runs_like_the_migration_job(chart, with_schedules, all_on):
    """The same image, settings, security and pod settings as the migration Job; the credentials from the
    release's Secret, which exists by the time a post hook runs (the migration reads a hook copy)."""
    values = (chart.all_on_values, with_schedules) if all_on else (with_schedules,)
    manifests = chart.render(values=values)
    job, migrate = hook_job(manifests), only(manifests, "Job", "-migrate")
    [container], [migration] = pod_spec(job)["containers"], pod_spec(migrate)["containers"]
    for key in ("image", "imagePullPolicy", "resources", "securityContext"):
        assert container[key] == migration[key], key
    for key in ("securityContext", "imagePullSecrets", "nodeSelector", "affinity", "tolerations"):
        assert pod_spec(job).get(key) == pod_spec(migrate).get(key), key
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (
        migrate["spec"]["backoffLimit"],
        migrate["spec"]["activeDeadlineSeconds"],
    )
    settings = {name: value for name, value in env_of(container).items() if isinstance(value, str)}
    assert settings == {name: value for name, value in env_of(migration).items() if isinstance(value, str)}
    secrets = {name: ref["secretKeyRef"] for name, ref in env_of(container).items() if isinstance(ref, dict)}
    assert secrets.keys() == {"DATABASE_URL", "BROKER_URL", "SECRET_KEYS", "SMTP_PASSWORD"}
    release_secret = "cronwork-ci" if all_on else "cronwork"
    assert {ref["name"] for ref in secrets.values()} == {release_secret}
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "apply-schedules"
    assert labels["app.kubernetes.io/instance"] == chart.release


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("schedules[0].cronExpresion=x", "cronExpresion"),
        ("schedules[0].schedule=x", "schedule"),
    ],
)
def test_schema_refuses_a_misspelt_schedule_field(chart, assignment, named):
    entry = (
        "schedules[0].key=a",
        "schedules[0].name=A",
        "schedules[0].taskType=t",
        "schedules[0].scheduleType=cron",
    )
    result = chart.template(*entry, assignment, expect_failure=True)
    assert "additional properties" in result.stderr and f"'{named}'" in result.stderr, result.stderr


def test_schema_refuses_an_entry_without_a_key(chart):
    result = chart.template(
        "schedules[0].name=A",
        "schedules[0].taskType=t",
        "schedules[0].scheduleType=cron",
        expect_failure=True,
    )
    assert "/schedules/0" in result.stderr and "'key'" in result.stderr, result.stderr


def test_schema_names_the_apis_wire_fields(chart):
    """The schema's entry is the API's body plus the key: a field the API gains is a field the chart takes."""
    schema = yaml.safe_load((chart.path / "values.schema.json").read_text())
    entry = schema["properties"]["schedules"]["items"]
    wire_fields = {field.data_key or name for name, field in TaskInSchema().fields.items()}
    assert set(entry["properties"]) == {"key", *wire_fields}
    assert set(entry["required"]) == {
        "key",
        *(f.data_key or n for n, f in TaskInSchema().fields.items() if f.required),
    }
    assert entry["properties"]["scheduleType"]["enum"] == [str(kind) for kind in ScheduleType]


def test_the_rendered_file_applies_as_the_hook_runs_it(chart, with_schedules, settings: Settings, tmp_path):
    """The ConfigMap's file, run with the Job's own arguments against a real database: created under the
    chart's source, and a second run (the next upgrade) changes nothing."""
    manifests = chart.render(values=(with_schedules,))
    schedules_file = tmp_path / "schedules.yaml"
    schedules_file.write_text(rendered_file(manifests))
    [container] = pod_spec(hook_job(manifests))["containers"]
    args = [str(schedules_file) if arg == "/schedules/schedules.yaml" else arg for arg in container["args"]]

    def run() -> str:
        result = subprocess.run(
            [str(CRONWORK), *args], env=environment(settings), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    first, second = run(), run()

    assert first.splitlines()[0] == "source 'chart': 2 to create, 0 to update, 0 unchanged, 0 to delete"
    assert "    intervalMs: 3600000" in first
    assert second.splitlines() == [
        "source 'chart': 0 to create, 0 to update, 2 unchanged, 0 to delete",
        "nothing to change",
    ]
