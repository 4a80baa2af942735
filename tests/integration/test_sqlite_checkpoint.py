"""WAL checkpoints off the write path (store/checkpoint.py) on a real SQLite journal:
commits only append to the WAL until the checkpointer copies it back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from receiver.store.base import StoreUnavailable
from receiver.store.checkpoint import Checkpointed, Checkpointer
from receiver.store.sqlite import AUTOCHECKPOINT_PAGES, SqliteStore
from tests.support.journal import wait_for
from tests.support.wal import checkpointed_count


@pytest.fixture
def store(tmp_path: Path):
    opened = SqliteStore(f"sqlite:///{tmp_path / 'journal.db'}")
    yield opened
    opened.close()


def write_pages(store: SqliteStore, transactions: int) -> None:
    """`transactions` commits of a row each, about 1,500 WAL pages for 300."""
    for n in range(transactions):
        store.change(
            lambda tx, n=n: tx.execute(
                "INSERT INTO metric_totals (metric, labels, value) VALUES (?, ?, 1)",
                (f"test_{n}", "x" * 2000),
            )
        )


def test_commits_leave_the_wal_to_the_checkpointer(store: SqliteStore, tmp_path: Path) -> None:
    store.checkpoint()  # the schema into the database file
    write_pages(store, 300)  # more than SQLite's default 1,000 pages, less than ours
    assert checkpointed_count(tmp_path / "journal.db", "metric_totals") == 0

    done = store.checkpoint()

    assert not done.busy and 1000 < done.wal_pages < AUTOCHECKPOINT_PAGES
    assert done.copied == done.wal_pages
    assert checkpointed_count(tmp_path / "journal.db", "metric_totals") == 300


def test_the_checkpointer_thread_copies_what_was_committed(
    store: SqliteStore, tmp_path: Path
) -> None:
    checkpointer = Checkpointer(store, interval=0.05)
    checkpointer.start()
    try:
        write_pages(store, 50)
        copied = lambda: checkpointed_count(tmp_path / "journal.db", "metric_totals") == 50  # noqa: E731
        wait_for(copied, 10, "the rows in the database file")
    finally:
        checkpointer.stop()


class _Failing:
    """A journal whose checkpoint always fails (the loop's error handling alone)."""

    def __init__(self) -> None:
        self.calls = 0

    def checkpoint(self) -> Checkpointed:
        self.calls += 1
        raise StoreUnavailable("disk I/O error")


def test_a_failing_checkpoint_is_logged_once_and_retried(caplog) -> None:
    failing = _Failing()
    checkpointer = Checkpointer(failing, interval=0.01)
    with caplog.at_level(logging.ERROR, logger="receiver.store.checkpoint"):
        checkpointer.start()
        wait_for(lambda: failing.calls >= 5, 10, "five tries")
        checkpointer.stop()
    assert not checkpointer.running
    errors = [r.getMessage() for r in caplog.records]
    assert errors == ["journal checkpoint failed (SQLite's own continues): disk I/O error"]


def test_stop_ends_the_thread_promptly(store: SqliteStore) -> None:
    checkpointer = Checkpointer(store, interval=600)
    checkpointer.start()
    checkpointer.stop(timeout=5)  # wakes it: it does not sleep out its interval
    assert not checkpointer.running
