"""The beat: periodiq sends the system crons declared in ``services.worker.actors``.

Run as ``periodiq services.beat.main`` (``cronwork beat`` does it, with ``TZ=UTC``: periodiq reads cron specs in
the process's local zone). Any number of beats may run: the worker claims each system slot in the database, so
duplicates, a restart inside the minute (periodiq fires at start-up when the minute matches) and redeliveries
all give one run per slot. Periodiq never catches up on slots it slept through; the next slot does the work.
"""

from services.worker.actors import broker, settings
from shared.heartbeat import Heartbeat, heartbeat_path

__all__ = ["broker"]

# periodiq's SIGALRM loop owns the main thread; the heartbeat runs beside it.
heartbeat = Heartbeat(heartbeat_path(settings.heartbeat_dir, "beat")).start()
