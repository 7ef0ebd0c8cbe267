"""Prometheus metrics read from the database at scrape time, so every API replica reports the same truth."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from shared.db import utcnow
from shared.models import RunStatus, TaskRunHistory, TaskSchedule, TickInFlight
from shared.runtime import Runtime


class SchedulerCollector(Collector):
    """Schedules by state, unfinished runs by status, chains overdue past the pump's grace period, and ticks
    in flight (the number that must stay below the workers' delay prefetch)."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
                    select(func.count()).where(
                        TaskSchedule.enabled, TaskSchedule.next_run_at < now - self.runtime.grace
                    )
                )
                or 0
            )
            ticks, slots = session.execute(
                select(func.count(), func.coalesce(func.sum(TickInFlight.slot_count), 0))
            ).one()
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
