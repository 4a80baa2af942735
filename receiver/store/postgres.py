"""PostgreSQL journal (optional extra `remediator[postgres]`): same SQL as SQLite.

Useful when several Remediator replicas share one journal. Each thread holds its own
connection; a broken connection is dropped and reopened on the next call.

Replicas write at the same time: there is no journal-wide lock. Each invariant that one
writer at a time keeps on SQLite is kept here by a lock keyed by what it guards or by a
constraint (store/locks.py lists them), at PostgreSQL's default isolation (READ
COMMITTED). The one journal-wide lock left is the schema upgrade's (store/migrate.py),
taken by replicas starting together so that the revisions run once. A transaction
PostgreSQL aborts as a deadlock victim or a serialization failure (two transactions' row
locks met in opposite orders, which keyed locks make rare) is run again after a short
random pause, up to base.RETRIES times in all: ingest by group commit (store/group.py),
claims, outcomes and fleet changes here."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from receiver.store.base import run_again
from receiver.store.dispatch import DispatchStore
from receiver.store.locks import PostgresLocks
from receiver.store.sql import SqlStore

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs psycopg: pip install 'remediator[postgres]'"
    ) from exc

_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
T = TypeVar("T")


class PostgresStore(DispatchStore, SqlStore):
    placeholder = "%s"
    byte_length = "octet_length({})"
    driver_errors = (psycopg.Error,)
    keyed_locks = PostgresLocks  # each write transaction's (store/locks.py)
    snapshot_statement = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
    # to_regclass follows the search_path, as the unqualified table names do
    version_table_sql = "SELECT to_regclass('alembic_version') IS NOT NULL"

    def __init__(self, url: str, connect_timeout: int = 5) -> None:
        self.url = url
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._init_writes()
        self.create_schema()

    def _connection(self) -> Any:
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is None or connection.closed or getattr(local, "pid", None) != os.getpid():
            local.connection = psycopg.connect(self.url, connect_timeout=self._connect_timeout)
            local.pid = os.getpid()
        return local.connection

    def _begin(self, connection: Any, write: bool) -> None:
        """psycopg opens a transaction implicitly on the first statement; no journal-wide
        lock is taken (module docstring)."""

    def _retryable(self, error: BaseException) -> bool:
        return isinstance(error, _RETRIED)

    def claim_due(self, *args: Any, **kwargs: Any) -> Any:
        """DispatchStore.claim_due (and so claim_many), run again if aborted as a
        deadlock victim (the clock is read again; the judge and `follow` then run again
        too: what they collect for after the commit, such as wake-ups, is a hint that
        may count twice)."""
        return run_again(lambda: super(PostgresStore, self).claim_due(*args, **kwargs))

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        """DispatchStore.finish, run again if aborted as a deadlock victim (see
        claim_due)."""
        return run_again(lambda: super(PostgresStore, self).finish(*args, **kwargs))

    def change(self, apply: Callable[[Any], T]) -> T:
        """DispatchStore.change, run again if aborted as a deadlock victim."""
        return run_again(lambda: super(PostgresStore, self).change(apply))

    def _discard_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._discard_connection()
