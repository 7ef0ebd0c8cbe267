"""``cronwork ROLE`` (or ``python -m services ROLE``): the one entry point of every deployable.

Roles: ``api`` (gunicorn), ``worker`` (two Dramatiq CLI groups), ``beat`` (periodiq), ``migrate``,
``run`` (everything: separate processes against PostgreSQL and RabbitMQ, or one embedded process when
``DATABASE_URL``/``BROKER_URL`` are unset) and ``probe worker|beat`` (the container liveness check).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from shared.heartbeat import heartbeat_path, is_fresh
from shared.messaging import RUN_QUEUE, SYSTEM_QUEUE, TICK_QUEUE
from shared.settings import Settings
from shared.system_tasks import SYSTEM_TIMEZONE

WORKER_MODULE = "services.worker.actors"
SHUTDOWN_MARGIN_S = 5


def api_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "services.api.wsgi:app",
        "--bind",
        f"0.0.0.0:{settings.port}",
        "--workers",
        str(settings.gunicorn_workers),
        "--access-logfile",
        "-",
        "--graceful-timeout",
        "30",
        "--no-control-socket",  # it would write under $HOME, and the containers' root filesystem is read-only
    ]


SYSTEM_THREADS = 2  # the pump, retention and cleanup: a slow one never holds the other, nor any claim


def worker_commands(settings: Settings) -> list[list[str]]:
    """Three Dramatiq groups, so that no kind of work waits behind another: ticks (small, batched claims),
    the system crons (the pump, retention: long set-based work) and task handlers. Each drains its
    in-flight work on SIGTERM for up to the time limit."""
    dramatiq = [
        sys.executable,
        "-m",
        "dramatiq",
        WORKER_MODULE,
        "--worker-shutdown-timeout",
        str((settings.task_time_limit_s + SHUTDOWN_MARGIN_S) * 1000),
    ]
    return [
        [
            *dramatiq,
            "--queues",
            TICK_QUEUE,
            "--processes",
            "1",
            "--threads",
            str(settings.tick_threads),
        ],
        [*dramatiq, "--queues", SYSTEM_QUEUE, "--processes", "1", "--threads", str(SYSTEM_THREADS)],
        [
            *dramatiq,
            "--queues",
            RUN_QUEUE,
            "--processes",
            str(settings.worker_processes),
            "--threads",
            str(settings.worker_threads),
        ],
    ]


def beat_command() -> list[str]:
    # periodiq ships a console script only (no ``python -m periodiq``); it sits beside this interpreter.
    return [str(Path(sys.executable).parent / "periodiq"), "services.beat.main"]


def child_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # Due delayed messages are found on this poll; Dramatiq's 1 s default makes ticks up to 1 s late.
    env["dramatiq_worker_timeout"] = str(settings.worker_timeout_ms)
    # Room for every tick in flight in any one process, so a due tick never waits behind undue ones.
    env["dramatiq_delay_queue_prefetch"] = str(settings.tick_delay_prefetch)
    env["TZ"] = SYSTEM_TIMEZONE  # periodiq reads cron specs in the process's local zone
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def supervise(commands: Sequence[list[str]], env: dict[str, str]) -> int:
    """Run ``commands`` side by side; forward SIGTERM; when one exits, stop the rest (so the
    container restarts whole) and return the first exit code."""
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: object = None) -> None:
        # Once only: Dramatiq reads a second SIGTERM as "kill now" and would abandon its drain.
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # Handlers first: a SIGTERM arriving while the children start must still reach them.
    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C reaches the children directly (same process group); forwarding it too would be a second signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for command in commands:
        children.append(subprocess.Popen(command, env=env))
        if stopping:
            children[-1].send_signal(signal.SIGTERM)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    asked_to_stop = stopping
    first_exit = next(child.returncode for child in children if child.returncode is not None)
    stop(signal.SIGTERM)
    codes = [child.wait() for child in children]
    if asked_to_stop:  # a requested stop is a clean exit unless a child failed other than by our SIGTERM
        return next((code for code in codes if code not in (0, -signal.SIGTERM)), 0)
    return first_exit or 1  # a child died on its own: fail, so the container restarts whole


def exec_replacing_this_process(command: list[str], env: dict[str, str]) -> None:
    """Become ``command`` (same PID), so the container's signals reach gunicorn or periodiq directly."""
    os.execve(command[0], command, env)


def migrate(settings: Settings) -> int:
    from shared.db import upgrade_to_head

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin, every start
    upgrade_to_head(settings.sqlalchemy_url)
    return 0


def run_all(settings: Settings) -> int:
    """The whole system: embedded in one process, or api + worker + beat against the configured servers."""
    migrate(settings)
    if settings.is_embedded:
        from services.embedded import run_embedded

        return run_embedded(settings)
    return supervise(
        [api_command(settings), *worker_commands(settings), beat_command()], child_environment(settings)
    )


def probe(settings: Settings, role: str) -> int:
    path = heartbeat_path(settings.heartbeat_dir, role)
    if is_fresh(path):
        return 0
    print(f"{role} heartbeat {path} is missing or stale", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cronwork", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=["api", "worker", "beat", "migrate", "run", "probe"])
    parser.add_argument(
        "probe_role", nargs="?", choices=["worker", "beat"], help="with 'probe': whose heartbeat to check"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = child_environment(settings)
    if args.role == "api":
        exec_replacing_this_process(api_command(settings), env)
    if args.role == "worker":
        return supervise(worker_commands(settings), env)
    if args.role == "beat":
        exec_replacing_this_process(beat_command(), env)
    if args.role == "migrate":
        return migrate(settings)
    if args.role == "probe":
        if not args.probe_role:
            parser.error("probe needs a role: worker or beat")
        return probe(settings, args.probe_role)
    return run_all(settings)


if __name__ == "__main__":
    sys.exit(main())
