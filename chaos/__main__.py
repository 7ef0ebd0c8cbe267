"""``python -m chaos [--seed N] [--duration S] [--schedules N] ...``: see ``chaos/__init__.py``.

Exit status 0 when the ledger holds (no duplicate, lost, stuck or off-grid slot, no abandoned run that no
injected fault explains, no run while its schedule was disabled or deleted, no attempt executed twice), 1 when
it does not, 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from chaos.faults import FaultInjector, InjectedFault
from chaos.ledger import check, read_entries, table
from chaos.load import close_disabled_periods, create_raced_pool, insert_steady_schedules, wait_for_api
from chaos.plan import FaultPlan, build_plan
from chaos.servers import ThrowawayPostgres, ThrowawayRabbitmq
from chaos.system import SystemUnderTest
from shared.settings import Settings

# Slots this close to the end of the load are left out of the check: their ticks may be claimed after it.
WINDOW_MARGIN_S = 2.0
# A run's lateness is measured only when no fault's window, stretched by this much (plus a pump's minute and
# grace for the faults whose lost ticks only the pump heals), fell between its slot and its start.
RECOVERY_S = 10.0
SETTLE_POLL_S = 2.0


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument(
        "--seed", type=int, default=int(env("CHAOS_SEED", "0")) or None, help="default: random"
    )
    parser.add_argument(
        "--duration", type=float, default=float(env("CHAOS_DURATION_S", "300")), help="load, s"
    )
    parser.add_argument(
        "--schedules", type=int, default=int(env("CHAOS_SCHEDULES", "300")), help="steady ones"
    )
    parser.add_argument("--cron-schedules", type=int, default=int(env("CHAOS_CRON_SCHEDULES", "10")))
    parser.add_argument(
        "--raced", type=int, default=int(env("CHAOS_RACED", "20")), help="the API races' pool"
    )
    parser.add_argument("--pods", type=int, default=int(env("CHAOS_PODS", "2")), help="worker pods")
    parser.add_argument("--slow-share", type=float, default=float(env("CHAOS_SLOW_SHARE", "0.08")))
    parser.add_argument(
        "--work-ms", type=int, default=int(env("CHAOS_WORK_MS", "1500")), help="the slow ones'"
    )
    parser.add_argument(
        "--faults-per-minute", type=float, default=float(env("CHAOS_FAULTS_PER_MINUTE", "12"))
    )
    parser.add_argument("--settle", type=float, default=float(env("CHAOS_SETTLE_S", "90")), help="at most, s")
    parser.add_argument("--log-level", default=env("CHAOS_LOG_LEVEL", "WARNING"), help="the processes'")
    parser.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the processes' logs here (default: removed)"
    )
    return parser.parse_args(argv)


def replay_command(arguments: argparse.Namespace, seed: int) -> str:
    chaos_args = (
        f"--seed {seed} --duration {arguments.duration:g} --schedules {arguments.schedules}"
        f" --cron-schedules {arguments.cron_schedules} --raced {arguments.raced} --pods {arguments.pods}"
        f" --slow-share {arguments.slow_share:g} --work-ms {arguments.work_ms}"
        f" --faults-per-minute {arguments.faults_per_minute:g}"
    )
    return f'make chaos CHAOS_ARGS="{chaos_args}"'


def say(line: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {line}", flush=True)


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same cleanup as Ctrl-C


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    seed = arguments.seed or random.SystemRandom().randrange(1, 1_000_000)
    plan = build_plan(seed, arguments.duration, arguments.faults_per_minute)
    print(f"chaos: seed {seed}; replay with:\n  {replay_command(arguments, seed)}")
    print(plan.table(), flush=True)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    directory = Path(tempfile.mkdtemp(prefix="cronwork-chaos-"))
    directory.chmod(0o755)  # the servers' users must reach their folders inside it
    postgres: ThrowawayPostgres | None = None
    rabbitmq: ThrowawayRabbitmq | None = None
    system: SystemUnderTest | None = None
    try:
        try:
            postgres, rabbitmq = start_servers(directory)
            system = start_system(arguments, postgres, rabbitmq, directory)
        except Exception as exc:
            say(f"could not set up the run: {exc}")
            return 2
        return run(arguments, plan, system, postgres, rabbitmq, directory)
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        if system is not None:
            system.close()
            if arguments.keep_logs:
                shutil.copytree(system.directory, arguments.keep_logs, dirs_exist_ok=True)
                say(f"kept the processes' logs in {arguments.keep_logs}")
        if rabbitmq is not None:
            rabbitmq.close()
        if postgres is not None:
            postgres.close()
        shutil.rmtree(directory, ignore_errors=True)
        say(f"removed the processes, the PostgreSQL cluster, the RabbitMQ node and {directory}")


def start_servers(directory: Path) -> tuple[ThrowawayPostgres, ThrowawayRabbitmq]:
    """Both servers, side by side (RabbitMQ takes several seconds to boot)."""
    run_id = uuid.uuid4().hex[:8]
    started: dict[str, object] = {}

    def start_rabbitmq() -> None:
        try:
            started["rabbitmq"] = ThrowawayRabbitmq.create(directory, run_id)
        except Exception as exc:
            started["error"] = exc

    booting = threading.Thread(target=start_rabbitmq)
    booting.start()
    postgres = ThrowawayPostgres.create(directory)
    booting.join()
    if "error" in started:
        postgres.close()
        raise started["error"]  # type: ignore[misc]
    rabbitmq = started["rabbitmq"]
    assert isinstance(rabbitmq, ThrowawayRabbitmq)
    say(f"PostgreSQL on :{postgres.port}, RabbitMQ node {rabbitmq.node} on :{rabbitmq.port}")
    return postgres, rabbitmq


def start_system(
    arguments: argparse.Namespace, postgres: ThrowawayPostgres, rabbitmq: ThrowawayRabbitmq, directory: Path
) -> SystemUnderTest:
    settings = Settings(
        database_url=postgres.create_database("cronwork"),
        broker_url=rabbitmq.url,
        demo_task_types="true",
        simulated_work_ms=arguments.work_ms,
        # Short leases and grace, so that what the faults break is healed within the settle phase.
        task_time_limit_s=6,
        run_lease_margin_s=2,
        pump_grace_s=5,
        retry_base_delay_ms=1000,
        worker_threads=8,
        log_level=arguments.log_level,
    )
    logs = directory / "logs"
    logs.mkdir()
    system = SystemUnderTest.create(settings, logs)
    for _ in range(arguments.pods):
        system.start_pod()
    system.start_beat()
    system.start_api()
    system.wait_for_pods()
    wait_for_api(system)
    say(f"{arguments.pods} worker pod(s), a beat and the API are up")
    return system


def run(
    arguments: argparse.Namespace,
    plan: FaultPlan,
    system: SystemUnderTest,
    postgres: ThrowawayPostgres,
    rabbitmq: ThrowawayRabbitmq,
    directory: Path,
) -> int:
    from shared import healing

    rng = random.Random(plan.seed)
    witness = directory / "witness.txt"
    witness.touch(mode=0o666)
    steady = insert_steady_schedules(
        system, arguments.schedules, arguments.cron_schedules, arguments.slow_share, witness, rng
    )
    raced = create_raced_pool(system, arguments.raced, directory / "raced.txt")
    say(f"armed {len(steady)} steady and {len(raced)} raced schedules; {healing.pump(system.runtime)}")

    injector = FaultInjector(plan, system, postgres, rabbitmq, raced)
    load_start = time.monotonic()
    say(f"load and faults for {arguments.duration:g} s:")
    injecting = threading.Thread(target=injector.run, args=(say,), daemon=True)
    injecting.start()
    time.sleep(max(0.0, arguments.duration - (time.monotonic() - load_start)))
    injecting.join(600)
    load_end = datetime.now(UTC)
    window_end = load_end - timedelta(seconds=WINDOW_MARGIN_S)
    say(f"load over after {time.monotonic() - load_start:.0f} s; settling (the harness runs the pump itself)")

    settled_in = settle(system, steady, load_end, window_end, arguments.settle, healing.pump)
    close_disabled_periods(raced, datetime.now(UTC))
    verdict = check(
        read_entries(system),
        steady,
        raced,
        injector.injected,
        window_end,
        load_end,
        lease=timedelta(seconds=system.settings.task_time_limit_s + system.settings.run_lease_margin_s),
        recovery=timedelta(seconds=RECOVERY_S),
        pump_recovery=timedelta(seconds=60 + system.settings.pump_grace_s + RECOVERY_S),
        witness=witness,
    )
    extra = {
        "steady schedules (cron)": f"{len(steady)} ({arguments.cron_schedules})",
        "raced schedules": len(raced),
        "settled in": f"{settled_in:.0f} s" if settled_in is not None else "did not",
        "tracebacks in logs": system.tracebacks(),
    }
    print(table(verdict, injector.injected, extra), flush=True)
    for failure in verdict.failures[:40]:
        print(f"  FAIL {failure}")
    for schedule_id, run_id in verdict.suspect_runs[:5]:
        print(evidence(system, schedule_id, run_id))
    for run_id in list(verdict.unexplained_abandons)[:5]:
        print(run_evidence(system, run_id, injector.injected, "abandoned for no fault"))
    if verdict.failures or arguments.keep_logs:
        for run_id, lateness in verdict.latest_runs(3):
            print(run_evidence(system, run_id, injector.injected, f"{lateness:.1f} s late"))
    for schedule_id, slot in verdict.twice_executed_slots[:5]:
        print(f"  evidence: the runs of schedule {schedule_id} slot {slot}:")
        for row in system.sql(
            "SELECT id, status, triggered_by, attempt, queued_at, started_at, completed_at, error_message"
            " FROM task_run_history WHERE schedule_id = %s AND scheduled_for = %s ORDER BY id",
            (schedule_id, slot),
        ):
            print(f"    {row}")
    if verdict.failures:
        print(
            f"chaos: {len(verdict.failures)} failure(s); replay with {replay_command(arguments, plan.seed)}"
        )
        return 1
    print("chaos: the ledger holds")
    return 0


def run_evidence(system: SystemUnderTest, run_id: int, faults: list[InjectedFault], why: str) -> str:
    """What the database, the fault log and the processes' logs say about one run: its row, the faults within
    a minute of it, and every log line that names it."""
    [row] = system.sql(
        "SELECT id, schedule_id, system_task, triggered_by, task_type, status, attempt, scheduled_for, queued_at,"
        " dispatched_at, started_at, completed_at, error_message FROM task_run_history WHERE id = %s",
        (run_id,),
    )
    names = ("id", "schedule", "system_task", "triggered_by", "task_type", "status", "attempt", "slot")
    times = ("queued", "dispatched", "started", "completed")
    lines = [
        f"  evidence ({why}): "
        + ", ".join(f"{name} {value}" for name, value in zip(names, row[:8], strict=True))
    ]
    lines.append(
        "    "
        + ", ".join(
            f"{name} {value and value.isoformat()}" for name, value in zip(times, row[8:12], strict=True)
        )
    )
    lines.append(f"    error {row[12]!r}")
    around = [moment for moment in (row[7], *row[8:12]) if moment is not None]
    near = [
        fault
        for fault in faults
        if fault.start <= max(around) + timedelta(seconds=60)
        and fault.end >= min(around) - timedelta(seconds=60)
    ]
    lines += [
        f"    fault {fault.planned.kind} {fault.start:%H:%M:%S.%f}–{fault.end:%H:%M:%S.%f}: {fault.outcome}"
        for fault in near
    ]
    lines += [f"    log {line}" for line in system.log_lines(f"run {run_id}")[:20]]
    return "\n".join(lines)


def evidence(system: SystemUnderTest, schedule_id: int, run_id: int) -> str:
    """What the database says around a run that started while its schedule was disabled or deleted: the run,
    and the schedule's audit events (enable, disable, update, delete) in the seconds around its start."""
    [run] = system.sql(
        "SELECT id, status, scheduled_for, queued_at, started_at, completed_at, attempt, error_message"
        " FROM task_run_history WHERE id = %s",
        (run_id,),
    )
    events = system.sql(
        "SELECT at, action, changes FROM audit_events WHERE schedule_id = %s"
        " AND at BETWEEN %s - interval '5 seconds' AND %s + interval '2 seconds' ORDER BY id",
        (schedule_id, run[4], run[4]),
    )
    lines = [f"  evidence: run {run}"]
    lines += [f"    audit {at.isoformat()} {action} {changes}" for at, action, changes in events]
    return "\n".join(lines)


def settle(
    system: SystemUnderTest,
    steady: list,  # type: ignore[type-arg]
    load_end: datetime,
    window_end: datetime,
    timeout_s: float,
    pump: Callable[..., str],
) -> float | None:
    """Wait (running the pump every few seconds, as the beat does every minute) until no run queued before the
    load ended is still queued or running and every steady chain has moved past the window. Returns how long
    it took (None: not within ``timeout_s``)."""
    started = time.monotonic()
    steady_ids = [schedule.id for schedule in steady]
    while time.monotonic() - started < timeout_s:
        try:
            pump(system.runtime)
            unfinished = system.sql(
                "SELECT count(*) FROM task_run_history WHERE status IN ('queued', 'running') AND queued_at < %s",
                (load_end,),
            )[0][0]
            behind = system.sql(
                "SELECT count(*) FROM task_schedules WHERE id = ANY(%s)"
                " AND (next_run_at IS NULL OR next_run_at <= %s)",
                (steady_ids, window_end),
            )[0][0]
        except Exception as exc:  # a server still recovering
            say(f"  settle: {type(exc).__name__}")
            unfinished = behind = -1
        if unfinished == 0 and behind == 0:
            return time.monotonic() - started
        time.sleep(SETTLE_POLL_S)
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
