"""Injecting the plan: each fault in a thread of its own at its planned moment, so faults overlap; each one's
real window ``[start, end]`` is recorded for the ledger check.

Faults on one server are serialised (a PostgreSQL restart waits for the previous one; a connection cut waits
for a node restart to finish), since ``pg_ctl`` and ``rabbitmqctl`` refuse to overlap with themselves.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pika
import psycopg
from dramatiq.errors import ConnectionClosed

from chaos.load import RacedSchedule, race_the_api
from chaos.plan import FaultKind, FaultPlan, PlannedFault
from chaos.servers import ThrowawayPostgres, ThrowawayRabbitmq
from chaos.system import SystemUnderTest
from shared.messaging import QUEUES, Outgoing, TickSlot, run_message, tick_message

# A fault whose server is down (another fault restarts it) is tried again this many times, this far apart.
RETRIES = 20
RETRY_PAUSE_S = 2.0


@dataclass
class InjectedFault:
    """A fault as it happened: its plan, its window, and what it did (or why it could not)."""

    planned: PlannedFault
    start: datetime
    end: datetime
    outcome: str
    applied: bool


class FaultInjector:
    """Runs ``plan`` against ``system`` on ``postgres`` and ``rabbitmq``; ``log`` prints one line per fault."""

    def __init__(
        self,
        plan: FaultPlan,
        system: SystemUnderTest,
        postgres: ThrowawayPostgres,
        rabbitmq: ThrowawayRabbitmq,
        raced_pool: list[RacedSchedule],
    ):
        self.plan = plan
        self.system = system
        self.postgres = postgres
        self.rabbitmq = rabbitmq
        self.raced_pool = raced_pool
        self.injected: list[InjectedFault] = []
        self._postgres_lock = threading.Lock()
        self._rabbitmq_lock = threading.Lock()
        self._processes_lock = threading.Lock()  # pods and beats are started and killed one at a time
        self._record_lock = threading.Lock()
        self._rng = random.Random(plan.seed + 1)
        self._started_at = 0.0

    def run(self, log: Callable[[str], None]) -> None:
        """Inject every fault at its moment (seconds after now); return when all have played out."""
        self._started_at = time.monotonic()
        self._log = log
        threads = []
        for fault in self.plan.faults:
            delay_s = fault.at_s - (time.monotonic() - self._started_at)
            if delay_s > 0:
                time.sleep(delay_s)
            thread = threading.Thread(target=self._inject, args=(fault,), name=str(fault.kind), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(300)

    def _inject(self, fault: PlannedFault) -> None:
        start = datetime.now(UTC)
        try:
            outcome, applied = self._apply_retrying(fault), True
        except Exception as exc:  # the fault could not be applied whole: said, and kept in its window
            outcome, applied = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:160], False
            if not isinstance(exc, OSError | pika.exceptions.AMQPError):
                outcome += " | " + traceback.format_exc().strip().splitlines()[-1][:100]
        end = datetime.now(UTC)
        with self._record_lock:
            self.injected.append(InjectedFault(fault, start, end, outcome, applied))
        elapsed = (end - start).total_seconds()
        self._log(
            f"  [{fault.at_s:6.1f} s] {fault.kind:<17} {fault.description:<22} {elapsed:5.1f} s  {outcome}"
        )

    def _apply_retrying(self, fault: PlannedFault) -> str:
        """Apply ``fault``; a server that another fault has down is waited for (a few tries), so that the
        faults overlap rather than cancel out."""
        for _ in range(RETRIES):
            try:
                return self._apply(fault)
            except (OSError, pika.exceptions.AMQPError, ConnectionClosed, psycopg.OperationalError):
                time.sleep(RETRY_PAUSE_S)
        return self._apply(fault)

    def _apply(self, fault: PlannedFault) -> str:
        kind = fault.kind
        if kind == FaultKind.WORKER_KILL:
            with self._processes_lock:
                return self.system.kill_worker(fault.pod, fault.target)
        if kind == FaultKind.BEAT_KILL:
            with self._processes_lock:
                self.system.kill_beat()
            time.sleep(fault.seconds)
            with self._processes_lock:
                self.system.start_beat()
            return "killed the beat, started another"
        if kind == FaultKind.SECOND_BEAT:
            with self._processes_lock:
                second = self.system.start_beat()
            time.sleep(fault.seconds)
            with self._processes_lock:
                if second in self.system.beats and len(self.system.beats) > 1:
                    self.system.stop_beat(second)
            return "ran a second beat"
        if kind == FaultKind.BROKER_CUT:
            with self._rabbitmq_lock:
                self.rabbitmq.ctl("close_all_connections", "chaos: broker_cut")
            return "closed every connection"
        if kind == FaultKind.QUEUE_PURGE:
            with self._rabbitmq_lock:
                return f"purged {self._purge_queues()} message(s)"
        if kind == FaultKind.POSTGRES_RESTART:
            with self._postgres_lock:
                self.postgres.restart(fault.target)
            return f"restarted (-m {fault.target})"
        if kind == FaultKind.RABBITMQ_RESTART:
            with self._rabbitmq_lock:
                self.rabbitmq.restart(fault.seconds)
            return "stopped and started the node"
        if kind == FaultKind.DUPLICATE_TICKS:
            return self._duplicate_ticks(fault.count)
        if kind == FaultKind.DUPLICATE_RUNS:
            return self._duplicate_runs(fault.count)
        if kind == FaultKind.API_RACES:
            counts = race_the_api(
                self.system, self.raced_pool, fault.seconds, random.Random(self._rng.random())
            )
            return ", ".join(f"{action} {n}" for action, n in sorted(counts.items())) or "no request answered"
        raise ValueError(kind)

    def _purge_queues(self) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(self.rabbitmq.url))
        purged = 0
        try:
            channel = connection.channel()
            for queue in QUEUES:
                for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                    purged += int(channel.queue_purge(name).method.message_count)
        finally:
            connection.close()
        return purged

    def _duplicate_ticks(self, count: int) -> str:
        """Copies of armed ticks, as a redelivery or a second publisher would make: same slot, same key."""
        armed = self.system.sql(
            "SELECT id, next_run_at, dedupe_key FROM task_schedules"
            " WHERE enabled AND next_run_at IS NOT NULL ORDER BY random() LIMIT %s",
            (count,),
        )
        now = datetime.now(UTC)
        copies = [
            Outgoing(
                tick_message(0, [TickSlot(schedule_id, slot, key)]),
                max(0, int((slot - now).total_seconds() * 1000)),
            )
            for schedule_id, slot, key in armed
        ]
        self.system.runtime.publisher.publish(copies)
        return f"published {len(copies)} tick copies"

    def _duplicate_runs(self, count: int) -> str:
        """The run message again for recent runs, queued, running or finished."""
        recent = self.system.sql(
            "SELECT id FROM (SELECT id FROM task_run_history WHERE schedule_id IS NOT NULL"
            " ORDER BY id DESC LIMIT 500) AS newest ORDER BY random() LIMIT %s",
            (count,),
        )
        limit_s = self.system.settings.task_time_limit_s
        self.system.runtime.publisher.publish(
            [Outgoing(run_message(run_id, limit_s)) for (run_id,) in recent]
        )
        return f"published {len(recent)} run messages again"
