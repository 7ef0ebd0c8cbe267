"""The embedded mode: API, worker and beat in one process, on SQLite and Dramatiq's in-memory broker.

For a newcomer's first look (``make run`` with nothing configured), not for production: one process is one
point of failure, and the in-memory broker forgets everything on exit (it is all published again on the next start).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime

from dramatiq import Worker
from werkzeug.serving import make_server

from services.__main__ import SHUTDOWN_MARGIN_S, SYSTEM_THREADS
from shared.db import utcnow
from shared.settings import Settings

logger = logging.getLogger("cronwork.embedded")


def drive_system_tasks(stopped: threading.Event) -> None:
    """The embedded beat: periodiq needs the main thread (SIGALRM), so send the same registry's crons here."""
    from services.worker.actors import settings, system_actors
    from shared.system_tasks import offered_system_tasks

    upcoming = {task.id: task.upcoming(utcnow()) for task in offered_system_tasks(settings)}
    due: dict[str, datetime] = {task_id: next(slots) for task_id, slots in upcoming.items()}
    while not stopped.is_set():
        task_id = min(due, key=due.__getitem__)
        wait_s = (due[task_id] - utcnow()).total_seconds()
        if wait_s > 0:
            stopped.wait(min(wait_s, 1.0))
            continue
        system_actors[task_id].send_with_options(scheduled_at=due[task_id].isoformat())
        due[task_id] = next(upcoming[task_id])


def run_embedded(settings: Settings) -> int:
    from services.api.app import create_app
    from services.worker.actors import runtime, stop_now
    from shared.healing import republish_after_broker_loss

    republish_after_broker_loss(runtime)  # the in-memory broker starts empty
    worker = Worker(
        runtime.broker,
        worker_threads=settings.worker_threads + settings.tick_threads + SYSTEM_THREADS,
        worker_timeout=settings.worker_timeout_ms,
    )
    worker.start()
    stopped = threading.Event()
    beat = threading.Thread(target=drive_system_tasks, args=(stopped,), name="embedded-beat", daemon=True)
    beat.start()
    server = make_server("0.0.0.0", settings.port, create_app(runtime=runtime), threaded=True)

    def shutdown(signum: int, _frame: object) -> None:
        if stopped.is_set():  # a second signal
            stop_now()
        logger.warning(
            "%s: draining (runs in progress finish); a second signal stops at once",
            signal.Signals(signum).name,
        )
        stopped.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    logger.info(
        "embedded cronwork on http://127.0.0.1:%d (SQLite %s, in-memory broker)",
        settings.port,
        settings.sqlalchemy_url,
    )
    server.serve_forever()
    worker.stop(timeout=(settings.task_time_limit_s + SHUTDOWN_MARGIN_S) * 1000)
    return 0
