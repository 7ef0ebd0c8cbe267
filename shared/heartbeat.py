"""Liveness for processes without an HTTP port: a file touched while the process is healthy.

``cronwork probe worker`` (the Kubernetes exec probe) passes while the file is fresh.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

INTERVAL_S = 10.0
STALE_AFTER_S = 60.0


def heartbeat_path(directory: str, role: str) -> Path:
    """The file a process of ``role`` touches while it is alive (read by the liveness probe)."""
    return Path(directory) / f"cronwork-{role}.heartbeat"


class Heartbeat:
    """Touches ``path`` every ``INTERVAL_S`` seconds from a daemon thread until ``stop()``."""

    def __init__(self, path: Path):
        self.path = path
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat:{path.name}", daemon=True)

    def start(self) -> Heartbeat:
        """Start the thread: it touches the file at once, then every ``INTERVAL_S``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop touching the file."""
        self._stopped.set()

    def _beat(self) -> None:
        while not self._stopped.is_set():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            self._stopped.wait(INTERVAL_S)


def is_fresh(path: Path) -> bool:
    """True when the heartbeat at ``path`` was touched within ``STALE_AFTER_S`` seconds."""
    try:
        return time.time() - path.stat().st_mtime < STALE_AFTER_S
    except FileNotFoundError:
        return False
