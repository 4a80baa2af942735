"""SQLite journal in WAL mode: the default store, one file, safe across kill -9.

WAL with synchronous=NORMAL never loses a committed transaction when the process dies
(only an OS crash or power cut could lose the last commits), and lets readers run while
the webhook writes. Each thread gets its own connection; writers take the lock up front
(BEGIN IMMEDIATE) so two writers never deadlock upgrading a read lock.

Writers queue, in order: this process's thread lock (bounded by BUSY_TIMEOUT_MS), then
an exclusive `flock` on `<journal>-writers`, shared by every process that writes the
journal (the journal writer and its dispatch process), then BEGIN IMMEDIATE; the flock
is released after COMMIT or ROLLBACK. Waiting in flock wakes the moment the holder
lets go; waiting in SQLite's busy handler sleeps and retries (up to tens of ms per try,
which took p99 latency from milliseconds to most of a second when two processes wrote).
Readers never take it.

The wait in flock has no timeout, and need not: a holder holds it for one transaction
of SQL on a local file (no network call runs inside a write transaction), the kernel
releases it when its holder dies (even by kill -9), and at most one thread per process
waits in it (the others queue on the thread lock, with its timeout). A process stuck
inside a transaction would stop the others; the stall watchdog (writer/client.py) ends
a journal writer that holds requests that long, as it would today. Its descriptor is
close-on-exec, so commands never hold it, and opened anew by a forked child: flock locks
belong to the open file description, which a fork shares.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from receiver.store.base import StoreUnavailable
from receiver.store.checkpoint import Checkpointed
from receiver.store.dispatch import DispatchStore
from receiver.store.sql import SqlStore, SqlTransaction
from receiver.store.sqlitefile import BUSY_TIMEOUT_MS, enable_wal, sqlite_path, writers_lock_path

#: WAL pages past which a COMMIT checkpoints by itself (SQLite's default is 1,000): the
#: backstop behind the dispatch process's checkpointer (store/checkpoint.py)
AUTOCHECKPOINT_PAGES = 10_000


class SqliteStore(DispatchStore, SqlStore):
    driver_errors = (sqlite3.Error,)
    lastrowid = True
    events_keyed = True
    version_table_sql = (
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._init_writes()
        self._writer = threading.Lock()
        self._lock_fd: int | None = None  # `<journal>-writers`, opened by this pid
        self._lock_pid: int | None = None
        self.create_schema()

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection = self._open()
            local.pid = os.getpid()
        return local.connection

    @property
    def lock_path(self) -> Path:
        """The lock file every process's write transactions queue on."""
        return writers_lock_path(self.path)

    def _lock_file(self) -> int:
        if self._lock_pid != os.getpid():  # a fork child shares the parent's description
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing it in a child never releases the parent's
            self._lock_fd = None
            try:
                self._lock_fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open {self.lock_path}: {exc}") from exc
            self._lock_pid = os.getpid()
        assert self._lock_fd is not None
        return self._lock_fd

    def _lock_other_processes(self) -> int:
        """Take the cross-process writers' lock (module docstring); its descriptor, to
        release with fcntl.flock(fd, LOCK_UN). Raises StoreUnavailable if it cannot."""
        fd = self._lock_file()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except OSError as exc:
            raise StoreUnavailable(f"cannot lock {self.lock_path}: {exc}") from exc
        return fd

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
        enable_wal(connection)
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[SqlTransaction]:
        """Writers queue on this process's lock, then on the lock file shared with other
        processes (module docstring), instead of in SQLite's busy handler, which sleeps
        and polls (tens of ms per retry); a process that does not take the lock file
        (the sqlite3 shell) still meets BEGIN IMMEDIATE and busy_timeout. Raises
        StoreUnavailable when this process's other writers hold it past BUSY_TIMEOUT_MS."""
        if not write:
            with super().transaction(write=False) as tx:
                yield tx
            return
        if not self._writer.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise StoreUnavailable("timed out waiting for this process's other writers")
        try:
            # the flock taken and let go here, not in a context manager of its own: one
            # generator less per write transaction (ingest's and every action's)
            fd = self._lock_other_processes()
            try:
                with super().transaction(write=True) as tx:
                    yield tx
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._writer.release()

    def _begin(self, connection: Any, write: bool) -> None:
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def checkpoint(self) -> Checkpointed:
        """A PASSIVE WAL checkpoint on this thread's connection, outside the writers'
        lock: it copies what no reader needs and never waits (store/checkpoint.py).
        Raises StoreUnavailable when SQLite fails it."""
        try:
            busy, wal_pages, copied = (
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"checkpoint of {self.path}: {exc}") from exc
        return Checkpointed(bool(busy), wal_pages, copied)

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
        if self._lock_fd is not None and self._lock_pid == os.getpid():
            os.close(self._lock_fd)
            self._lock_fd = self._lock_pid = None
