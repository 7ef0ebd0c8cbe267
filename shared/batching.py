"""Group commit: many threads hand in work, one thread does it in batches, each caller gets its own answer.

A Dramatiq thread handles one message at a time; one database commit and one broker round trip per message
caps a process near a thousand a second. A ``Batcher`` lets every thread hand its items to one flusher, which
takes whatever has queued up (waiting a moment for more), processes it all in one call (one transaction, one
broker commit) and wakes each caller with its results. A caller acknowledges its message only after that, so
a crash anywhere before leaves the message to be redelivered, and the row checks drop what already happened.
Under light load a batch is one item and waits no longer than ``linger_s``; under load batches grow by
themselves, as commits do in a database log.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

logger = logging.getLogger("cronwork.batching")


@dataclass
class _Submission(Generic[Item, Result]):
    items: Sequence[Item]
    future: Future[list[Result]] = field(default_factory=Future)


class BatcherClosed(RuntimeError):
    """Work was handed to a batcher after ``close()``."""


class Batcher(Generic[Item, Result]):
    """Processes items handed in from many threads in batches, on one flusher thread.

    Parameters:
      process: does a whole batch and returns one result per item, in order. If it raises, every caller of
        that batch gets the exception.
      max_items (500): the most items in one call of ``process``. A submission is never split across
        calls unless it alone is larger, and then it is cut into calls of ``max_items``.
      linger_s (0.002): how long the flusher waits for more work after the first submission of a batch.
      name: the flusher thread's name, for logs and profiles.

    The flusher starts with the first submission (after a fork too, so Dramatiq's worker processes each get
    their own) and stops on ``close()``, which first finishes everything already handed in.
    """

    def __init__(
        self,
        process: Callable[[list[Item]], list[Result]],
        max_items: int = 500,
        linger_s: float = 0.002,
        name: str = "batcher",
    ):
        self.process = process
        self.max_items = max_items
        self.linger_s = linger_s
        self.name = name
        self._submissions: queue.SimpleQueue[_Submission[Item, Result] | None] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False

    def submit(self, items: Sequence[Item]) -> list[Result]:
        """Hand in ``items``, wait until their batch is done, and return their results in order."""
        if not items:
            return []
        if self._closed:
            raise BatcherClosed(f"{self.name} is closed")
        self._ensure_flusher()
        chunks = [items[start : start + self.max_items] for start in range(0, len(items), self.max_items)]
        submissions: list[_Submission[Item, Result]] = [_Submission(chunk) for chunk in chunks]
        for submission in submissions:
            self._submissions.put(submission)
        results: list[Result] = []
        for submission in submissions:
            results.extend(submission.future.result())
        return results

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish every batch already handed in, then stop the flusher."""
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._submissions.put(None)
        thread.join(timeout_s)

    def _ensure_flusher(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._flush_forever, name=self.name, daemon=True)
                self._thread.start()

    def _flush_forever(self) -> None:
        carried: _Submission[Item, Result] | None = None
        while True:
            first = carried or self._submissions.get()
            carried = None
            if first is None:
                return
            batch, carried, stopping = self._collect(first)
            self._run(batch)
            if stopping:
                if carried is not None:
                    self._run([carried])
                self._drain_after_stop()
                return

    def _collect(
        self, first: _Submission[Item, Result]
    ) -> tuple[list[_Submission[Item, Result]], _Submission[Item, Result] | None, bool]:
        """The first submission and whatever else fits, waiting at most ``linger_s`` for more."""
        batch = [first]
        size = len(first.items)
        deadline = time.monotonic() + self.linger_s
        while size < self.max_items:
            try:
                submission = self._submissions.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if submission is None:
                return batch, None, True
            if size + len(submission.items) > self.max_items:
                return batch, submission, False
            batch.append(submission)
            size += len(submission.items)
        return batch, None, False

    def _drain_after_stop(self) -> None:
        # Submissions racing close(): answer them rather than leave their callers waiting forever.
        while True:
            try:
                late = self._submissions.get_nowait()
            except queue.Empty:
                return
            if late is not None:
                self._run([late])

    def _run(self, batch: list[_Submission[Item, Result]]) -> None:
        items = [item for submission in batch for item in submission.items]
        try:
            results = self.process(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        except BaseException as exc:  # every caller must wake up, whatever went wrong
            for submission in batch:
                submission.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for submission in batch:
            submission.future.set_result(results[offset : offset + len(submission.items)])
            offset += len(submission.items)
