"""The load: steady schedules that are never touched (every slot of theirs is checked), and a raced pool that
the API races edit, disable, delete and Run Now against their ticks."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests

from chaos.system import SystemUnderTest

EVERY_MINUTE = "* * * * *"
SLOW_TASK_TYPE = "report_publish"  # a demo type: sleeps SIMULATED_WORK_MS, so SIGKILLs land mid-run
FAST_TASK_TYPE = "example_append_line"  # the example plugin: appends a line, a witness of each execution


@dataclass(frozen=True)
class SteadySchedule:
    """A schedule no fault edits: its chain is ``first_slot + k × interval`` (or every minute, for a cron)."""

    id: int
    first_slot: datetime
    interval: timedelta  # a minute for the cron schedules
    is_cron: bool

    def slots_until(self, end: datetime) -> list[datetime]:
        count = int((end - self.first_slot) / self.interval) + 1 if end >= self.first_slot else 0
        return [self.first_slot + k * self.interval for k in range(count)]


def witness_line(schedule_id: int) -> str:
    """The line the fast task type appends: which schedule, slot and attempt ran."""
    return f"{schedule_id} {{scheduledFor}} {{attempt}}"


def insert_steady_schedules(
    system: SystemUnderTest, count: int, cron_count: int, slow_share: float, witness: Path, rng: random.Random
) -> list[SteadySchedule]:
    """``count`` interval schedules at 1 to 2 s (a ``slow_share`` of them doing simulated work) and
    ``cron_count`` ``* * * * *`` schedules, straight into the table as ``bench.stack.insert_schedules`` does;
    the first slots start in a few seconds, spread over the interval."""
    now = datetime.now(UTC).replace(microsecond=0)
    next_minute = now.replace(second=0) + timedelta(minutes=1)
    rows: list[tuple[str | None, int | None, datetime, str]] = []
    for _ in range(count):
        interval_ms = rng.choice((1000, 1500, 2000))
        first = now + timedelta(seconds=4, milliseconds=rng.randrange(interval_ms))
        rows.append(
            (None, interval_ms, first, SLOW_TASK_TYPE if rng.random() < slow_share else FAST_TASK_TYPE)
        )
    rows += [(EVERY_MINUTE, None, next_minute, FAST_TASK_TYPE) for _ in range(cron_count)]
    columns = (
        "name, task_type, schedule_type, cron_expression, interval_ms, timezone, enabled, config, created_by,"
        " created_at, updated_at, next_run_at, dedupe_key, version"
    )
    with psycopg.connect(system.settings.database_url) as connection:
        first_id = int(
            connection.execute("SELECT coalesce(max(id), 0) + 1 FROM task_schedules").fetchone()[0]
        )  # type: ignore[index]
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY task_schedules ({columns}) FROM STDIN") as copy,
        ):
            for n, (cron, interval_ms, first, task_type) in enumerate(rows):
                config = (
                    {"reportId": "compliance-weekly"}
                    if task_type == SLOW_TASK_TYPE
                    else {"path": str(witness), "line": witness_line(first_id + n)}
                )
                copy.write_row(
                    (
                        f"steady {n}",
                        task_type,
                        "cron" if cron else "interval",
                        cron,
                        interval_ms,
                        "UTC",
                        True,
                        json.dumps(config),
                        "chaos",
                        now,
                        now,
                        first,
                        uuid.uuid4().hex,
                        1,
                    )
                )
    ids = [
        row[0] for row in system.sql("SELECT id FROM task_schedules WHERE created_by = 'chaos' ORDER BY id")
    ]
    assert ids == list(range(first_id, first_id + len(rows))), "COPY gives consecutive ids"
    return [
        SteadySchedule(
            schedule_id,
            first,
            timedelta(milliseconds=interval_ms) if interval_ms else timedelta(minutes=1),
            cron is not None,
        )
        for schedule_id, (cron, interval_ms, first, _task_type) in zip(ids, rows, strict=True)
    ]


@dataclass
class RacedSchedule:
    """A schedule of the raced pool, and what the races did to it, with the harness's clock: the periods it was
    disabled (from the disable's answer to the enable's request) and when its delete was answered."""

    id: int
    disabled_since: datetime | None = None
    disabled_periods: list[tuple[datetime, datetime]] = field(default_factory=list)
    deleted_at: datetime | None = None
    unverifiable: bool = False  # a toggle's outcome could not be learnt: its periods are unknown
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_raced_pool(system: SystemUnderTest, count: int, witness: Path) -> list[RacedSchedule]:
    """``count`` interval schedules created through the API, as a client would."""
    pool = []
    for n in range(count):
        response = requests.post(
            f"{system.api_url}/tasks",
            json={
                "name": f"raced {n}",
                "taskType": FAST_TASK_TYPE,
                "scheduleType": "interval",
                "intervalMs": 1000,
                "config": {"path": str(witness), "line": "raced {scheduledFor} {attempt}"},
            },
            timeout=30,
        )
        response.raise_for_status()
        pool.append(RacedSchedule(int(response.json()["id"])))
    return pool


def wait_for_api(system: SystemUnderTest, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{system.api_url}/task-types", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or (system.api and system.api.popen.poll() is not None):
            raise RuntimeError(f"the API did not start:\n{system.api.log() if system.api else ''}")
        time.sleep(0.3)


def race_the_api(
    system: SystemUnderTest, pool: list[RacedSchedule], seconds: float, rng: random.Random
) -> dict[str, int]:
    """For ``seconds``, three clients at once: change intervals, disable and enable, Run Now, and (rarely)
    delete, each against a random schedule of the pool. Returns how many of each were answered 2xx."""
    counts: dict[str, int] = {}
    counts_lock = threading.Lock()
    deadline = time.monotonic() + seconds
    seeds = [rng.randrange(2**32) for _ in range(3)]

    def client(seed: int) -> None:
        local = random.Random(seed)
        session = requests.Session()
        while time.monotonic() < deadline:
            schedule = local.choice(pool)
            action = local.choices(("interval", "toggle", "run_now", "delete"), weights=(40, 35, 22, 3))[0]
            with schedule.lock:  # one request per schedule at a time, so its recorded periods are exact
                if schedule.deleted_at is not None:
                    continue
                done = _race_one(system, session, schedule, action, local)
            if done:
                with counts_lock:
                    counts[done] = counts.get(done, 0) + 1
            time.sleep(local.uniform(0, 0.05))

    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    return counts


def _race_one(
    system: SystemUnderTest,
    session: requests.Session,
    schedule: RacedSchedule,
    action: str,
    rng: random.Random,
) -> str | None:
    url = f"{system.api_url}/tasks/{schedule.id}"
    try:
        if action == "interval":
            response = session.put(url, json={"intervalMs": rng.choice((1000, 1500, 2000))}, timeout=30)
        elif action == "run_now":
            response = session.post(f"{url}/run", json={}, timeout=30)
        elif action == "delete":
            response = session.delete(url, timeout=30)
            if response.ok:
                schedule.deleted_at = datetime.now(UTC)
        else:
            enable = schedule.disabled_since is not None
            requested_at = datetime.now(UTC)
            response = session.put(url, json={"enabled": enable}, timeout=30)
            if response.ok and enable:
                assert schedule.disabled_since is not None
                schedule.disabled_periods.append((schedule.disabled_since, requested_at))
                schedule.disabled_since = None
            elif response.ok:
                schedule.disabled_since = datetime.now(UTC)
            action = "enable" if enable else "disable"
    except requests.RequestException:
        response = None  # the API lost a server for a moment (a restart): a fault, not a failure
    if response is not None and response.ok:
        return action
    if action in ("enable", "disable"):
        _learn_enabled(session, url, schedule)
    return f"{action} unanswered"


def _learn_enabled(session: requests.Session, url: str, schedule: RacedSchedule) -> None:
    """After a toggle whose answer was lost (it may have committed all the same), read the schedule until the
    API answers; a change is dated from that answer, the latest moment it can have happened. A schedule the API
    keeps silent about is no longer checked for runs while disabled."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            response = session.get(url, timeout=10)
        except requests.RequestException:
            time.sleep(1)
            continue
        if response.status_code == 404:
            schedule.deleted_at = schedule.deleted_at or datetime.now(UTC)
            return
        if response.ok:
            enabled = bool(response.json()["enabled"])
            if enabled and schedule.disabled_since is not None:
                schedule.disabled_since = None  # enabled at some moment since: that period is not checked
            elif not enabled and schedule.disabled_since is None:
                schedule.disabled_since = datetime.now(UTC)
            return
        time.sleep(1)
    schedule.unverifiable = True


def close_disabled_periods(pool: list[RacedSchedule], until: datetime) -> None:
    """Schedules still disabled at the end: disabled until ``until``."""
    for schedule in pool:
        if schedule.disabled_since is not None:
            schedule.disabled_periods.append((schedule.disabled_since, until))
            schedule.disabled_since = None


def api_request_json(system: SystemUnderTest, path: str) -> Any:
    return requests.get(f"{system.api_url}{path}", timeout=10).json()
