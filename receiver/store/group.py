"""Group commit: writers that arrive together share one transaction and one commit.

A durable commit costs far more than the few rows a notification writes (the WAL
append and its locks in SQLite, a flush to disk in PostgreSQL), and a store takes one
writer at a time anyway. So the first writer to arrive becomes the leader: it takes
every piece of work queued so far, runs them in one transaction, commits, and only then
wakes their threads with their results. Writers that arrive meanwhile queue for the
next batch. Nobody is answered before their work is committed, so a 200 still means
journaled; an idle server commits each notification alone, with no added wait.

If anything in a batch fails, the batch is rolled back and each piece of work is
retried in a transaction of its own, so one bad notification never fails the others
and nothing is ever half-written. A transaction the store aborted only to break a
deadlock with a concurrent writer (StoreUnavailable.retryable: PostgreSQL replicas) is
run again after a short random pause (base.retry_pause), up to base.RETRIES times in
all, before its error is reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from receiver.store.base import run_again

T = TypeVar("T")
Work = Callable[[Any], T]


@dataclass
class Pending(Generic[T]):
    """One piece of work waiting for its commit, then its result or error."""

    work: Work[T]
    result: T | None = None
    error: BaseException | None = None
    done: bool = False
    # A waiter's (see GroupCommit.run), held until its thread may go on: its work is
    # committed, or it leads next. One lock per waiter wakes exactly the threads
    # concerned (a shared Condition's notify_all would wake every waiting thread for
    # every batch); a writer that leads at once, or work run by commit_together alone
    # (the journal writer process), needs none.
    wake: threading.Lock | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """Runs work in transactions shared by the writers that arrive together.

    `transaction` opens one write transaction (a context manager yielding the object
    each piece of work receives); it commits on a clean exit and rolls back on error.
    A batch holds at most one entry per writing thread, so it is bounded by the
    server's threads.
    """

    def __init__(self, transaction: Callable[[], AbstractContextManager[Any]]) -> None:
        self._transaction = transaction
        self._pending: list[Pending[Any]] = []
        self._leading = False
        self._mutex = threading.Lock()
        self.batches = 0  # commits so far: fewer than writes shows that writes group

    @property
    def waiting(self) -> int:
        """Pieces of work queued behind the batch being committed."""
        with self._mutex:
            return len(self._pending)

    def run(self, work: Work[T]) -> T:
        """Run work(tx) and return its result once committed; raise what it raised,
        or the store's error if the commit failed."""
        entry: Pending[T] = Pending(work)
        with self._mutex:
            wait, self._leading = self._leading, True
            if wait:  # held before the leader can see the entry, so it can release it
                entry.wake = wake = threading.Lock()
                wake.acquire()
            self._pending.append(entry)
        if wait:
            wake.acquire()  # until committed by a leader, or made the next leader
            if entry.done:
                return entry.outcome()
        self._lead(entry)
        return entry.outcome()

    def _lead(self, own: Pending[Any]) -> None:
        with self._mutex:
            batch, self._pending = self._pending, []
        self.batches += 1
        try:
            commit_together(self._transaction, batch)
        finally:
            with self._mutex:
                for entry in batch:
                    entry.done = True
                successor = self._pending[0] if self._pending else None
                self._leading = successor is not None
            for entry in batch:
                if entry is not own:
                    _wake(entry)
            if successor is not None:
                _wake(successor)


def _wake(waiter: Pending[Any]) -> None:
    """Let a waiting writer's thread go on (only a waiter is in another's batch, or
    leads next: a writer that found nobody leading led at once)."""
    assert waiter.wake is not None
    waiter.wake.release()


def commit_together(
    transaction: Callable[[], AbstractContextManager[Any]], batch: list[Pending[Any]]
) -> None:
    """Run every entry's work in one transaction and record each result or error in its
    entry. If anything fails, nothing of the batch is kept and each entry is retried in
    a transaction of its own (_commit_alone), so only the failing one fails."""
    if len(batch) == 1:
        _commit_alone(transaction, batch[0])
        return
    try:
        with transaction() as tx:
            results = [entry.work(tx) for entry in batch]
    except BaseException:
        for entry in batch:
            _commit_alone(transaction, entry)
        return
    for entry, result in zip(batch, results, strict=True):
        entry.result = result


def _commit_alone(
    transaction: Callable[[], AbstractContextManager[Any]], entry: Pending[Any]
) -> None:
    """Run one entry's work in a transaction of its own, again while it is a deadlock
    victim (base.run_again), and record its result or error."""

    def attempt() -> Any:
        with transaction() as tx:
            return entry.work(tx)

    try:
        entry.result = run_again(attempt)
    except BaseException as exc:
        entry.error = exc
