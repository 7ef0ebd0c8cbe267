"""``cronwork ROLE`` (or ``python -m services ROLE``): the one entry point of every deployable.

Roles: ``api`` (gunicorn), ``worker`` (two Dramatiq CLI groups), ``beat`` (periodiq), ``migrate``,
``run`` (everything: separate processes against PostgreSQL and RabbitMQ, or one embedded process when
``DATABASE_URL``/``BROKER_URL`` are unset) and ``probe worker|beat`` (the container liveness check).

Commands: ``apply -f FILE [--source NAME] [--dry-run] [--prune]`` (make a file's schedules so, by their stable
keys), ``export [--source NAME] [-o FILE]`` (write schedules in that file's format) and ``rotate-secrets``
(re-encrypt every stored secret under the first of SECRET_KEYS). See docs/schedules-as-code.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.heartbeat import heartbeat_path, is_fresh
from shared.messaging import RUN_QUEUE, SYSTEM_QUEUE, TICK_QUEUE
from shared.observability import configure_logging
from shared.runtime import Runtime
from shared.settings import Settings
from shared.system_tasks import SYSTEM_TIMEZONE

WORKER_MODULE = "services.worker.actors"
SHUTDOWN_MARGIN_S = 5
# prometheus_client's multiprocess mode: each process writes its metrics to files in this directory, and the
# exposition sums them. Set before any process of the role imports prometheus_client.
METRICS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
logger = logging.getLogger("cronwork")


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
        # Its log format (LOG_FORMAT) and the hook that retires a dead worker's metrics.
        "--config",
        "python:services.api.gunicorn_config",
    ]


def api_environment(env: dict[str, str]) -> tuple[dict[str, str], Path | None]:
    """The API's environment: a metrics directory its gunicorn workers share (so /metrics sums them all), the
    one given in ``PROMETHEUS_MULTIPROC_DIR`` emptied of a previous run's files, else a fresh one. Returns the
    environment and the directory to remove when the API is done (None: the given one stays)."""
    given = env.get(METRICS_DIRECTORY)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return env, None
    fresh = Path(tempfile.mkdtemp(prefix="cronwork-api-metrics-"))
    return {**env, METRICS_DIRECTORY: str(fresh)}, fresh


def serve_worker_metrics(env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """Serve the metrics of every Dramatiq process of this pod on one port, Dramatiq's (``dramatiq_prom_host``,
    ``dramatiq_prom_port``, 9191), from this supervisor: the three groups write to one fresh directory, and
    none of them forks Dramatiq's own exposition server (three would want the same port). Returns the groups'
    environment and the directory, to be removed when they are done. A port already taken costs the metrics,
    not the worker."""
    from dramatiq.middleware.prometheus import HTTP_HOST, HTTP_PORT
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = Path(tempfile.mkdtemp(prefix="cronwork-worker-metrics-"))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    try:
        start_http_server(HTTP_PORT, HTTP_HOST, registry)
    except OSError as exc:
        logger.error("worker metrics not served: port %s: %s", HTTP_PORT, exc)
    return {**env, METRICS_DIRECTORY: str(directory), "dramatiq_prom_db": str(directory)}, directory


SYSTEM_THREADS = 2  # the pump, retention and cleanup: a slow one never holds the other, nor any claim


def worker_commands(settings: Settings) -> dict[str, list[str]]:
    """Three Dramatiq groups, by the queue each consumes, so that no kind of work waits behind another: ticks
    (small, batched claims), the system crons (the pump, retention: long set-based work) and task handlers.
    Each drains its in-flight work on SIGTERM for up to the time limit, then records what is still running as
    interrupted (``services.worker.actors.WorkerLifecycle``)."""
    dramatiq = [
        sys.executable,
        "-m",
        "dramatiq",
        WORKER_MODULE,
        "--worker-shutdown-timeout",
        str((settings.task_time_limit_s + SHUTDOWN_MARGIN_S) * 1000),
    ]
    return {
        TICK_QUEUE: [
            *dramatiq,
            "--queues",
            TICK_QUEUE,
            "--processes",
            "1",
            "--threads",
            str(settings.tick_threads),
        ],
        SYSTEM_QUEUE: [
            *dramatiq,
            "--queues",
            SYSTEM_QUEUE,
            "--processes",
            "1",
            "--threads",
            str(SYSTEM_THREADS),
        ],
        RUN_QUEUE: [
            *dramatiq,
            "--queues",
            RUN_QUEUE,
            "--processes",
            str(settings.worker_processes),
            "--threads",
            str(settings.worker_threads),
        ],
    }


def beat_command() -> list[str]:
    return [sys.executable, "-m", "services.beat"]


def child_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # Due delayed messages are found on this poll; Dramatiq's 1 s default makes ticks up to 1 s late.
    env["dramatiq_worker_timeout"] = str(settings.worker_timeout_ms)
    # Room for every tick in flight in any one process, so a due tick never waits behind undue ones.
    env["dramatiq_delay_queue_prefetch"] = str(settings.tick_delay_prefetch)
    env["TZ"] = SYSTEM_TIMEZONE  # periodiq reads cron specs in the process's local zone
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# What every child reads as "finish what you are doing, then exit" and as "stop now, recording what you cut
# short": gunicorn's graceful and quick shutdowns, a worker group's drain and the interruption its processes
# record, the beat's stop between sends and its immediate exit.
DRAIN = signal.SIGTERM
NOW = signal.SIGQUIT
# What a process manager or a terminal sends to stop this process: the first drains, a second stops now.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Child:
    """A process ``supervise`` runs: its name for the log, its command line and environment."""

    name: str
    command: list[str]
    env: dict[str, str]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, each before its own children (Linux's /proc)."""
    try:
        children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # it has exited
        return []
    return [below for child in children for below in (child, *descendants(child))]


def supervise(to_run: Sequence[Child]) -> int:
    """Run ``to_run`` side by side until they exit, and return how it went.

    The children share this process's group, so a stop sent to the group (Ctrl-C, many supervisors) or to every
    process (systemd) reaches them as well as this process, and a SIGKILL to the group takes them all; each
    child takes any number of copies of a stop as one (gunicorn and Dramatiq's worker processes ignore SIGINT;
    a worker process drains once however many SIGTERMs come). The first SIGTERM, SIGINT or SIGHUP here drains
    every child (``DRAIN``); a second, or a SIGQUIT, stops them now (``NOW``, to every process below this one).
    When a child exits unasked, the rest are drained and the exit code says it failed (so the container
    restarts whole)."""
    children: list[subprocess.Popen[bytes]] = []
    stop: signal.Signals | None = None

    def signal_child(child: subprocess.Popen[bytes], how: signal.Signals) -> None:
        # NOW reaches every process of the child: a worker group's forked processes record their runs.
        for pid in [child.pid, *descendants(child.pid)] if how == NOW else [child.pid]:
            with contextlib.suppress(ProcessLookupError):
                if pid != child.pid or child.poll() is None:
                    os.kill(pid, how)

    def stop_children(how: signal.Signals) -> None:
        nonlocal stop
        stop = how
        for child in children:
            signal_child(child, how)

    def request_stop(signum: int, _frame: object = None) -> None:
        how = NOW if signum == NOW or stop is not None else DRAIN
        if how == stop:
            return
        name = signal.Signals(signum).name
        if how == DRAIN:
            logger.warning("%s: draining (work in progress finishes); a second signal stops at once", name)
        else:
            logger.warning("%s: stopping at once, recording work in progress as interrupted", name)
        stop_children(how)

    # Handlers first: a stop arriving while the children start must still reach them.
    for signum in STOP_SIGNALS:
        signal.signal(signum, request_stop)
    # Started with NOW ignored, which exec keeps: Dramatiq's main process has no handler of its own for it,
    # and must outlive its worker processes while they record their interruption.
    signal.signal(NOW, signal.SIG_IGN)
    for wanted in to_run:
        children.append(subprocess.Popen(wanted.command, env=wanted.env))
        if stop is not None:
            signal_child(children[-1], stop)
    signal.signal(NOW, request_stop)
    while stop is None and all(child.poll() is None for child in children):
        time.sleep(0.2)
    if stop is None:
        first = next(n for n, child in enumerate(children) if child.returncode is not None)
        first_exit = children[first].returncode
        logger.error("%s exited with %s: stopping the rest", to_run[first].name, first_exit)
        stop_children(DRAIN)
        for child in children:
            child.wait()
        return first_exit or 1
    codes = [child.wait() for child in children]
    # A requested stop is a clean exit unless a child failed other than by the signals it was sent.
    failed = [
        (wanted.name, code)
        for wanted, code in zip(to_run, codes, strict=True)
        if code not in (0, -DRAIN, -NOW)
    ]
    for name, code in failed:
        logger.error("%s exited with %s while stopping", name, code)
    return failed[0][1] if failed else 0


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
    return supervise_roles(settings, ("api", "worker", "beat"))


def supervise_roles(settings: Settings, roles: Sequence[str]) -> int:
    """Run the processes of ``roles`` (api, worker, beat) under ``supervise``; remove the metrics directories
    made for them once they are done."""
    env = child_environment(settings)
    children: list[Child] = []
    made: list[Path] = []
    try:
        if "api" in roles:
            api_env, api_metrics = api_environment(env)
            made.extend([api_metrics] if api_metrics else [])
            children.append(Child("api", api_command(settings), api_env))
        if "worker" in roles:
            worker_env, worker_metrics = serve_worker_metrics(env)
            made.append(worker_metrics)
            children.extend(
                Child(f"worker ({queue})", command, worker_env)
                for queue, command in worker_commands(settings).items()
            )
        if "beat" in roles:
            children.append(Child("beat", beat_command(), env))
        return supervise(children)
    finally:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)


def probe(settings: Settings, role: str) -> int:
    path = heartbeat_path(settings.heartbeat_dir, role)
    if is_fresh(path):
        return 0
    print(f"{role} heartbeat {path} is missing or stale", file=sys.stderr)
    return 1


# --- Commands: schedules as code, secrets rotation -----------------------------------------------------------

COMMANDS = ("apply", "export", "rotate-secrets")


def command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cronwork", description="Schedules as code, and secrets rotation.")
    commands = parser.add_subparsers(dest="command", required=True)
    apply = commands.add_parser(
        "apply",
        help="create and update a file's schedules by their keys",
        description="Make the database hold a file's schedules, each by its stable key, in one go: every entry "
        "is checked first, and a file with a bad entry applies nothing. Prints the plan; exit 1 when the file "
        "is invalid (its errors on stderr).",
    )
    apply.add_argument("-f", "--file", required=True, help="the schedules file (YAML), or - for stdin")
    apply.add_argument(
        "--source", help="the file's source name (default: its 'source', else the file's stem)"
    )
    apply.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    apply.add_argument(
        "--prune", action="store_true", help="delete the source's schedules the file leaves out"
    )
    export = commands.add_parser("export", help="write schedules in the format apply reads")
    export.add_argument("--source", help="only this source's schedules (default: every schedule)")
    export.add_argument("-o", "--output", help="the file to write (default: stdout)")
    commands.add_parser(
        "rotate-secrets", help="re-encrypt every stored secret under the first of SECRET_KEYS"
    )
    return parser


def run_command(argv: Sequence[str]) -> int:
    args = command_parser().parse_args(argv)
    settings = Settings.from_env()
    # The commands say what they did themselves; the libraries' INFO lines (connections) would bury it.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from shared.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        if args.command == "apply":
            return apply_file(runtime, args.file, args.source, args.dry_run, args.prune)
        if args.command == "export":
            return export_file(runtime, args.source, args.output)
        return rotate_secrets(runtime)
    finally:
        runtime.broker.close()


def apply_file(runtime: Runtime, path: str, source: str | None, dry_run: bool, prune: bool) -> int:
    """``cronwork apply``: print the plan, then apply it unless it is invalid or a dry run."""
    from services.schedules_file import (
        entry_problems,
        plan_problems,
        problem_lines,
        read_schedules_file,
        render_plan,
    )
    from shared.schedules_as_code import ApplyFailed, apply_plan, holding_source, plan_changes

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    read = read_schedules_file(text, None if path == "-" else Path(path).stem, source)
    if read.source is None:
        print("\n".join(["invalid file: nothing applied", *problem_lines(read.errors)]), file=sys.stderr)
        return 1
    with holding_source(runtime, read.source):
        with runtime.sessions() as session:
            plan = plan_changes(runtime, session, read.source, read.entries, prune)
        print(render_plan(plan))
        errors, warnings = plan_problems(plan)
        errors = {**read.errors, **errors}
        if warnings:
            print("\n".join(["warning:", *problem_lines(warnings)]), file=sys.stderr)
        if errors:
            print("\n".join(["invalid file: nothing applied", *problem_lines(errors)]), file=sys.stderr)
            return 1
        if dry_run or not plan.changes_anything:
            print("dry run: nothing applied" if dry_run else "nothing to change")
            return 0
        try:
            with runtime.sessions() as session:
                applied = apply_plan(runtime, session, plan)
        except ApplyFailed as exc:
            lines = problem_lines(entry_problems(exc.key, exc.errors))
            print("\n".join([f"apply stopped after {exc.applied} changes:", *lines]), file=sys.stderr)
            return 1
    print(f"applied {applied} change{'s' if applied != 1 else ''}")
    return 0


def export_file(runtime: Runtime, source: str | None, output: str | None) -> int:
    """``cronwork export``: every schedule, or one source's, in the file format ``apply`` reads."""
    from services.schedules_file import common_source, schedules_document
    from shared.schedules_as_code import source_schedules

    with runtime.sessions() as session:
        schedules = source_schedules(session, source)
    written_source = source or common_source(schedules)
    document = schedules_document(runtime, schedules, written_source)
    if output:
        Path(output).write_text(document)
        print(f"exported {len(schedules)} schedules to {output}", file=sys.stderr)
    else:
        sys.stdout.write(document)
    if schedules and written_source is None:
        print(
            "note: these schedules belong to no source, or to several: applying this file creates them anew "
            "under its source (export --source NAME writes one source's schedules as they are kept)",
            file=sys.stderr,
        )
    return 0


def rotate_secrets(runtime: Runtime) -> int:
    """``cronwork rotate-secrets``: say how many values were re-encrypted, and what could not be."""
    from shared.secret_rotation import rotate_stored_secrets
    from shared.secrets import SecretError

    try:
        rotation = rotate_stored_secrets(runtime)
    except SecretError as exc:
        print(f"cannot rotate: {exc}", file=sys.stderr)
        return 1
    print(
        f"re-encrypted {rotation.rotated_values} secret value(s) in {rotation.rotated_schedules} schedule(s) "
        f"under the first of SECRET_KEYS; {rotation.current_values} already were"
    )
    for problem in rotation.problems:
        print(problem, file=sys.stderr)
    return 1 if rotation.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return run_command(argv)
    parser = argparse.ArgumentParser(
        prog="cronwork", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=["api", "worker", "beat", "migrate", "run", "probe"])
    parser.add_argument(
        "probe_role", nargs="?", choices=["worker", "beat"], help="with 'probe': whose heartbeat to check"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings)
    if args.role in ("api", "worker"):
        return supervise_roles(settings, (args.role,))
    if args.role == "beat":
        # Become the beat (same PID): it is one process, and handles its stop signals itself.
        command = beat_command()
        os.execve(command[0], command, child_environment(settings))
    if args.role == "migrate":
        return migrate(settings)
    if args.role == "probe":
        if not args.probe_role:
            parser.error("probe needs a role: worker or beat")
        return probe(settings, args.probe_role)
    return run_all(settings)


if __name__ == "__main__":
    sys.exit(main())
