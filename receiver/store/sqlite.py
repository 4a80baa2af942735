"""SQLite journal in WAL mode: the default store, one file, safe across kill -9.

WAL with synchronous=NORMAL never loses a committed transaction when the process dies
(only an OS crash or power cut could lose the last commits), and lets readers run while
the webhook writes. Each thread gets its own connection; writers take the lock up front
(BEGIN IMMEDIATE) so two writers never deadlock upgrading a read lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from receiver.store.base import StoreUnavailable
from receiver.store.dispatch import DispatchStore
from receiver.store.sql import SqlStore, SqlTransaction

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


class SqliteStore(DispatchStore, SqlStore):
    driver_errors = (sqlite3.Error,)

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._init_writes()
        self._writer = threading.Lock()
        self.create_schema()

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection = self._open()
            local.pid = os.getpid()
        return local.connection

    def _open(self) -> sqlite3.Connection:
        if not self.path.parent.exists():
            raise sqlite3.OperationalError(f"directory {self.path.parent} does not exist")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            # SQLite would fall back to a read-only connection, which this thread would
            # keep, failing every write, after the file became writable again.
            raise sqlite3.OperationalError(f"journal {self.path} is not writable")
        connection = sqlite3.connect(
            self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[SqlTransaction]:
        """Writers of this process queue on a lock instead of in SQLite's busy handler,
        which sleeps and polls (tens of ms per retry); other processes still meet
        BEGIN IMMEDIATE and busy_timeout."""
        if not write:
            with super().transaction(write=False) as tx:
                yield tx
            return
        if not self._writer.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise StoreUnavailable("timed out waiting for this process's other writers")
        try:
            with super().transaction(write=True) as tx:
                yield tx
        finally:
            self._writer.release()

    def _begin(self, connection: Any, write: bool) -> None:
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _discard_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.pid = None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error:
                return

    def close(self) -> None:
        self._discard_connection()
