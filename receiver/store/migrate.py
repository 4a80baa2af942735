"""Upgrade the journal's schema with Alembic, once, however many replicas start together.

The script directory is store/migrations/ inside the package (no alembic.ini: the
Config is built here). A store URL becomes a SQLAlchemy URL: `sqlite:///PATH` as is,
`postgresql://...` / `postgres://...` as `postgresql+psycopg://...` (psycopg 3), its
query (libpq parameters such as `options=-csearch_path=...`) kept, so alembic_version
lands in the schema the journal's tables live in.

The whole upgrade (read the revision, run the missing revisions, stamp) runs under one
lock, as replicas and the journal's own processes share it:

- PostgreSQL: the session advisory lock schema.POSTGRES_UPGRADE_LOCK on the connection
  that runs the revisions;
- SQLite: the `<journal>-writers` flock every writing process queues on (sqlite.py), so
  no transaction of the journal's own runs in the middle of a revision.

On both, the revisions of one upgrade run in one transaction (DDL is transactional in
PostgreSQL and SQLite alike): a failed upgrade leaves the journal as it was.

The second replica to get the lock finds the journal at head and does nothing.
Run as `python -m receiver.store.migrate` (the URL on stdin) it upgrades and prints
what it did: how a long-lived server keeps SQLAlchemy out of its memory (schema.py).
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from receiver.store.schema import (
    EXIT_TOO_NEW,
    POSTGRES_UPGRADE_LOCK,
    JournalTooNew,
    SchemaError,
    redacted,
)
from receiver.store.sqlitefile import enable_wal, sqlite_path, writers_lock_path

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
#: seconds to reach PostgreSQL (the store's own connect_timeout)
CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Upgrade:
    """What one upgrade did: the revision before (None: none recorded) and after."""

    before: str | None
    after: str

    @property
    def ran(self) -> bool:
        """True when revisions ran (False: the journal was at head already)."""
        return self.before != self.after

    def __str__(self) -> str:
        if not self.ran:
            return f"journal schema already at {self.after} (head)"
        return f"journal schema upgraded from {self.before or 'none'} to {self.after} (head)"


@dataclass(frozen=True)
class Current:
    """The journal's revision against this release's: `behind` revisions to run (0 at
    head; None when `newer`, i.e. unknown to this release)."""

    revision: str | None
    head: str
    behind: int | None

    @property
    def newer(self) -> bool:
        return self.behind is None

    def __str__(self) -> str:
        shown = self.revision or "none"
        if self.newer:
            return f"{shown} (newer than this release, whose head is {self.head})"
        if self.behind == 0:
            return f"{shown} (head)"
        return f"{shown} (behind by {self.behind}: head is {self.head})"


def alembic_config() -> Config:
    """Alembic's Config for the package's script directory, built in code."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def scripts() -> ScriptDirectory:
    """The revisions this release ships (Alembic's view of store/migrations/)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """This release's newest revision (schema.HEAD must equal it)."""
    found = scripts().get_heads()
    if len(found) != 1:
        raise SchemaError(f"the migrations have {len(found)} heads, not one: {found}")
    return found[0]


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL of a store URL (module docstring). Raises ValueError for any
    other scheme."""
    if url.startswith("sqlite:///"):
        sqlite_path(url)  # the same checks the store makes: a file, not :memory:
        return url
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    raise ValueError(
        f"unsupported store URL {redacted(url)!r}: use sqlite:///PATH or postgresql://..."
    )


def upgrade(url: str, target: str = "head") -> Upgrade:
    """Bring the journal at `url` to this release's head (or to the revision `target`:
    tests build a journal as an earlier revision left it), under the upgrade lock.

    Raises JournalTooNew when its revision is unknown here (a newer release wrote it),
    SchemaError when the store cannot be reached or a revision fails (nothing of a
    failed upgrade is kept: it runs in one transaction)."""
    with _locked_connection(url) as connection:
        before = _revision(connection)
        _known_or_refuse(before)
        config = alembic_config()
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, target)
            connection.commit()
        except SQLAlchemyError as exc:
            raise SchemaError(
                f"journal {redacted(url)}: the upgrade from {before or 'none'} to "
                f"{head() if target == 'head' else target} "
                f"failed, the journal is left as it was: {_first_line(exc)}"
            ) from exc
        return Upgrade(before, _revision(connection) or "none")


def current(url: str) -> Current:
    """The journal's revision and how it stands against this release's head. Raises
    SchemaError when the store cannot be reached, or names a SQLite file that does not
    exist (it is not created: this only reads)."""
    if url.startswith("sqlite:///") and not sqlite_path(url).exists():
        raise SchemaError(f"no journal at {sqlite_path(url)}")
    with _connection(url) as connection:
        revision = _revision(connection)
    newest = head()
    if revision is not None and revision not in _known():
        return Current(revision, newest, None)
    behind = len(list(scripts().iterate_revisions(newest, revision or "base")))
    return Current(revision, newest, behind)


def _known() -> set[str]:
    return {script.revision for script in scripts().walk_revisions()}


def _known_or_refuse(revision: str | None) -> None:
    if revision is not None and revision not in _known():
        raise JournalTooNew.at(revision, head())


def _revision(connection: Connection) -> str | None:
    revision = MigrationContext.configure(connection).get_current_revision()
    connection.commit()  # the read's transaction, so that Alembic begins its own
    return revision


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    """A connection of its own (no pool: one upgrade, then closed); failures to reach
    the store become SchemaError naming it without its password."""
    try:
        engine = create_engine(sqlalchemy_url(url), poolclass=NullPool, **_connect_args(url))
    except (ValueError, SQLAlchemyError, ImportError) as exc:
        raise SchemaError(f"cannot use store {redacted(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _transactional_sqlite(engine)
    try:
        with engine.connect() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise SchemaError(f"journal {redacted(url)}: {_first_line(exc)}") from exc
    finally:
        engine.dispose()


def _connect_args(url: str) -> dict[str, Any]:
    """A PostgreSQL server that does not answer fails in CONNECT_TIMEOUT_S, as the store
    does (unless the URL sets its own connect_timeout)."""
    if url.startswith("sqlite:///") or "connect_timeout=" in url:
        return {}
    return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}


def _transactional_sqlite(engine: Engine) -> None:
    """Make the sqlite3 driver run DDL inside the transaction SQLAlchemy begins (by
    default it commits before DDL), as SQLAlchemy's pysqlite documentation shows, so an
    upgrade is all or nothing there as on PostgreSQL."""

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        # WAL from the journal's first transaction, as the store opens it: other
        # processes' reads never wait for the upgrade's write
        enable_wal(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def _locked_connection(url: str) -> Iterator[Connection]:
    """_connection, holding the upgrade lock (module docstring) while the block runs."""
    if url.startswith("sqlite:///"):
        with _writers_flock(url), _connection(url) as connection:
            yield connection
        return
    with _connection(url) as connection:
        lock = {"id": POSTGRES_UPGRADE_LOCK}
        connection.execute(text("SELECT pg_advisory_lock(:id)"), lock)
        connection.commit()
        try:
            yield connection
        finally:
            connection.rollback()  # a failed revision left its transaction aborted
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), lock)
            connection.commit()


@contextmanager
def _writers_flock(url: str) -> Iterator[None]:
    path = sqlite_path(url)
    if not path.parent.is_dir():
        raise SchemaError(f"journal {path}: directory {path.parent} does not exist")
    lock = writers_lock_path(path)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise SchemaError(f"cannot open {lock}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _first_line(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's background link and SQL echo."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else repr(original)


def main(stdin: Any = sys.stdin) -> int:
    """`python -m receiver.store.migrate`: upgrade the journal whose URL is on stdin;
    print what was done; exit 0, EXIT_TOO_NEW for a newer journal, 1 on failure (the
    reason on stderr)."""
    url = stdin.read().strip()
    try:
        print(upgrade(url))
    except JournalTooNew as exc:
        print(exc, file=sys.stderr)
        return EXIT_TOO_NEW
    except SchemaError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
