"""A transaction aborted as a deadlock victim is run again after a short random pause,
RETRIES times in all (store/base.py's run_again): the group commit's (store/group.py)
and PostgreSQL's claims, outcomes and changes (store/postgres.py). The integration test
on a real server is tests/integration/test_postgres_replicas.py (two writers taking rows
in opposite orders)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from receiver.store import base
from receiver.store.base import RETRIES, RETRY_PAUSE, StoreUnavailable, retry_pause, run_again
from receiver.store.group import Pending, commit_together


def victim() -> StoreUnavailable:
    error = StoreUnavailable("deadlock detected")
    error.retryable = True
    return error


def test_a_retry_pause_is_a_random_share_of_a_bound_that_doubles_per_attempt() -> None:
    assert retry_pause(2, lambda: 0.0) == 0.0
    assert retry_pause(2, lambda: 0.5) == pytest.approx(RETRY_PAUSE / 2)
    assert retry_pause(3, lambda: 0.5) == pytest.approx(RETRY_PAUSE)
    assert retry_pause(4, lambda: 0.5) == pytest.approx(RETRY_PAUSE * 2)
    pauses = [retry_pause(2) for _ in range(200)]
    assert all(0.0 <= pause < RETRY_PAUSE for pause in pauses)
    assert len(set(pauses)) > 100  # drawn, not fixed: two victims do not start together


class Transactions:
    """A store's write transactions whose first `failures` attempts raise `error`."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures = failures
        self.error = error
        self.attempts = 0

    @contextmanager
    def open(self) -> Iterator[str]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        yield "tx"


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(base.time, "sleep", slept.append)
    return slept


def test_group_commit_runs_a_deadlock_victim_again_after_a_pause(pauses: list[float]) -> None:
    store = Transactions(failures=RETRIES - 1, error=victim())
    entry: Pending[str] = Pending(lambda tx: f"written in {tx}")
    commit_together(store.open, [entry])
    assert entry.outcome() == "written in tx"
    assert store.attempts == RETRIES
    assert len(pauses) == RETRIES - 1
    assert all(0.0 <= pause < RETRY_PAUSE * 2**number for number, pause in enumerate(pauses))


def test_group_commit_reports_a_victim_aborted_every_time(pauses: list[float]) -> None:
    error = victim()
    store = Transactions(failures=RETRIES + 5, error=error)
    entry: Pending[str] = Pending(lambda tx: "never")
    commit_together(store.open, [entry])
    assert entry.error is error
    assert store.attempts == RETRIES
    assert len(pauses) == RETRIES - 1


def test_group_commit_never_runs_a_failure_that_is_not_a_victim_again(
    pauses: list[float],
) -> None:
    store = Transactions(failures=1, error=StoreUnavailable("disk full"))
    entry: Pending[str] = Pending(lambda tx: "never")
    commit_together(store.open, [entry])
    assert isinstance(entry.error, StoreUnavailable)
    assert store.attempts == 1
    assert pauses == []


def attempts_of(failures: int, error: StoreUnavailable) -> tuple[list[int], Any]:
    """The retry of one whole transaction that PostgreSQL's claims, outcomes and changes
    use (base.run_again) around an attempt that raises `error` its first `failures`
    times."""
    calls: list[int] = []

    def attempt() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= failures:
            raise error
        return "committed"

    try:
        return calls, run_again(attempt)
    except StoreUnavailable as exc:
        return calls, exc


def test_postgres_runs_a_victim_again_after_a_pause_up_to_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(base.time, "sleep", slept.append)
    calls, result = attempts_of(RETRIES - 1, victim())
    assert (calls, result) == (list(range(1, RETRIES + 1)), "committed")
    assert len(slept) == RETRIES - 1 and all(pause < RETRY_PAUSE * 2 for pause in slept)

    slept.clear()
    error = victim()
    calls, result = attempts_of(RETRIES + 5, error)
    assert (len(calls), result) == (RETRIES, error)
    assert len(slept) == RETRIES - 1

    slept.clear()
    other = StoreUnavailable("connection refused")
    calls, result = attempts_of(1, other)
    assert (len(calls), result, slept) == (1, other, [])
