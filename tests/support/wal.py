"""What a SQLite journal's database file holds without its WAL: the state the last
checkpoint copied back (tests of store/checkpoint.py)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path


def checkpointed_count(journal: Path, table: str) -> int | None:
    """Rows of `table` in a copy of the journal's database file alone (no -wal, no
    -shm); None when the copy is unreadable (caught mid-checkpoint: try again)."""
    with tempfile.TemporaryDirectory() as folder:
        alone = Path(folder) / "alone.db"
        shutil.copyfile(journal, alone)
        try:
            with sqlite3.connect(alone) as peek:
                return peek.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.DatabaseError:
            return None
