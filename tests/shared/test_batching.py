"""The group-commit unit: items from many threads are processed in few calls, each caller gets its own results."""

from __future__ import annotations

import threading
import time

import pytest

from shared.batching import Batcher, BatcherClosed


class Recorder:
    """A ``process`` that doubles its items and remembers every batch it was given."""

    def __init__(self, hold: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.hold = hold
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.started.set()
        if self.hold is not None:
            self.hold.wait(5)
        self.batches.append(list(items))
        return [item * 2 for item in items]


def wait_until_queued(batcher: Batcher, count: int) -> None:
    deadline = time.monotonic() + 5
    while batcher._submissions.qsize() < count:
        assert time.monotonic() < deadline, f"{count} submissions never queued"
        time.sleep(0.005)


def test_each_caller_gets_the_results_of_its_own_items_in_order() -> None:
    batcher = Batcher(Recorder(), name="test")
    assert batcher.submit([1, 2, 3]) == [2, 4, 6]
    assert batcher.submit([]) == []
    batcher.close()


def test_items_handed_in_while_a_batch_runs_go_together_into_the_next() -> None:
    hold = threading.Event()
    process = Recorder(hold)
    batcher = Batcher(process, linger_s=0, name="test")
    results: dict[int, list[int]] = {}
    first = threading.Thread(target=lambda: results.setdefault(0, batcher.submit([0])))
    first.start()
    assert process.started.wait(5)
    # While the first batch is held in its "transaction", twenty threads hand in their items.
    waiting = [
        threading.Thread(target=lambda n=n: results.setdefault(n, batcher.submit([n]))) for n in range(1, 21)
    ]
    for thread in waiting:
        thread.start()
    wait_until_queued(batcher, 20)
    hold.set()
    for thread in [first, *waiting]:
        thread.join(5)
    assert results == {n: [2 * n] for n in range(21)}
    assert [len(batch) for batch in process.batches] == [1, 20], "one commit for the twenty that waited"
    batcher.close()


def test_no_batch_exceeds_max_items_and_a_large_submission_is_cut() -> None:
    process = Recorder()
    batcher = Batcher(process, max_items=4, name="test")
    assert batcher.submit(list(range(10))) == [2 * n for n in range(10)]
    assert max(len(batch) for batch in process.batches) <= 4
    assert sorted(item for batch in process.batches for item in batch) == list(range(10))
    batcher.close()


def test_a_failed_batch_raises_in_every_caller_of_that_batch_and_the_next_batch_runs() -> None:
    calls = {"count": 0}

    def fail_once(items: list[int]) -> list[int]:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("commit failed")
        return items

    batcher = Batcher(fail_once, name="test")
    with pytest.raises(RuntimeError, match="commit failed"):
        batcher.submit([1])
    assert batcher.submit([2]) == [2]
    batcher.close()


def test_close_finishes_what_was_handed_in_then_refuses_more() -> None:
    hold = threading.Event()
    process = Recorder(hold)
    batcher = Batcher(process, linger_s=0, name="test")
    results: list[list[int]] = []
    submitters = [threading.Thread(target=lambda n=n: results.append(batcher.submit([n]))) for n in range(3)]
    submitters[0].start()
    assert process.started.wait(5)
    for thread in submitters[1:]:
        thread.start()
    wait_until_queued(batcher, 2)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    hold.set()
    closer.join(5)
    for thread in submitters:
        thread.join(5)
    assert sorted(results) == [[0], [2], [4]], "every item handed in before close was processed"
    with pytest.raises(BatcherClosed):
        batcher.submit([9])
