"""Raw Dramatiq on the same broker and database: the rates cronwork is measured against."""

from __future__ import annotations

import sys
import time
from typing import Any

import dramatiq
import pika

from bench.stack import Process, Stack
from shared.messaging import Outgoing

PUBLISH_BATCH = 500
RAW_QUEUE = "raw"
COUNTER_ROWS = 1000


def start_raw_worker(stack: Stack, processes: int, threads: int) -> Process:
    worker = stack.start(
        "raw-dramatiq",
        [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.raw_actors",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ],
        stack.environment(
            BENCH_BROKER_URL=stack.settings.broker_url,
            BENCH_DATABASE_URL=stack.settings.database_url,
            dramatiq_worker_timeout=str(stack.settings.worker_timeout_ms),
        ),
    )
    deadline = time.monotonic() + 60
    while worker.log().count("is ready for action") < processes:
        if time.monotonic() > deadline or worker.popen.poll() is not None:
            raise SystemExit(f"raw dramatiq did not start:\n{worker.log()}")
        time.sleep(0.1)
    return worker


def enqueue(stack: Stack, actor: str, count: int, delay_ms: int | None = None) -> None:
    stack.runtime.broker.declare_queue(RAW_QUEUE, ensure=True)
    messages = [
        Outgoing(
            dramatiq.Message(queue_name=RAW_QUEUE, actor_name=actor, args=(n,), kwargs={}, options={}),
            delay_ms,
        )
        for n in range(count)
    ]
    for start in range(0, count, PUBLISH_BATCH):
        stack.runtime.publisher.publish(messages[start : start + PUBLISH_BATCH])


def ready_count(stack: Stack, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(stack.settings.broker_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def rate(stack: Stack, actor: str, count: int, processes: int, threads: int) -> float:
    """Messages per second that raw Dramatiq drains from a queue holding ``count`` of them."""
    stack.sql(
        "CREATE TABLE IF NOT EXISTS raw_counter (id int PRIMARY KEY, hits bigint NOT NULL DEFAULT 0);"
        f" INSERT INTO raw_counter SELECT n, 0 FROM generate_series(0, {COUNTER_ROWS - 1}) n ON CONFLICT DO NOTHING"
    )
    enqueue(stack, actor, count)
    worker = start_raw_worker(stack, processes, threads)
    try:
        head = PUBLISH_BATCH  # the clock starts once consumption is under way, not at process start-up
        started = finished = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            left = ready_count(stack, RAW_QUEUE)
            now = time.monotonic()
            if started is None and left <= count - head:
                started = now
            if left == 0:
                finished = now
                break
            time.sleep(0.02)
        assert started is not None and finished is not None, "raw dramatiq never drained its queue"
        return (count - head) / (finished - started)
    finally:
        stack.stop(worker)


def delayed_burst(stack: Stack, count: int, processes: int, threads: int) -> dict[str, Any]:
    """Seconds until raw Dramatiq has run ``count`` no-op messages that all fell due at the same instant."""
    worker = start_raw_worker(stack, processes, threads)
    try:
        due_in_s = 10.0  # long enough to publish them all first
        enqueue(stack, "noop", count, delay_ms=int(due_in_s * 1000))
        due = time.monotonic() + due_in_s
        deadline = due + 120
        while time.monotonic() < deadline:
            depths = stack.queue_depths()
            left = sum(sum(depths.get(name, (0, 0))) for name in (RAW_QUEUE, f"{RAW_QUEUE}.DQ"))
            if left == 0 and time.monotonic() > due:
                return {"messages": count, "all_run_s": round(time.monotonic() - due, 2)}
            time.sleep(0.2)
        return {"messages": count, "all_run_s": None}
    finally:
        stack.stop(worker)
