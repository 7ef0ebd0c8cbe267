"""`make soak`: a steady load on the real stack for an hour or more, reported every few minutes, and the slope of
every figure over time at the end, with a verdict: memory and connections must stay flat, and history retention
must keep the database bounded.

The stack is ``make bench``'s (``bench.stack``): a throwaway database and RabbitMQ vhost, two worker pods, a
beat and an API as deployed, all removed at the end, also on Ctrl-C. The load is interval schedules whose slots
are spread evenly, ``--rate`` fires a second; the API is scraped and paged as a Prometheus server and an
operator would. Exits 1 when a verdict fails, 130 when interrupted.

    python -m bench.soak [--rate 200] [--duration 3600] [--report-every 300] [--warmup S] [--retention S]
    python -m bench.soak --smoke     # 30 s at 50 fires/s, a report every 10 s (tests/bench/test_soak.py)
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import shlex
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pika
import psycopg

from bench.__main__ import machine
from bench.firing import arm_all
from bench.http import wait_until_serving
from bench.stack import HARNESS_APPLICATION_NAME, Stack, free_port, insert_schedules, rabbitmqctl
from bench.stats import percentile
from shared.messaging import SYSTEM_QUEUE

INTERVAL_S = 10  # each schedule fires every 10 s: rate x 10 schedules, their slots spread evenly
LEAD_S = 5  # the first slots fall this long after the schedules are armed
SAMPLES_PER_REPORT = 4  # memory, database and queues are sampled more often than reported: steadier slopes
SHORTEST_SAMPLE_GAP_S = 5
RETENTION_INTERVALS = 2  # the default retention window, in report intervals
# The worker runs one retention per minute, whatever the number of sends (a system slot is claimed per minute).
SYSTEM_SLOT_S = 60
RETENTION_TASK = "history_retention"

# Verdicts. Flat: growing by less than 5 % of the mean an hour, or than the absolute floor (an allocator's
# arenas and a pool's idle connections move by that much without leaking). Bounded: once retention deletes,
# the last third of the run stays within 10 % of the middle third's highest.
FLAT_FRACTION_PER_HOUR = 0.05
FLAT_FLOOR_PER_HOUR = {"memory MB": 2.0, "connections": 2.0}
# Connections are counted in whole ones: one more at the end of a short run is a step, not a trend.
FLAT_STEP = {"memory MB": 0.0, "connections": 1.0}
BOUNDED_GROWTH = 0.10
SHORTEST_JUDGED_S = 600  # a slope over less than ten minutes says nothing about an hour

SMOKE = {"rate": 50, "duration": 30, "report_every": 10}
API_PATHS = ("/metrics", "/readyz", "/api/scheduler/tasks?page_size=100", "/api/scheduler/history")


@dataclass(frozen=True)
class SoakOptions:
    """What one soak does: ``rate`` fires/s for ``duration_s`` (a whole number of report intervals), a report
    every ``report_every_s``; slopes leave out the first ``warmup_s``; finished runs are deleted once older
    than ``retention_s``."""

    rate: int
    duration_s: float
    report_every_s: float
    warmup_s: float
    retention_s: float

    @property
    def reports(self) -> int:
        return round(self.duration_s / self.report_every_s)

    @property
    def samples_per_report(self) -> int:
        return max(1, min(SAMPLES_PER_REPORT, int(self.report_every_s // SHORTEST_SAMPLE_GAP_S)))

    @property
    def sample_gap_s(self) -> float:
        return self.report_every_s / self.samples_per_report

    @property
    def retention_days(self) -> float:
        return self.retention_s / 86_400


# --- Our processes, by role -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OurProcess:
    """A process of the stack: ``name`` is its pod or service and its role (``worker-pod1 runs worker 2``)."""

    name: str
    pid: int
    command: str


def command_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def parent_of(pid: int) -> int:
    try:
        # The command name in parentheses may hold spaces: the fields after its closing parenthesis do not.
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def memory_kb(pid: int, kind: str = "VmRSS") -> int:
    """A memory figure of ``/proc/PID/status`` (``VmRSS``: resident; ``RssAnon``: resident and private)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{kind}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def role_of(argv: list[str], parent_argv: list[str]) -> str:
    """What a process of ours does, from its command line: the pod supervisor, a Dramatiq group's main process
    or one of its workers (named by queue), gunicorn's master or a worker, periodiq."""
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else Path(argv[0] if argv else "?").name
    parent_module = parent_argv[parent_argv.index("-m") + 1] if "-m" in parent_argv[:-1] else ""
    if module == "dramatiq":
        queue = (
            argv[argv.index("--queues") + 1].removeprefix("cronwork.") if "--queues" in argv[:-1] else "all"
        )
        return f"{queue} {'worker' if parent_module == 'dramatiq' else 'main'}"
    if module == "gunicorn":
        return "gunicorn worker" if parent_module == "gunicorn" else "gunicorn master"
    return {"services": "supervisor", "services.beat": "periodiq"}.get(module, module)


def our_processes(stack: Stack) -> list[OurProcess]:
    """Every process the stack started and each of their descendants, numbered where a role has several."""
    found = []
    for started in stack.processes:
        pids = sorted(started.pids())
        roles = [role_of(command_of(pid), command_of(parent_of(pid))) for pid in pids]
        several = {role for role, count in Counter(roles).items() if count > 1}
        numbered: Counter[str] = Counter()
        for pid, role in zip(pids, roles, strict=True):
            numbered[role] += 1
            name = f"{started.name} {role}" + (f" {numbered[role]}" if role in several else "")
            found.append(OurProcess(name, pid, " ".join(command_of(pid))))
    return found


# --- Samples ----------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """Every figure at one instant, ``at_s`` seconds after the load began, by section and name
    (``figures["memory MB"]["worker-pod1 supervisor"]``)."""

    at_s: float
    figures: dict[str, dict[str, float]]
    pids: dict[str, int]


class Sampler:
    """Reads the figures of one stack: /proc for memory, PostgreSQL for the database and its connections,
    ``rabbitmqctl`` for queues and AMQP connections (about a second of CPU each call, hence few calls)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.database = psycopg.connect(
            stack.database_url, autocommit=True, application_name=HARNESS_APPLICATION_NAME
        )
        self.rabbitmq_pid = int(json.loads(rabbitmqctl("status", "--formatter", "json")).get("pid", 0))

    def sample(self, at_s: float, with_broker: bool) -> Sample:
        """The figures now; the broker's (``rabbitmqctl``, about a second of CPU a call) only ``with_broker``."""
        processes = our_processes(self.stack)
        memory = {process.name: memory_kb(process.pid) / 1024 for process in processes}
        backends = [row[0] for row in self._rows(BACKENDS)]
        # A backend's RSS counts the shared buffers it has touched, which grow to shared_buffers without
        # leaking: its private memory is what would leak.
        memory["postgresql backends (private)"] = sum(memory_kb(pid, "RssAnon") for pid in backends) / 1024
        memory["rabbitmq node (all vhosts)"] = memory_kb(self.rabbitmq_pid) / 1024
        database_mb, runs_table_mb, runs_rows, dead_rows, autovacuums = self._rows(DATABASE)[0]
        figures = {
            "memory MB": memory,
            "connections": {"postgresql (this database)": float(len(backends))},
            "database": {
                "size MB": float(database_mb),
                "task_run_history MB": float(runs_table_mb),
                "task_run_history rows": float(runs_rows),
            },
            # Why the size moves: space is reused only once vacuum has cleared the dead rows.
            "vacuum": {"task_run_history dead rows": float(dead_rows), "autovacuums": float(autovacuums)},
        }
        if with_broker:
            amqp_connections, amqp_channels = self._amqp_connections()
            figures["connections"] |= {
                "amqp (this vhost)": float(amqp_connections),
                "amqp channels": float(amqp_channels),
            }
            queues, queue_memory_mb = self._queues()
            figures["queues"] = {**queues, "memory MB (this vhost)": queue_memory_mb}
        return Sample(at_s, figures, {process.name: process.pid for process in processes})

    def _rows(self, statement: str) -> list[tuple[Any, ...]]:
        return self.database.execute(statement).fetchall()

    def _queues(self) -> tuple[dict[str, float], float]:
        depths: dict[str, float] = {}
        memory_bytes = 0
        fields = ("name", "messages_ready", "messages_unacknowledged", "memory")
        for line in rabbitmqctl("list_queues", "-p", self.stack.vhost, *fields).splitlines():
            parts = line.split()
            if len(parts) != 4 or not parts[1].isdigit():
                continue  # the header
            name, ready, unacknowledged, queue_memory = parts
            if int(ready) or int(unacknowledged) or not name.endswith((".XQ", ".DQ")):
                depths[f"{name} ready"] = float(ready)
                depths[f"{name} unacked"] = float(unacknowledged)
            memory_bytes += int(queue_memory)
        return depths, memory_bytes / 2**20

    def _amqp_connections(self) -> tuple[int, int]:
        connections = channels = 0
        for line in rabbitmqctl("list_connections", "vhost", "channels").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == self.stack.vhost and parts[1].isdigit():
                connections += 1
                channels += int(parts[1])
        return connections, channels

    def close(self) -> None:
        self.database.close()


# Cronwork's backends: the bench's own (this sampler, the stand-in autovacuum's VACUUM ANALYZE) are left out.
BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    f" AND application_name IS DISTINCT FROM '{HARNESS_APPLICATION_NAME}'"
)
DATABASE = (
    "SELECT pg_database_size(current_database()) / 2.0::float8^20,"
    " pg_total_relation_size('task_run_history') / 2.0::float8^20, (SELECT count(*) FROM task_run_history),"
    " n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'task_run_history'"
)


# --- What happened in an interval -------------------------------------------------------------------------------


@dataclass
class Interval:
    """One report's interval: fires and their lateness, from the runs table; retention's runs; API latencies."""

    start_s: float
    end_s: float
    fires: int
    lateness_ms: dict[str, float]
    missed_slots: int
    queued: int
    running: int
    overdue_schedules: int
    retention_runs: int
    retention_deleted: int
    retention_last: str
    api_ms: list[float] = field(default_factory=list)
    api_failures: int = 0

    @property
    def fires_per_s(self) -> float:
        return self.fires / (self.end_s - self.start_s)


LATENESS = """
SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY lateness_ms), max(lateness_ms)
FROM (
    SELECT extract(epoch FROM started_at - scheduled_for)::float8 * 1000 AS lateness_ms FROM task_run_history
    WHERE triggered_by = 'schedule' AND attempt = 1 AND started_at >= %(start)s AND started_at < %(end)s
) AS started
"""
BACKLOG = """
SELECT
    (SELECT coalesce(sum(missed_slots), 0) FROM task_run_history
     WHERE status = 'missed' AND scheduled_for >= %(start)s AND scheduled_for < %(end)s),
    (SELECT count(*) FROM task_run_history WHERE status = 'queued'),
    (SELECT count(*) FROM task_run_history WHERE status = 'running' AND system_task IS NULL),
    (SELECT count(*) FROM task_schedules WHERE enabled AND next_run_at < now() - interval '5 seconds')
"""
RETENTION_RUNS = """
SELECT status, coalesce(output, error_message, '') FROM task_run_history
WHERE system_task = %(task)s AND started_at >= %(start)s AND started_at < %(end)s ORDER BY id
"""


def interval_figures(stack: Stack, began: datetime, start_s: float, end_s: float) -> Interval:
    """The interval ``[start_s, end_s)`` after ``began``: attempt-1 scheduled runs started in it (fires) and
    their lateness, ``started_at - scheduled_for`` (the schedules have no jitter), and the backlog now."""
    window = {
        "start": began + timedelta(seconds=start_s),
        "end": began + timedelta(seconds=end_s),
        "task": RETENTION_TASK,
    }
    fires, quantiles, slowest = stack.sql(LATENESS, window)[0]
    lateness_ms = dict(zip(("p50", "p95", "p99", "max"), [*quantiles, slowest], strict=True)) if fires else {}
    missed, queued, running, overdue = stack.sql(BACKLOG, window)[0]
    retention = stack.sql(RETENTION_RUNS, window)
    deleted = sum(
        int(found) for _status, output in retention for found in re.findall(r"deleted (\d+)", output)
    )
    return Interval(
        start_s,
        end_s,
        int(fires),
        lateness_ms,
        int(missed),
        int(queued),
        int(running),
        int(overdue),
        len(retention),
        deleted,
        " ".join(retention[-1]) if retention else "",
    )


# --- The load ---------------------------------------------------------------------------------------------------


def arm_load(stack: Stack, rate: int) -> datetime:
    """``rate`` fires/s from a few seconds on: ``rate * INTERVAL_S`` interval schedules whose first slots are
    spread evenly over the interval. Returns the first slot: the instant the load begins."""
    count = rate * INTERVAL_S
    began = datetime.now(UTC) + timedelta(seconds=LEAD_S)
    step = timedelta(seconds=INTERVAL_S) / count
    insert_schedules(stack, ((None, INTERVAL_S * 1000, began + n * step) for n in range(count)))
    arm_all(stack)
    return began


# The tables every fire rewrites (migration 0008 has autovacuum visit them once 2 % is dead).
CHURNING_TABLES = ("task_run_history", "task_schedules", "ticks_in_flight")
VACUUM_EVERY_S = 60.0


class StandInAutovacuum:
    """Vacuums the churning tables every minute, on a thread of its own, where the server runs with autovacuum
    off (this machine's PostgreSQL is configured so, for its tests): without it the soak would measure a server
    no deployment runs, whose dead rows are never reused. Nothing is done where autovacuum is on."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.stopped = threading.Event()
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            self.needed = connection.execute("SHOW autovacuum").fetchone() == ("off",)
        self.thread = threading.Thread(
            target=self._vacuum_every_minute, name="stand-in-autovacuum", daemon=True
        )

    def start(self) -> StandInAutovacuum:
        """Begin, if the server needs it."""
        if self.needed:
            self.thread.start()
        return self

    def stop(self) -> None:
        """Stop after the vacuum in hand."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def _vacuum_every_minute(self) -> None:
        with psycopg.connect(
            self.stack.database_url, autocommit=True, application_name=HARNESS_APPLICATION_NAME
        ) as connection:
            while not self.stopped.wait(VACUUM_EVERY_S):
                for table in CHURNING_TABLES:
                    connection.execute(f"VACUUM (ANALYZE) {table}")


def send_retention(stack: Stack) -> None:
    """Send the ``history_retention`` system message now, as the beat sends it at minute 17 of each hour (a
    message without periodiq's ``scheduled_at`` runs the current minute's slot)."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=SYSTEM_QUEUE, actor_name=RETENTION_TASK, args=(), kwargs={}, options={}
    )
    # A connection of its own each time: one held idle between sends would miss its heartbeats.
    connection = pika.BlockingConnection(pika.URLParameters(stack.settings.broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", SYSTEM_QUEUE, message.encode(), pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def poll_api(port: int) -> tuple[list[float], int]:
    """Each of ``API_PATHS`` once, as a Prometheus scrape and an operator's page would: the milliseconds of
    each answer, and how many failed."""
    timings, failures = [], 0
    for path in API_PATHS:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            failures += response.status >= 400
        except OSError:
            failures += 1
            continue
        finally:
            connection.close()
        timings.append((time.perf_counter() - started) * 1000)
    return timings, failures


# --- The run ----------------------------------------------------------------------------------------------------


@dataclass
class Soak:
    """One soak on ``stack``: its samples and intervals so far, and the processes seen at each sample."""

    stack: Stack
    options: SoakOptions
    samples: list[Sample] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    first_processes: list[OurProcess] = field(default_factory=list)
    interrupted: bool = False
    dead: list[str] = field(default_factory=list)

    def start(self) -> tuple[int, datetime]:
        self.stack.start_worker_pod(1)
        self.stack.start_worker_pod(2)
        self.stack.start_beat()
        port = free_port()
        self.stack.start_api(port)
        wait_until_serving(port)
        self.first_processes = our_processes(self.stack)
        print_processes(self.first_processes)
        return port, arm_load(self.stack, self.options.rate)

    def measure(self, port: int, began: datetime) -> None:
        """Sample every ``sample_gap_s`` and report every ``report_every_s`` until the end or Ctrl-C."""
        options = self.options
        sampler = Sampler(self.stack)
        last_retention_sent = -math.inf
        api_ms: list[float] = []
        api_failures = 0
        try:
            for number in range(options.reports * options.samples_per_report + 1):
                planned_s = number * options.sample_gap_s
                sleep_until(began + timedelta(seconds=planned_s))
                is_report = number > 0 and number % options.samples_per_report == 0
                # The interval's runs are read before this sample's retention may delete any of them.
                interval = (
                    interval_figures(self.stack, began, planned_s - options.report_every_s, planned_s)
                    if is_report
                    else None
                )
                # Slopes use when a figure was read: on a busy machine a sample may start late.
                at_s = (datetime.now(UTC) - began).total_seconds()
                self.samples.append(sampler.sample(at_s, with_broker=is_report or number == 0))
                timings, failures = poll_api(port)
                api_ms += timings
                api_failures += failures
                # By the planned instant: a sample a little late must not push the next send a minute on.
                if planned_s - last_retention_sent >= SYSTEM_SLOT_S:
                    send_retention(self.stack)
                    last_retention_sent = planned_s
                self.dead += [
                    process.name for process in self.stack.processes if process.popen.poll() is not None
                ]
                if interval:
                    interval.api_ms, interval.api_failures = api_ms, api_failures
                    api_ms, api_failures = [], 0
                    self.intervals.append(interval)
                    print(report(self, interval), flush=True)
                if self.dead:
                    print(f"\nstopping: {', '.join(sorted(set(self.dead)))} exited", flush=True)
                    return
        except KeyboardInterrupt:
            self.interrupted = True
            print("\ninterrupted: the summary covers the samples so far", flush=True)
        finally:
            sampler.close()

    def show_logs_of_dead_processes(self) -> None:
        for process in self.stack.processes:
            if process.popen.poll() is not None:
                tail = "\n".join(process.log().splitlines()[-40:])
                print(f"\n{process.name} exited with {process.popen.returncode}; its log ends:\n{tail}")


def sleep_until(instant: datetime) -> None:
    remaining = (instant - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


# --- Printing ---------------------------------------------------------------------------------------------------


def clock() -> str:
    return f"[{datetime.now(UTC):%H:%M:%S}]"


def print_processes(processes: Sequence[OurProcess]) -> None:
    print(f"{clock()} processes (memory is each one's RSS, not its descendants'):")
    width = max(len(process.name) for process in processes)
    for process in processes:
        print(f"  {process.name:<{width}}  pid {process.pid:<7}  {process.command}")
    print(flush=True)


def milliseconds(value: float | None) -> str:
    return f"{value:,.0f} ms" if value is not None else "-"


def report(soak: Soak, interval: Interval) -> str:
    """One interval's block: its fires and their lateness, and the last sample's figures."""
    sample, earlier = soak.samples[-1], soak.samples[-1 - soak.options.samples_per_report]
    late = interval.lateness_ms
    number = len(soak.intervals)
    lines = [
        f"{clock()} report {number} of {soak.options.reports}: {interval.start_s:.0f}-{interval.end_s:.0f} s"
        f" after the load began",
        f"  load         {interval.fires:,} fires (attempt-1 scheduled runs started) = {interval.fires_per_s:.1f}/s"
        f" of {soak.options.rate}/s offered; slots missed (coalesced) {interval.missed_slots}; now queued"
        f" {interval.queued}, running {interval.running}, schedules overdue > 5 s {interval.overdue_schedules}",
        "  lateness     "
        + "  ".join(f"{name} {milliseconds(late.get(name))}" for name in ("p50", "p95", "p99", "max"))
        + "  (started_at - scheduled_for; no jitter)",
    ]
    memory = sample.figures["memory MB"]
    width = max(map(len, memory))
    for n, (name, megabytes) in enumerate(memory.items()):
        change = megabytes - earlier.figures["memory MB"].get(name, math.nan)
        pid = f"pid {sample.pids[name]}" if name in sample.pids else ""
        lines.append(
            f"  {'memory MB' if n == 0 else '':<11}  {name:<{width}}  {pid:<11} {megabytes:8.1f}  ({change:+.1f})"
        )
    database, connections = sample.figures["database"], sample.figures["connections"]
    lines += [
        f"  database     size {database['size MB']:,.1f} MB; task_run_history {database['task_run_history MB']:,.1f}"
        f" MB, {database['task_run_history rows']:,.0f} rows; dead rows"
        f" {sample.figures['vacuum']['task_run_history dead rows']:,.0f} after"
        f" {sample.figures['vacuum']['autovacuums']:,.0f} autovacuum(s)",
        "  connections  " + ", ".join(f"{name} {count:,.0f}" for name, count in connections.items()),
        "  queues       "
        + ", ".join(
            f"{name} {count:,.0f}"
            for name, count in sample.figures["queues"].items()
            if not name.startswith("memory")
        )
        + f"; queues' memory {sample.figures['queues']['memory MB (this vhost)']:.1f} MB",
        f"  retention    {interval.retention_runs} run(s) in the interval deleted {interval.retention_deleted:,}"
        f" run(s); last: {interval.retention_last or '-'}",
        f"  api          {len(interval.api_ms)} requests ({', '.join(API_PATHS)}): p50"
        f" {milliseconds(percentile(interval.api_ms, 0.5) if interval.api_ms else None)}, max"
        f" {milliseconds(max(interval.api_ms, default=None))}, failed {interval.api_failures}",
        "",
    ]
    return "\n".join(lines)


# --- Slopes and verdicts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """One series after the warm-up: its mean, its least-squares slope per hour, and for the database its
    highest in the middle and in the last third of the run; ``verdict`` is None where none is judged."""

    section: str
    name: str
    mean: float
    slope_per_hour: float
    verdict: str | None
    passed: bool = True


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``(seconds, value)`` points, per hour (0 for fewer than two points)."""
    if len(points) < 2 or len({at_s for at_s, _value in points}) < 2:
        return 0.0
    hours = [at_s / 3600 for at_s, _value in points]
    return statistics.linear_regression(hours, [value for _at_s, value in points]).slope


def series(samples: Sequence[Sample], section: str, after_s: float) -> dict[str, list[tuple[float, float]]]:
    """Each figure of ``section`` as ``(seconds, value)`` points from ``after_s`` on."""
    found: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        if sample.at_s >= after_s:
            for name, value in sample.figures.get(section, {}).items():
                found.setdefault(name, []).append((sample.at_s, value))
    return found


def flat_trend(section: str, name: str, points: list[tuple[float, float]], judged: bool) -> Trend:
    """Flat: growing by less than ``FLAT_FRACTION_PER_HOUR`` of the mean, or than the section's floor."""
    mean = statistics.fmean(value for _at_s, value in points)
    slope = slope_per_hour(points)
    span_h = max(1e-9, (points[-1][0] - points[0][0]) / 3600)
    allowed = max(
        FLAT_FRACTION_PER_HOUR * abs(mean), FLAT_FLOOR_PER_HOUR[section], FLAT_STEP[section] / span_h
    )
    if not judged:
        return Trend(section, name, mean, slope, "not judged")
    passed = slope <= allowed
    change = f"{points[0][1]:,.1f} -> {points[-1][1]:,.1f}"
    return Trend(
        section,
        name,
        mean,
        slope,
        f"{'flat' if passed else 'GROWS'} (allowed +{allowed:,.1f}/h; {change})",
        passed,
    )


def bounded_trend(name: str, points: list[tuple[float, float]], duration_s: float, judged: bool) -> Trend:
    """Bounded: the last third's highest at most ``BOUNDED_GROWTH`` above the middle third's."""
    mean = statistics.fmean(value for _at_s, value in points)
    slope = slope_per_hour(points)
    middle = [value for at_s, value in points if duration_s / 3 <= at_s < 2 * duration_s / 3]
    last = [value for at_s, value in points if at_s >= 2 * duration_s / 3]
    if not judged or not middle or not last:
        return Trend("database", name, mean, slope, "not judged")
    passed = max(last) <= (1 + BOUNDED_GROWTH) * max(middle)
    verdict = f"{'bounded' if passed else 'GROWS'} (highest: middle third {max(middle):,.1f}, last {max(last):,.1f})"
    last_points = [(at_s, value) for at_s, value in points if at_s >= 2 * duration_s / 3]
    return Trend(
        "database",
        name,
        mean,
        slope,
        f"{verdict}; last third's slope {slope_per_hour(last_points):+,.1f}/h",
        passed,
    )


def judgements(soak: Soak) -> tuple[list[Trend], list[str]]:
    """Every series' trend, and why a verdict is not judged (a run too short, retention not yet deleting)."""
    options = soak.options
    covered_s = soak.samples[-1].at_s if soak.samples else 0.0
    reasons = []
    long_enough = covered_s - options.warmup_s >= SHORTEST_JUDGED_S
    if not long_enough:
        reasons.append(
            f"flat and bounded are judged over at least {SHORTEST_JUDGED_S} s after the warm-up; this run"
            f" covered {max(0.0, covered_s - options.warmup_s):.0f} s"
        )
    # Retention deletes from its first send after the window has passed: before the middle third ends.
    retention_deletes = options.retention_s + SYSTEM_SLOT_S <= 2 * covered_s / 3
    if not retention_deletes:
        reasons.append(
            f"bounded needs retention to delete before the last third: {options.retention_s:.0f} s window + up to"
            f" {SYSTEM_SLOT_S} s to its next run is later than {2 * covered_s / 3:.0f} s"
        )
    trends = []
    for section in ("memory MB", "connections"):
        for name, points in series(soak.samples, section, options.warmup_s).items():
            trends.append(flat_trend(section, name, points, long_enough))
    for name, points in series(soak.samples, "database", options.warmup_s).items():
        trends.append(bounded_trend(name, points, covered_s, long_enough and retention_deletes))
    for section in ("vacuum", "queues"):
        for name, points in series(soak.samples, section, options.warmup_s).items():
            trends.append(
                Trend(section, name, statistics.fmean(v for _t, v in points), slope_per_hour(points), None)
            )
    measured = [interval for interval in soak.intervals if interval.start_s >= options.warmup_s]
    for name in ("p50", "p95", "p99", "max"):
        points = [
            (interval.start_s, interval.lateness_ms[name])
            for interval in measured
            if name in interval.lateness_ms
        ]
        if points:
            mean = statistics.fmean(value for _at_s, value in points)
            trends.append(Trend("lateness ms", name, mean, slope_per_hour(points), None))
    if measured:
        points = [(interval.start_s, interval.fires_per_s) for interval in measured]
        trends.append(
            Trend("load", "fires/s", statistics.fmean(v for _t, v in points), slope_per_hour(points), None)
        )
    return trends, reasons


def summary(soak: Soak, command: str) -> tuple[str, bool]:
    """The slopes and verdicts, and whether every judged verdict passed."""
    options = soak.options
    trends, reasons = judgements(soak)
    used = [sample for sample in soak.samples if sample.at_s >= options.warmup_s]
    lines = [
        f"{clock()} slopes per hour, least squares (statistics.linear_regression) over the {len(used)} samples"
        f" from {options.warmup_s:.0f} s on (the warm-up left out); lateness and load over the reports from then",
        f"  command: {command}",
        f"  flat: growing by less than {FLAT_FRACTION_PER_HOUR:.0%} of the mean an hour, or than"
        f" {FLAT_FLOOR_PER_HOUR['memory MB']:g} MB (memory) or {FLAT_FLOOR_PER_HOUR['connections']:g}"
        f" (connections, or one connection over the run) an hour; bounded: the last third's highest within {BOUNDED_GROWTH:.0%} of the middle"
        " third's, once retention deletes",
    ]
    lines += [f"  not judged: {reason}" for reason in reasons]
    width = max((len(trend.name) for trend in trends), default=10)
    section = ""
    for trend in trends:
        if trend.section != section:
            section = trend.section
            lines.append(f"  {section}")
        verdict = f"  {trend.verdict}" if trend.verdict else ""
        lines.append(
            f"    {trend.name:<{width}}  mean {trend.mean:12,.1f}  slope {trend.slope_per_hour:+12,.1f}/h{verdict}"
        )
    restarted = restarted_processes(soak)
    failures = [f"{trend.section}: {trend.name}" for trend in trends if not trend.passed]
    failures += [f"{name} was replaced (pid {was} -> {now})" for name, was, now in restarted]
    failures += [f"{name} exited" for name in sorted(set(soak.dead))]
    lines.append(f"  processes: {'none exited or was replaced' if not restarted and not soak.dead else ''}")
    lines += [f"    {name}: pid {was} -> {now}" for name, was, now in restarted]
    passed = not failures
    verdict = "PASS" if passed else f"FAIL: {'; '.join(failures)}"
    lines.append(f"verdict: {verdict}{' (interrupted)' if soak.interrupted else ''}")
    return "\n".join(lines), passed


def restarted_processes(soak: Soak) -> list[tuple[str, int, int]]:
    """Processes whose pid changed between the first sample and the last (a crash and a restart)."""
    if not soak.samples:
        return []
    first, last = soak.samples[0].pids, soak.samples[-1].pids
    return [(name, pid, last[name]) for name, pid in first.items() if name in last and last[name] != pid]


# --- The command ------------------------------------------------------------------------------------------------


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the database and vhost are made: once ``Stack.create`` returns, the
    ``finally`` that removes them is in force, and a held signal interrupts from there."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a soak as Ctrl-C does: summary, then clean-up


def parse_options(argv: Sequence[str] | None) -> SoakOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=200, help="fires a second (default 200)")
    parser.add_argument("--duration", type=float, default=3600, help="seconds of load (default 3600)")
    parser.add_argument(
        "--report-every", type=float, default=300, help="seconds between reports (default 300)"
    )
    parser.add_argument("--warmup", type=float, help="seconds left out of the slopes (default: one report)")
    parser.add_argument(
        "--retention",
        type=float,
        help=f"HISTORY_RETENTION_DAYS as seconds (default: {RETENTION_INTERVALS} reports)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE['duration']} s at {SMOKE['rate']} fires/s, a report every {SMOKE['report_every']} s",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    if args.rate < 1 or args.report_every < SHORTEST_SAMPLE_GAP_S or args.duration < args.report_every:
        parser.error(
            f"--rate at least 1, --report-every at least {SHORTEST_SAMPLE_GAP_S}, --duration at least one report"
        )
    return SoakOptions(
        rate=args.rate,
        duration_s=round(args.duration / args.report_every) * args.report_every,
        report_every_s=args.report_every,
        warmup_s=args.report_every if args.warmup is None else args.warmup,
        retention_s=RETENTION_INTERVALS * args.report_every if args.retention is None else args.retention,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    command = shlex.join(
        [Path(sys.executable).name, "-m", "bench.soak", *(sys.argv[1:] if argv is None else argv)]
    )
    signal.signal(signal.SIGTERM, interrupt)
    with signals_held():
        stack = Stack.create(history_retention_days=options.retention_days)
    print(
        f"{clock()} {command}\n"
        f"  {options.rate} fires/s for {options.duration_s:.0f} s ({options.reports} reports every"
        f" {options.report_every_s:.0f} s, {options.samples_per_report} samples each); warm-up {options.warmup_s:.0f} s\n"
        f"  {options.rate * INTERVAL_S:,} interval schedules every {INTERVAL_S} s, slots spread evenly; no-op handlers;"
        " 2 worker pods, a beat, an API (2 gunicorn workers), as deployed\n"
        f"  retention: HISTORY_RETENTION_DAYS={options.retention_days:.6g} ({options.retention_s:.0f} s); the"
        f" soak sends the {RETENTION_TASK} system message itself at most once a minute, as a beat with a"
        " `* * * * *` cron would (the deployed cron runs hourly at :17: in an hour's soak it would delete nothing)\n"
        f"  database and vhost {stack.database} (removed at the end); settings: {settings_line(stack)}\n"
        f"  machine: {machine()}\n",
        flush=True,
    )
    autovacuum = StandInAutovacuum(stack).start()
    if autovacuum.needed:
        print(
            f"  vacuum: the server runs with autovacuum off; the soak vacuums {', '.join(CHURNING_TABLES)} itself"
            f" every {VACUUM_EVERY_S:.0f} s, as autovacuum would\n",
            flush=True,
        )
    soak = Soak(stack, options)
    try:
        port, began = soak.start()
        soak.measure(port, began)
    except KeyboardInterrupt:
        soak.interrupted = True
    finally:
        # A second Ctrl-C, or a SIGTERM, must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        soak.show_logs_of_dead_processes()
        autovacuum.stop()
        stack.close()
        print(
            f"{clock()} removed database and vhost {stack.database}, its processes and folder\n", flush=True
        )
    text, passed = summary(soak, command)
    print(text, flush=True)
    if soak.interrupted:
        return 130
    return 0 if passed else 1


def settings_line(stack: Stack) -> str:
    settings = stack.settings
    return ", ".join(
        f"{name.upper()}={getattr(settings, name)}"
        for name in (
            "worker_processes",
            "worker_threads",
            "tick_threads",
            "tick_budget",
            "tick_horizon_s",
            "tick_bucket_ms",
            "worker_timeout_ms",
            "gunicorn_workers",
            "log_level",
        )
    )


if __name__ == "__main__":
    sys.exit(main())
