"""Fixtures for the shipping checks: the Helm chart rendered by the real ``helm``, the compose file resolved
by the real ``docker-compose``.

The tests call the tools through subprocess, so ``pytest tests/deploy`` is the whole check. ``make tools`` (run
by ``make test``) installs the pinned helm and kubernetes-validate into ``.tools/bin``, which is searched before
PATH; ``make system-deps`` installs docker-compose and promtool. A missing tool skips the checks that need it, with one reason
that says how to get it; with ``CI`` set it fails them instead, since CI must run every check.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import shared.settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
KUBERNETES_VERSION = "1.34.0"
CHART_TOOLS = ("helm", "kubernetes-validate")
# The Debian package of a tool, where its name is not the tool's.
DEBIAN_PACKAGES = {"promtool": "prometheus"}


def _is_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _find_tool(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([str(TOOLS_BIN), os.environ.get("PATH", "")]))


def _require_tool(name: str) -> str:
    """The tool's path, from .tools/bin or PATH; skips the test when it is missing (fails it under CI)."""
    path = _find_tool(name)
    if path:
        return path
    if name in CHART_TOOLS:  # one reason for every chart check, however many tools are missing
        missing = " and ".join(tool for tool in CHART_TOOLS if not _find_tool(tool))
        message = f"{missing} not installed: `make tools` installs the pinned chart tools into .tools/bin"
    else:
        package = DEBIAN_PACKAGES.get(name, name)
        message = f"{name} is not installed: `make system-deps` installs it (apt-get install {package})"
    if _is_ci():
        pytest.fail(f"{message} (CI runs every chart and compose check)")
    pytest.skip(message)


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a tool by name (``argv[0]``), found as ``_require_tool`` finds it."""
    return subprocess.run(
        [_require_tool(argv[0]), *argv[1:]],
        input=stdin,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Chart:
    """The cronwork chart under ``deploy/helm/cronwork``, rendered, linted and validated by the real tools.

    Renders are cached per arguments: most tests ask for the same few value sets.
    """

    release = "ci"
    path = REPO_ROOT / "deploy" / "helm" / "cronwork"
    all_on_values = REPO_ROOT / "deploy" / "helm" / "ci-values-all-on.yaml"

    def template(
        self, *set_values: str, values: tuple[Path, ...] = (), expect_failure: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``helm template`` with values files and ``--set`` assignments; asserts it succeeds (or fails)."""
        _require_tool("helm")
        result = self._template(tuple(str(v) for v in values), set_values)
        if expect_failure:
            assert result.returncode != 0, "helm template succeeded but was expected to fail"
        else:
            assert result.returncode == 0, result.stderr
        return result

    @functools.cache  # noqa: B019 - one Chart per session
    def _template(
        self, values: tuple[str, ...], set_values: tuple[str, ...]
    ) -> subprocess.CompletedProcess[str]:
        argv = ["helm", "template", self.release, str(self.path), "--kube-version", KUBERNETES_VERSION]
        for values_file in values:
            argv += ["--values", values_file]
        for assignment in set_values:
            argv += ["--set", assignment]
        return _run(argv)

    def render(self, *set_values: str, values: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
        """The chart's manifests, hooks included, as dicts."""
        output = self.template(*set_values, values=values).stdout
        return [doc for doc in yaml.safe_load_all(output) if doc]

    def render_all_on(self, *set_values: str) -> list[dict[str, Any]]:
        """The manifests with ``ci-values-all-on.yaml`` (plus ``--set`` overrides)."""
        return self.render(*set_values, values=(self.all_on_values,))

    def lint(self, *values: Path) -> subprocess.CompletedProcess[str]:
        """``helm lint --strict`` with the given values files."""
        _require_tool("helm")
        argv = ["helm", "lint", "--strict", str(self.path)]
        for values_file in values:
            argv += ["--values", str(values_file)]
        return _run(argv)

    def notes(self, *set_values: str, values: tuple[Path, ...] = (), workdir: Path) -> str:
        """NOTES.txt as ``helm install`` would print it, rendered offline through a copy of the chart."""
        _require_tool("helm")
        copy = workdir / self.path.name
        shutil.copytree(self.path, copy)
        (copy / "templates" / "notes-as-manifest.yaml").write_text(
            'notes: |\n{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 2 }}\n'
        )
        argv = [
            "helm",
            "template",
            self.release,
            str(copy),
            "--show-only",
            "templates/notes-as-manifest.yaml",
        ]
        for values_file in values:
            argv += ["--values", str(values_file)]
        for assignment in set_values:
            argv += ["--set", assignment]
        result = _run(argv)
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)["notes"]

    def validate(self, manifests: str) -> subprocess.CompletedProcess[str]:
        """``kubernetes-validate --strict`` of rendered manifests against the pinned Kubernetes version."""
        _require_tool("kubernetes-validate")
        return _run(["kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, "-"], stdin=manifests)


@pytest.fixture(scope="session")
def chart() -> Chart:
    return Chart()


@pytest.fixture(scope="session")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it: validated and interpolated with the file's own defaults (no
    .env file, none of its variables from this environment)."""
    docker_compose = _require_tool("docker-compose")
    compose_file = REPO_ROOT / "docker-compose.yml"
    variables = set(re.findall(r"\$\{(\w+)", compose_file.read_text()))
    env = {name: value for name, value in os.environ.items() if name not in variables}
    empty_env_file = tmp_path_factory.mktemp("compose") / ".env"
    empty_env_file.write_text("")
    argv = [docker_compose, "--env-file", str(empty_env_file), "--file", str(compose_file), "config"]
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="session")
def settings_variables() -> set[str]:
    """Every environment variable ``Settings.from_env`` reads, found in shared/settings.py itself, so that a
    setting added there but not shipped in the chart or the compose file fails these tests."""
    source = Path(shared.settings.__file__).read_text()
    names = set(re.findall(r'\benv(?:\.get\(|, )"([A-Z][A-Z0-9_]*)"', source))
    assert {"DATABASE_URL", "PORT", "TICK_BUDGET", "LOG_LEVEL"} <= names, names  # the pattern still matches
    return names
