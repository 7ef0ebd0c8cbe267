"""`make soak` (bench/soak.py): its verdicts judge growth as the issue asks, and a minute's soak on the real stack
reports every interval with every section, prints the slopes, and leaves nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench.soak import (
    SMOKE,
    bounded_trend,
    flat_trend,
    role_of,
    slope_per_hour,
)
from bench.stack import ADMIN_URL, rabbitmqctl

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_SECTIONS = ("load", "lateness", "memory MB", "database", "connections", "queues", "retention", "api")
SUMMARY_SECTIONS = ("memory MB", "connections", "database", "queues", "lateness ms", "load")
DRAMATIQ = ["python", "-m", "dramatiq", "services.worker.actors", "--queues", "cronwork.runs"]
GUNICORN = ["python", "-m", "gunicorn", "services.api.wsgi:app"]


def test_each_process_is_named_by_its_role() -> None:
    assert role_of(["python", "-m", "services", "worker"], []) == "supervisor"
    assert role_of(DRAMATIQ, ["python", "-m", "services", "worker"]) == "runs main"
    assert role_of(DRAMATIQ, DRAMATIQ) == "runs worker"
    assert role_of(GUNICORN, ["python", "-m", "services", "api"]) == "gunicorn master"
    assert role_of(GUNICORN, GUNICORN) == "gunicorn worker"
    assert role_of(["python", "-m", "services.beat"], []) == "periodiq"


def test_the_slope_is_per_hour() -> None:
    assert slope_per_hour([(0, 100.0), (1800, 101.0), (3600, 102.0)]) == pytest.approx(2.0)
    assert slope_per_hour([(0, 100.0)]) == 0.0


def test_memory_growing_faster_than_five_percent_an_hour_fails_and_shrinking_passes() -> None:
    growing = [(at_s, 100.0 + at_s / 600) for at_s in range(0, 3600, 60)]  # +6 MB an hour on about 103
    shrinking = [(at_s, 100.0 - at_s / 600) for at_s in range(0, 3600, 60)]
    assert not flat_trend("memory MB", "worker", growing, judged=True).passed
    assert flat_trend("memory MB", "worker", shrinking, judged=True).passed
    too_short = flat_trend("memory MB", "worker", growing, judged=False)
    assert (too_short.verdict, too_short.passed) == ("not judged", True)


def test_a_small_process_may_grow_by_the_absolute_floor() -> None:
    creeping = [(at_s, 20.0 + at_s / 3600 * 1.5) for at_s in range(0, 3600, 60)]  # 1.5 MB an hour on 20
    assert flat_trend("memory MB", "main", creeping, judged=True).passed


def test_a_database_that_levels_off_is_bounded_and_one_that_keeps_growing_is_not() -> None:
    levelling = [(at_s, min(at_s, 1200) / 10) for at_s in range(0, 3600, 60)]
    growing = [(at_s, at_s / 10) for at_s in range(0, 3600, 60)]
    assert bounded_trend("size MB", levelling, 3600, judged=True).passed
    assert not bounded_trend("size MB", growing, 3600, judged=True).passed


@pytest.mark.services
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_soak_reports_each_interval_prints_the_slopes_and_removes_what_it_made() -> None:
    soak = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--smoke"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    output = soak.stdout
    assert soak.returncode == 0, output + soak.stderr

    reports = re.split(r"^\[[\d:]+\] report \d+ of \d+", output, flags=re.M)[1:]
    assert len(reports) == SMOKE["duration"] // SMOKE["report_every"]
    for number, block in enumerate(reports, 1):
        missing = [section for section in REPORT_SECTIONS if not re.search(rf"^  {section}\b", block, re.M)]
        assert missing == [], f"report {number} lacks {missing}"
    slopes = output[output.index("slopes per hour") :]
    assert [section for section in SUMMARY_SECTIONS if f"\n  {section}\n" not in slopes] == []
    assert re.search(r"^verdict: PASS", slopes, re.M)

    name = re.search(r"database and vhost (cronwork_bench_\w+)", output).group(1)
    assert f"removed database and vhost {name}" in output
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall() == []
    assert name not in rabbitmqctl("list_vhosts").split()
    pids = [int(pid) for pid in re.findall(r"^  \S.*?  pid (\d+) ", output, re.M)]
    assert pids, "the process table was not printed"
    alive = [pid for pid in pids if name_of(pid).startswith(sys.executable)]
    assert alive == [], "processes of the soak outlived it"


def name_of(pid: int) -> str:
    """A process's command line, or '' once it has exited."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
