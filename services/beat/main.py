"""The beat: periodiq sends the system crons declared in ``services.worker.actors``.

Run as ``python -m services.beat`` (``cronwork beat`` does it, with ``TZ=UTC``: periodiq reads cron specs in
the process's local zone). Any number of beats may run: the worker claims each system slot in the database, so
duplicates, a restart inside the minute (periodiq fires at start-up when the minute matches) and redeliveries
all give one run per slot. Periodiq never catches up on slots it slept through; the next slot does the work.

Its liveness shows twice: the heartbeat file (``cronwork probe beat``) and, on ``BEAT_METRICS_PORT``,
``cronwork_beat_heartbeat_timestamp_seconds``: when periodiq's loop last sent a system cron (the pump's slot is
every minute, so a live beat moves it at least once a minute).
"""

from __future__ import annotations

import logging
import queue
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from periodiq import Scheduler
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.worker.actors import broker, settings
from shared.heartbeat import Heartbeat, heartbeat_path

__all__ = ["broker"]
STOP_POLL_S = 0.2  # how soon the loop sees a stop it was asked for
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
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


def run() -> int:
    """periodiq's scheduler over the system crons, as its ``periodiq`` command runs it, but stopping as process
    managers ask: the first SIGTERM, SIGINT or SIGHUP ends the loop after the send in hand (the next minute's
    pump heals what a stopped beat did not send); a second, or SIGQUIT, exits at once."""
    actors = [actor for actor in broker.actors.values() if "periodic" in actor.options]
    scheduler = Scheduler(actors=actors)
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        # A flag only: the handler runs on the main thread, maybe inside the queue's lock.
        nonlocal stopping
        if stopping or signum == signal.SIGQUIT:
            logger.warning("%s: stopping at once", signal.Signals(signum).name)
            for later in STOP_SIGNALS:  # a third, while the interpreter exits, changes nothing
                signal.signal(later, signal.SIG_IGN)
            raise SystemExit(0)
        logger.info("%s: stopping after the send in hand", signal.Signals(signum).name)
        stopping = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    logger.info(
        "beat sending %s", ", ".join(f"{actor.actor_name} ({actor.options['periodic']})" for actor in actors)
    )
    # As periodiq's command: started in the last seconds of a minute, begin with the next one.
    seconds_into_minute = time.time() % 60
    if seconds_into_minute > 55:
        next_minute = time.monotonic() + 60 - seconds_into_minute
        while not stopping and time.monotonic() < next_minute:
            time.sleep(STOP_POLL_S)
    if not stopping:
        scheduler.schedule()
    # periodiq's loop, polling the stop flag: its alarm handler queues each wake-up.
    while not stopping:
        try:
            scheduler.alarm_q.get(timeout=STOP_POLL_S)
        except queue.Empty:
            continue
        if not stopping:
            scheduler.schedule()
    signal.alarm(0)  # periodiq's next wake-up
    heartbeat.stop()
    logger.info("beat stopped")
    return 0
