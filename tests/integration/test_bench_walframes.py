"""bench/walframes.py's reading of a real SQLite WAL file: its frames, the pages they
hold and where each commit ends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.walframes import read_frames, summary


def _journal(tmp_path: Path) -> tuple[sqlite3.Connection, Path]:
    db = tmp_path / "wal.db"
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    connection.execute("CREATE INDEX t_by_v ON t (v)")
    return connection, db


def test_each_commit_ends_with_a_commit_frame_and_names_the_pages_it_changed(
    tmp_path: Path,
) -> None:
    connection, db = _journal(tmp_path)
    wal = Path(f"{db}-wal")
    start = wal.stat().st_size
    for i in range(3):
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (v) VALUES (?)", (f"value-{i}",))
        connection.execute("COMMIT")
    frames = read_frames(wal.read_bytes(), start)
    roots = dict(connection.execute("SELECT name, rootpage FROM sqlite_master"))
    # each commit changed the table's page and its index's page, and ended once
    assert [f.commit for f in frames].count(True) == 3
    assert frames[-1].commit
    assert {roots["t"], roots["t_by_v"]} <= {f.page for f in frames}
    owner = {roots["t"]: "t", roots["t_by_v"]: "t_by_v"}
    figures = summary(frames, owner, items=3)
    assert figures["commits"] == 3
    assert figures["per_item_by_owner"]["t"] == figures["per_item_by_owner"]["t_by_v"] == 1.0


def test_a_file_shorter_than_the_header_is_refused() -> None:
    with pytest.raises(ValueError, match="not a WAL file"):
        read_frames(b"\0" * 10)
