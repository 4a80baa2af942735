"""PostgreSQL journal (optional extra `remediator[postgres]`): same SQL as SQLite.

Useful when several Remediator replicas share one journal. Each thread holds its own
connection; a broken connection is dropped and reopened on the next call.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from receiver.store.dispatch import DispatchStore
from receiver.store.sql import SqlStore, SqlTransaction

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs psycopg: pip install 'remediator[postgres]'"
    ) from exc

# advisory lock ids (a schema upgrade takes 0x72656D65: schema.POSTGRES_UPGRADE_LOCK); replicas
_CLAIM_LOCK = 0x72656D66  # ...claim actions one at a time (gates read shared state)
_WRITE_LOCK = 0x72656D67  # ...and write one transaction at a time, like SQLite


class PostgresStore(DispatchStore, SqlStore):
    placeholder = "%s"
    byte_length = "octet_length({})"
    driver_errors = (psycopg.Error,)
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
        """psycopg opens a transaction implicitly on the first statement. A write takes
        the journal's write lock first, as SQLite's BEGIN IMMEDIATE does: otherwise two
        copies of one notification (an HA pair) both miss the incident, collide on its
        key, and all but one are answered 503 instead of 200 as duplicates."""
        if write:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))

    def _serialize_claims(self, tx: SqlTransaction) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_CLAIM_LOCK,))

    def _discard_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._discard_connection()
