"""PostgreSQL journal (optional extra `remediator[postgres]`): same SQL as SQLite.

Useful when several Remediator replicas share one journal. Each thread holds its own
connection; a broken connection is dropped and reopened on the next call.

Replicas write at the same time: there is no journal-wide lock. Each invariant that
one writer at a time keeps on SQLite is kept here by a lock keyed by what it guards or
by a constraint (store/locks.py lists them), at PostgreSQL's default isolation (READ
COMMITTED). The one journal-wide lock left is the schema's, taken by replicas starting
together so that the tables are created once. A transaction PostgreSQL aborts as a
deadlock victim or a serialization failure (two transactions' row locks met in
opposite orders, which keyed locks make rare) is run again, up to RETRIES times: ingest
by group commit (store/group.py), claims, outcomes and fleet changes here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from receiver.store import labels, locks, servicewindows
from receiver.store.base import StoreUnavailable
from receiver.store.dispatch import DispatchStore
from receiver.store.locks import PostgresLocks
from receiver.store.sql import SqlStore, add_missing_columns

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs psycopg: pip install 'remediator[postgres]'"
    ) from exc

_SCHEMA_LOCK = 0x72656D65  # advisory lock id: replicas starting together create tables once
#: attempts of a transaction aborted as a deadlock victim or a serialization failure
RETRIES = 3
_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
T = TypeVar("T")


class PostgresStore(DispatchStore, SqlStore):
    placeholder = "%s"
    byte_length = "octet_length({})"
    primary_key = "BIGSERIAL PRIMARY KEY"
    blob_type = "BYTEA"
    driver_errors = (psycopg.Error,)
    keyed_locks = PostgresLocks  # each write transaction's (store/locks.py)
    snapshot_statement = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"

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

    def _again(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` (one whole transaction) again when PostgreSQL aborted it as a
        deadlock victim or a serialization failure, up to RETRIES times in all."""
        for left in range(RETRIES - 1, -1, -1):
            try:
                return attempt()
            except StoreUnavailable as exc:
                if not left or not exc.retryable:
                    raise
        raise AssertionError("unreachable")

    def claim_many(self, *args: Any, **kwargs: Any) -> Any:
        """DispatchStore.claim_many, run again if aborted as a deadlock victim (the judge
        and `follow` then run again too: what they collect for after the commit, such
        as wake-ups, is a hint that may count twice)."""
        return self._again(lambda: super(PostgresStore, self).claim_many(*args, **kwargs))

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        """DispatchStore.finish, run again if aborted as a deadlock victim (see
        claim_many)."""
        return self._again(lambda: super(PostgresStore, self).finish(*args, **kwargs))

    def change(self, apply: Callable[[Any], T]) -> T:
        """DispatchStore.change, run again if aborted as a deadlock victim."""
        return self._again(lambda: super(PostgresStore, self).change(apply))

    def create_schema(self) -> None:
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            windows = servicewindows.created(tx.execute, sqlite=False)
            for statement in self.schema_statements():
                tx.execute(statement)
            labels.adopt_existing(tx.execute)
            add_missing_columns(tx)
            tx.execute(locks.SLOT_ROWS, (locks.MAX_SLOTS,))
            if not windows:
                self.backfill_service_windows(tx)

    def _discard_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._discard_connection()
