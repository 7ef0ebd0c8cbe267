"""The beat: periodiq sends the system crons declared in ``services.worker.actors``.

Run as ``periodiq services.beat.main`` (``cronwork beat`` does it, with ``TZ=UTC``: periodiq reads cron specs in
the process's local zone). Any number of beats may run: the worker claims each system slot in the database, so
duplicates, a restart inside the minute (periodiq fires at start-up when the minute matches) and redeliveries
all give one run per slot. Periodiq never catches up on slots it slept through; the next slot does the work.

Its liveness shows twice: the heartbeat file (``cronwork probe beat``) and, on ``BEAT_METRICS_PORT``,
``cronwork_beat_heartbeat_timestamp_seconds``: when periodiq's loop last sent a system cron (the pump's slot is
every minute, so a live beat moves it at least once a minute).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.worker.actors import broker, settings
from shared.heartbeat import Heartbeat, heartbeat_path

__all__ = ["broker"]
logger = logging.getLogger("cronwork.beat")


class LoopPulse(Middleware, Collector):
    """The last moment periodiq's loop was seen alive: start-up, then every system cron it sends. Served as a
    gauge read at scrape time (a custom collector: no multiprocess file, whatever the environment says)."""

    def __init__(self) -> None:
        self.last_alive = time.time()

    def after_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None
    ) -> None:
        """A system cron sent: the loop is alive."""
        self.last_alive = time.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauge."""
        yield GaugeMetricFamily(
            "cronwork_beat_heartbeat_timestamp_seconds",
            "When the beat's loop was last alive (it sends the pump every minute), in Unix seconds",
            value=self.last_alive,
        )


pulse = LoopPulse()
broker.add_middleware(pulse)
_registry = CollectorRegistry()
_registry.register(pulse)
try:
    start_http_server(settings.beat_metrics_port, registry=_registry)
except OSError as exc:  # a port already taken costs the gauge, not the beat
    logger.error("beat metrics not served: port %s: %s", settings.beat_metrics_port, exc)

# periodiq's SIGALRM loop owns the main thread; the heartbeat runs beside it.
heartbeat = Heartbeat(heartbeat_path(settings.heartbeat_dir, "beat")).start()
