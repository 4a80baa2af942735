"""LabelFolder's admissions on a real table (SQLite in memory): the next value of a label
is numbered after its last one; with concurrent writers the label's lock is taken only
to admit, never to find a value another writer admitted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from receiver.store.labels import ADMIT_SQL, LAST_SQL, OTHER, LabelFolder, LabelValues

TABLE = (
    "CREATE TABLE metric_label_values (label TEXT NOT NULL, value TEXT NOT NULL, "
    "seq INTEGER NOT NULL, PRIMARY KEY (label, value))"
)
STORED = [("service", "web", 0), ("service", "db", 1), ("target", "web-1", 0)]


class Journal:
    """The table, the statements run on it, and the label locks taken."""

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:")
        self.connection.execute(TABLE)
        self.connection.executemany("INSERT INTO metric_label_values VALUES (?, ?, ?)", STORED)
        self.statements: list[str] = []
        self.locks: list[str] = []

    def execute(self, sql: str, params: Any) -> Any:
        self.statements.append(sql)
        return self.connection.execute(sql, params)

    def folder(self, bound: int, *, concurrent: bool) -> LabelFolder:
        lock = self.locks.append if concurrent else None
        return LabelFolder(LabelValues(bound=bound), self.execute, lock)

    def seq(self, label: str, value: str) -> int | None:
        row = self.connection.execute(
            "SELECT seq FROM metric_label_values WHERE label = ? AND value = ?", (label, value)
        ).fetchone()
        return None if row is None else row[0]


@pytest.fixture
def journal() -> Iterator[Journal]:
    opened = Journal()
    yield opened
    opened.connection.close()


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_new_value_is_numbered_after_the_labels_last(journal: Journal, concurrent: bool) -> None:
    folder = journal.folder(10, concurrent=concurrent)
    assert folder.value("service", "cache") == "cache"
    last = max(seq for label, _, seq in STORED if label == "service")
    assert journal.seq("service", "cache") == last + 1
    assert folder.admitted == {("service", "cache"): last + 1}


def test_one_writer_admits_with_a_look_at_the_last_and_an_insert(journal: Journal) -> None:
    journal.folder(10, concurrent=False).value("service", "cache")
    assert journal.statements == [LAST_SQL, ADMIT_SQL]
    assert journal.locks == []


def test_concurrent_writers_admit_under_the_labels_lock(journal: Journal) -> None:
    journal.folder(10, concurrent=True).value("service", "cache")
    assert journal.locks == ["service"]
    assert journal.statements[-2:] == [LAST_SQL, ADMIT_SQL]


def test_a_value_another_writer_admitted_is_found_without_the_labels_lock(
    journal: Journal,
) -> None:
    folder = journal.folder(10, concurrent=True)
    assert folder.value("service", "db") == "db"
    assert journal.locks == []
    assert folder.admitted == {("service", "db"): 1}


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_value_stored_past_a_lowered_bound_folds_and_stays_stored(
    journal: Journal, concurrent: bool
) -> None:
    folder = journal.folder(1, concurrent=concurrent)  # db arrived second: past a bound of 1
    assert folder.value("service", "db") == OTHER
    assert journal.seq("service", "db") == 1
    assert folder.folded == {"service": 1}


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_full_label_folds_a_new_value_and_is_known_full(
    journal: Journal, concurrent: bool
) -> None:
    folder = journal.folder(2, concurrent=concurrent)
    assert folder.value("service", "cache") == OTHER
    assert journal.seq("service", "cache") is None
    assert folder.full == {"service"}
    journal.statements.clear()
    assert folder.value("service", "queue", count=False) == OTHER  # no second admission
    assert LAST_SQL not in journal.statements and ADMIT_SQL not in journal.statements
    assert folder.folded == {"service": 1}
