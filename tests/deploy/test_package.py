"""The wheel the image installs (Dockerfile: `pip wheel .`) carries everything the roles need at run time, and
the hashed lock files it and `make install` install from hold exactly the versions pinned at the source."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("cronwork-*.whl")
    return built


def test_the_wheel_carries_the_migrations_the_page_and_the_entry_point(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "shared/migrations/env.py",
        "shared/migrations/script.py.mako",
        "services/api/static/index.html",
        "services/api/static/app.css",
    ):
        assert required in names, required
    assert any(name.startswith("shared/migrations/versions/0001_") for name in names)
    static_in_repo = {
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "services/api/static").rglob("*")
        if path.is_file()
    }
    assert static_in_repo <= names, static_in_repo - names
    entry_points = next(
        zipfile.ZipFile(wheel).read(name).decode() for name in names if name.endswith("entry_points.txt")
    )
    assert "cronwork = services.__main__:main" in entry_points


def test_cronwork_migrate_runs_from_the_installed_files_alone(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    workdir = tmp_path / "work"
    workdir.mkdir()
    # The unpacked wheel first on the path, and not the checkout: what the image would run.
    code = f"import sys; sys.path.insert(0, {str(unpacked)!r}); from services.__main__ import main; sys.exit(main(['migrate']))"
    env = {"PATH": "/usr/bin:/bin", "PYTHONSAFEPATH": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert (workdir / "var" / "cronwork.sqlite3").stat().st_size > 0


# --- the lock files --------------------------------------------------------------------------------------

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
# `name==version`, `name[extra]==version`, and in a lock `name==version ; marker \` with its hashes below.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _pins(lines: list[str]) -> dict[str, str]:
    """The exact pins among ``lines``, by normalised name (PEP 503)."""
    pins = (PIN.match(line.strip()) for line in lines)
    return {re.sub(r"[-_.]+", "-", pin[1]).lower(): pin[2] for pin in pins if pin}


def _lines(path: str) -> list[str]:
    return (REPO_ROOT / path).read_text().splitlines()


# Each lock file, and the direct requirements `make lock` compiles it from.
LOCKS = {
    "requirements.lock": PYPROJECT["dependencies"],
    "requirements-dev.lock": PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["dev"],
    "deploy/chart-tools.txt": [line for line in _lines("deploy/chart-tools.in") if not line.startswith("#")],
    "deploy/lock-tools.txt": [line for line in _lines("deploy/lock-tools.in") if not line.startswith("#")],
}


@pytest.mark.parametrize("lock", LOCKS)
def test_every_direct_dependency_is_locked_at_the_version_its_source_pins(lock: str) -> None:
    direct = [line for line in LOCKS[lock] if line.strip()]
    pinned = _pins(direct)
    assert len(pinned) == len(direct), f"pin every direct dependency exactly (name==version): {direct}"
    locked = _pins(_lines(lock))
    drifted = {
        name: (version, locked.get(name)) for name, version in pinned.items() if locked.get(name) != version
    }
    assert not drifted, f"{lock} drifted from its source, (pinned, locked): {drifted}; run `make lock`"
