"""Helpers for the shipping checks: render the Helm chart, validate it, read the compose file.

The tests call the real tools (``helm``, ``kubernetes-validate``, ``docker-compose``) through subprocess, so
``pytest tests/deploy`` is the whole check. ``deploy/check.sh`` puts the tools on PATH and sets
``CRONWORK_DEPLOY_TOOLS=required``: then a missing tool fails the run. Without it (a developer's plain
``pytest``), tests that need a missing tool are skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "cronwork"
ALL_ON_VALUES = REPO_ROOT / "deploy" / "helm" / "ci-values-all-on.yaml"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

KUBERNETES_VERSION = "1.34.0"
RELEASE = "ci"

# Overrides on top of the all-on values that render the branches all-on cannot show at once.
HPA_INSTEAD_OF_KEDA = ("worker.keda.enabled=false", "worker.autoscaling.enabled=true")
WITH_EXISTING_SECRET = ("secrets.existingSecret=platform-cronwork", "secrets.databaseUrl=", "secrets.brokerUrl=")


def require_tool(name: str) -> str:
    """The tool's path; fail (under deploy/check.sh) or skip (plain pytest) when it is not on PATH."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not on PATH (deploy/check.sh installs helm and kubernetes-validate)"
    if os.environ.get("CRONWORK_DEPLOY_TOOLS") == "required":
        pytest.fail(message)
    pytest.skip(message)


def run(*argv: str, stdin: str | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; never raises on a non-zero exit."""
    return subprocess.run(argv, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@functools.cache
def _helm_template(values_files: tuple[str, ...], set_values: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    argv = ["helm", "template", RELEASE, str(CHART_DIR), "--kube-version", KUBERNETES_VERSION]
    for values_file in values_files:
        argv += ["--values", values_file]
    for assignment in set_values:
        argv += ["--set", assignment]
    return run(*argv)


def helm_template(
    *set_values: str, values: tuple[Path, ...] = (), expect_failure: bool = False
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart with values files and ``--set`` assignments (cached per arguments)."""
    require_tool("helm")
    result = _helm_template(tuple(str(v) for v in values), set_values)
    if expect_failure:
        assert result.returncode != 0, "helm template succeeded but was expected to fail"
    else:
        assert result.returncode == 0, result.stderr
    return result


def render(*set_values: str, values: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The chart's manifests (hooks included) as dicts."""
    output = helm_template(*set_values, values=values).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def render_all_on(*set_values: str) -> list[dict[str, Any]]:
    return render(*set_values, values=(ALL_ON_VALUES,))


def find(manifests: list[dict[str, Any]], kind: str, name_suffix: str = "") -> list[dict[str, Any]]:
    """Manifests of one kind whose name ends with ``name_suffix``."""
    return [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]


def only(manifests: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The single manifest of one kind (and name suffix); fails when there is not exactly one."""
    found = find(manifests, kind, name_suffix)
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[m['metadata']['name'] for m in found]}"
    return found[0]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def load_values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


@pytest.fixture(scope="session")
def compose_config() -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it (interpolated with its defaults, no .env file)."""
    require_tool("docker-compose")
    result = run("docker-compose", "--env-file", os.devnull, "--file", str(COMPOSE_FILE), "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)
