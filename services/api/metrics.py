"""The API's Prometheus metrics: the scheduler's state, read from the database at scrape time (so every API
replica reports the same truth), and the API's own requests (``instrument``).

``docs/observability.md`` lists them, with the worker's and the beat's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pika
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from services.api.request_ids import request_id
from shared.db import utcnow
from shared.messaging import QUEUES
from shared.models import RunStatus, ScheduleHealth, TaskRunHistory, TaskSchedule, TickInFlight
from shared.observability import RUN_METRICS, log_context
from shared.runtime import Runtime
from shared.schedules import overdue_clause
from shared.system_tasks import offered_system_tasks

logger = logging.getLogger("cronwork.api.metrics")

# An enabled schedule whose last this many finished runs failed is failing repeatedly (an alert's threshold).
FAILING_REPEATEDLY = 3
# A scrape asks RabbitMQ for its queues' depths; it waits this long at most, then leaves the queues out.
QUEUE_QUESTION_TIMEOUT_S = 2.0


class SchedulerCollector(Collector):
    """Schedules by state, unfinished runs by status, chains overdue past the pump's grace period, ticks in
    flight (the number that must stay below the workers' delay prefetch), schedules failing repeatedly, the
    system crons' last runs, and the broker's queues."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with self.runtime.sessions() as session:
            by_enabled = dict(
                session.execute(
                    select(TaskSchedule.enabled, func.count()).group_by(TaskSchedule.enabled)
                ).all()
            )
            unfinished = dict(
                session.execute(
                    select(TaskRunHistory.status, func.count())
                    .where(TaskRunHistory.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)))
                    .group_by(TaskRunHistory.status)
                ).all()
            )
            overdue = (
                session.scalar(
                    select(func.count())
                    .select_from(TaskSchedule)
                    .where(overdue_clause(now, self.runtime.grace))
                )
                or 0
            )
            ticks, slots = session.execute(
                select(func.count(), func.coalesce(func.sum(TickInFlight.slot_count), 0))
            ).one()
            failing, longest_streak = session.execute(
                select(
                    func.count().filter(ScheduleHealth.failure_streak >= FAILING_REPEATEDLY),
                    func.coalesce(func.max(ScheduleHealth.failure_streak), 0),
                )
                .join(TaskSchedule, TaskSchedule.id == ScheduleHealth.schedule_id)
                .where(TaskSchedule.enabled)
            ).one()
            # Each system cron's newest finished run: a walk down its (system_task, id) index, past the one
            # running now at most.
            system_runs = {
                task.id: session.scalar(
                    select(TaskRunHistory.completed_at)
                    .where(TaskRunHistory.system_task == task.id, TaskRunHistory.completed_at.is_not(None))
                    .order_by(TaskRunHistory.id.desc())
                    .limit(1)
                )
                for task in offered_system_tasks(self.runtime.settings)
            }
        schedules = GaugeMetricFamily("cronwork_schedules", "User schedules", labels=["enabled"])
        for enabled in (True, False):
            schedules.add_metric([str(enabled).lower()], by_enabled.get(enabled, 0))
        yield schedules
        runs = GaugeMetricFamily("cronwork_runs_unfinished", "Runs queued or running", labels=["status"])
        for status in (RunStatus.QUEUED, RunStatus.RUNNING):
            runs.add_metric([status], unfinished.get(status, 0))
        yield runs
        yield GaugeMetricFamily(
            "cronwork_schedules_overdue",
            "Enabled schedules whose slot is overdue past the pump's grace period",
            value=overdue,
        )
        yield GaugeMetricFamily(
            "cronwork_ticks_in_flight",
            "Tick messages the broker holds (published, not yet claimed), fleet-wide; at most cronwork_tick_budget",
            value=ticks,
        )
        yield GaugeMetricFamily(
            "cronwork_slots_in_flight",
            "Slots carried by the ticks in flight (a tick carries a bucket's slots)",
            value=slots,
        )
        yield GaugeMetricFamily(
            "cronwork_tick_budget",
            "The most ticks in flight (TICK_BUDGET); slots beyond it wait, earliest first, for the pump",
            value=self.runtime.settings.tick_budget,
        )
        yield GaugeMetricFamily(
            "cronwork_schedules_failing_repeatedly",
            f"Enabled schedules whose last {FAILING_REPEATEDLY} or more finished runs failed",
            value=failing,
        )
        yield GaugeMetricFamily(
            "cronwork_schedule_failure_streak_max",
            "The longest failure streak of an enabled schedule (finished runs failed in a row)",
            value=longest_streak,
        )
        last_runs = GaugeMetricFamily(
            "cronwork_system_task_last_run_timestamp_seconds",
            "When each system cron's newest finished run finished (no sample: it never finished one)",
            labels=["task"],
        )
        for task_id, completed_at in system_runs.items():
            if completed_at is not None:
                last_runs.add_metric([task_id], completed_at.timestamp())
        yield last_runs
        yield from queue_metrics(self.runtime)


def queue_metrics(runtime: Runtime) -> Iterator[Metric]:
    """Each queue's messages and consumers, its delay queue's as ``<queue>.DQ``, asked of RabbitMQ by passive
    declares. Nothing on the in-process broker, or when RabbitMQ does not answer in time: a scrape that fails
    would hide every other metric."""
    if not runtime.settings.broker_url:
        return
    parameters = pika.URLParameters(runtime.settings.broker_url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = QUEUE_QUESTION_TIMEOUT_S
    parameters.connection_attempts = 1
    depths: dict[str, tuple[int, int]] = {}
    try:
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            for queue in QUEUES:
                for name in (queue, f"{queue}.DQ"):
                    declared = channel.queue_declare(name, passive=True).method
                    depths[name] = (declared.message_count, declared.consumer_count)
        finally:
            connection.close()
    except (
        Exception
    ) as exc:  # unreachable, or a queue not declared yet (a passive declare closes the channel)
        logger.warning("queue depths left out of the metrics: %s", exc)
        return
    messages = GaugeMetricFamily("cronwork_queue_messages", "Messages ready in a queue", labels=["queue"])
    consumers = GaugeMetricFamily("cronwork_queue_consumers", "Consumers of a queue", labels=["queue"])
    for name, (ready, consuming) in depths.items():
        messages.add_metric([name], ready)
        consumers.add_metric([name], consuming)
    yield messages
    yield consumers


# --- The API's own requests ----------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "cronwork_http_requests_total",
    "Requests answered, by method, route (the URL rule, or unmatched) and status",
    ["method", "route", "status"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "cronwork_http_request_duration_seconds",
    "How long requests took to answer, by method and route",
    ["method", "route"],
    registry=None,
)
HTTP_METRICS = (HTTP_REQUESTS, HTTP_DURATION)
UNMATCHED_ROUTE = "unmatched"  # a path no rule matches: never the raw path, whose values are unbounded


class ProcessesMetrics(Collector):
    """The API's request metrics summed over every gunicorn worker (prometheus_client's multiprocess files).
    Only the API's own: its processes import the run metrics too, but never count them (the workers do)."""

    def __init__(self, directory: str):
        self.processes = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        self.names = {metric._name for metric in HTTP_METRICS}

    def collect(self) -> Iterator[Metric]:
        """The request metrics of every process."""
        every: Iterator[Metric] = self.processes.collect()  # type: ignore[no-untyped-call]
        return (metric for metric in every if metric.name in self.names)


def instrument(app: Flask, registry: CollectorRegistry) -> None:
    """Count and time every request of ``app`` into ``registry`` (the one /metrics serves), and give every log
    line written while a request is answered its ``request_id``. Under gunicorn (``PROMETHEUS_MULTIPROC_DIR``,
    set by ``cronwork api``) the counts of all its processes; in one process (the embedded mode, the tests)
    this process's, and the worker's run metrics, which the embedded worker counts here too."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry.register(ProcessesMetrics(directory))
    else:
        for metric in (*HTTP_METRICS, *RUN_METRICS):
            registry.register(metric)

    def start_timing() -> None:
        g.request_started = time.perf_counter()
        g.log_context = log_context.set({"request_id": request_id()})

    def count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else UNMATCHED_ROUTE
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            HTTP_DURATION.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    def forget_request(_error: BaseException | None) -> None:
        token: Any = g.pop("log_context", None)
        if token is not None:
            log_context.reset(token)

    # First of all before_request functions, so that one answering early (a refused caller) is timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_timing)
    app.after_request(count)
    app.teardown_request(forget_request)
