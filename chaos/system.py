"""The system under test, as deployed: worker pods, beats and the API on the run's own servers.

Processes are started like ``bench.stack`` starts them (every setting by its environment variable, each in a
session of its own so that a whole pod can be killed at once), and killed for good by ``close``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.stack import Process, free_port, process_environment
from services.__main__ import descendants
from shared.db import upgrade_to_head
from shared.messaging import QUEUES
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings

# The Dramatiq groups of a pod, by the queue each consumes.
GROUP_QUEUES = {"ticks": "cronwork.ticks", "runs": "cronwork.runs", "system": "cronwork.system"}


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_tree(pids: list[int]) -> int:
    """SIGKILL ``pids``; returns how many were alive."""
    killed = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


@dataclass
class SystemUnderTest:
    """cronwork's processes against ``settings``' database and broker, with logs in ``directory``."""

    settings: Settings
    directory: Path
    runtime: Runtime
    pods: list[Process] = field(default_factory=list)
    beats: list[Process] = field(default_factory=list)
    api: Process | None = None
    api_port: int = 0
    retired: list[Process] = field(default_factory=list)  # killed or replaced, reaped at the end
    _started: int = 0

    @classmethod
    def create(cls, settings: Settings, directory: Path) -> SystemUnderTest:
        upgrade_to_head(settings.sqlalchemy_url)
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
        for queue in QUEUES:
            broker.declare_queue(queue, ensure=True)
        return cls(settings, directory, build_runtime(settings, broker=broker))

    def environment(self, **extra: str) -> dict[str, str]:
        """The environment of every process: each setting by its own variable, as ``bench.stack`` does."""
        return process_environment(self.settings, **extra)

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        self._started += 1
        log_path = self.directory / f"{self._started:03d}-{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return Process(name, popen, log_path)

    def start_pod(self) -> Process:
        """A worker pod (a supervisor and its three Dramatiq groups), metrics on a port of its own."""
        number = len(self.pods) + len(self.retired) + 1
        pod = self._start(
            f"pod{number}",
            [sys.executable, "-m", "services", "worker"],
            self.environment(
                HEARTBEAT_DIR=str(self.directory / f"pod{number}"), dramatiq_prom_port=str(free_port())
            ),
        )
        self.pods.append(pod)
        return pod

    def start_beat(self) -> Process:
        number = self._started + 1
        beat = self._start(
            "beat",
            [sys.executable, "-m", "services", "beat"],
            self.environment(
                HEARTBEAT_DIR=str(self.directory / f"beat{number}"), BEAT_METRICS_PORT=str(free_port())
            ),
        )
        self.beats.append(beat)
        return beat

    def start_api(self) -> Process:
        self.api_port = free_port()
        self.api = self._start(
            "api",
            [sys.executable, "-m", "services", "api"],
            self.environment(PORT=str(self.api_port), GUNICORN_WORKERS="2"),
        )
        return self.api

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/scheduler"

    def wait_for_pods(self, timeout_s: float = 120) -> None:
        """Until every pod's three groups have their worker processes up (or fail)."""
        deadline = time.monotonic() + timeout_s
        while not all(self.group_pids(pod, group) for pod in self.pods for group in GROUP_QUEUES):
            dead = [pod for pod in self.pods if pod.popen.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(pod.log()[-3000:] for pod in dead or self.pods)
                raise RuntimeError(f"worker pods did not start:\n{logs}")
            time.sleep(0.5)

    def group_pids(self, pod: Process, group: str) -> list[int]:
        """The processes of one Dramatiq group of ``pod``: its ``dramatiq`` main process and the worker
        processes it forked (empty until they are up)."""
        queue = GROUP_QUEUES[group]
        for child in descendants(pod.popen.pid):
            if f"--queues {queue}" in command_line(child):
                workers = descendants(child)
                return [child, *workers] if workers else []
        return []

    def kill_worker(self, pod_index: int, group: str) -> str:
        """SIGKILL one group of a live pod (its supervisor then stops the rest, as a container restarts whole)
        or the whole pod; start a replacement pod at once. Returns what was done."""
        live = [pod for pod in self.pods if pod.popen.poll() is None]
        if not live:
            self.start_pod()
            return "no live pod; started one"
        pod = live[pod_index % len(live)]
        pids = [pod.popen.pid, *descendants(pod.popen.pid)] if group == "pod" else self.group_pids(pod, group)
        killed = kill_tree(pids)
        self.pods.remove(pod)
        self.retired.append(pod)
        replacement = self.start_pod()
        return f"killed {killed} process(es) of {pod.name} ({group}); started {replacement.name}"

    def kill_beat(self) -> None:
        for beat in self.beats:
            kill_tree([beat.popen.pid, *descendants(beat.popen.pid)])
            self.retired.append(beat)
        self.beats.clear()

    def stop_beat(self, beat: Process) -> None:
        kill_tree([beat.popen.pid, *descendants(beat.popen.pid)])
        self.beats.remove(beat)
        self.retired.append(beat)

    def sql(self, statement: str, parameters: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.settings.database_url, autocommit=True, connect_timeout=5) as connection:
            cursor = connection.execute(statement, parameters)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def log_lines(self, needle: str) -> list[str]:
        """Every process's log lines that contain ``needle`` as a whole word, each after its log's name."""
        pattern = re.compile(rf"{re.escape(needle)}\b")
        return [
            f"{process.name}: {line}"
            for process in self._every()
            for line in process.log().splitlines()
            if pattern.search(line)
        ]

    def _every(self) -> list[Process]:
        return [*self.pods, *self.beats, *self.retired, *([self.api] if self.api else [])]

    def tracebacks(self) -> int:
        """How many tracebacks the processes logged (reported, not judged: faults make some)."""
        return sum(process.log().count("Traceback") for process in self._every())

    def close(self) -> None:
        """Kill every process for good (the data is thrown away: no drain is waited for)."""
        every = self._every()
        for process in every:
            kill_tree([process.popen.pid, *descendants(process.popen.pid)])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)
        for process in every:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)
        with contextlib.suppress(Exception):
            self.runtime.publisher.close()
        with contextlib.suppress(Exception):
            self.runtime.broker.close()
        with contextlib.suppress(Exception):
            self.runtime.sessions.kw["bind"].dispose()
