"""The short chaos form: every kind of fault, overlapping, under load, and the ledger still holds every slot once."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.plan import FaultKind

ROOT = Path(__file__).resolve().parents[2]
# About two minutes in all: servers and pods start (~20 s), 60 s of load, faults playing out, settle, check.
SHORT_FORM = ["--seed", "20261203", "--duration", "60", "--schedules", "80", "--raced", "10"]
DEADLINE_S = 240


def run_the_short_form() -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "chaos", *SHORT_FORM],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the harness removes its servers and processes on SIGTERM
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"the chaos run outlived its {DEADLINE_S} s deadline:\n{output}")
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def counted(output: str, row: str) -> int:
    found = re.search(rf"^  {re.escape(row)}\s+(\d+)", output, re.MULTILINE)
    assert found, f"no {row!r} row in the table:\n{output}"
    return int(found.group(1))


def test_overlapping_faults_under_load_leave_every_slot_once_and_nothing_stuck() -> None:
    result = run_the_short_form()
    output = result.stdout
    assert result.returncode == 0, output
    assert {kind: counted(output, kind) for kind in FaultKind if counted(output, kind) == 0} == {}, output
    for row in ("duplicates", "lost", "stuck"):
        assert counted(output, row) == 0, output
    assert counted(output, "slots expected") > 1000, output
