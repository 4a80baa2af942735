"""The SQLite journal's file: where a store URL puts it, its WAL mode, and the lock file
its writers queue on. Apart from the store (sqlite.py), so that a schema upgrade
(migrate.py, a child process of its own at every start on a new journal) imports this
and not the whole store.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 5000


def sqlite_path(url: str) -> Path:
    """`sqlite:///journal.db` is relative to the working directory, `sqlite:////var/x.db`
    absolute (the SQLAlchemy convention operators already know)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    path = url.removeprefix("sqlite:///")
    if not path or path == ":memory:":
        raise ValueError("sqlite store needs a file path: the journal must survive restarts")
    return Path(path)


def writers_lock_path(journal: Path) -> Path:
    """The lock file every process's write transactions queue on (sqlite.py's docstring),
    and a schema upgrade for its whole length (migrate.py)."""
    return journal.with_name(journal.name + "-writers")


def enable_wal(connection: Any) -> None:
    """Set the busy timeout and WAL mode on a sqlite3 connection (the store's, or a
    schema upgrade's). Switching a journal to WAL needs it to itself for an instant, and
    SQLite answers "database is locked" at once, without its busy handler, when another
    process holds it then (two processes opening a new journal together: a journal
    writer and its dispatch process); so it is tried again until BUSY_TIMEOUT_MS.
    Raises sqlite3.OperationalError when the journal stays locked that long."""
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
