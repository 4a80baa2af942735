"""Which schema revision the journal is at, without SQLAlchemy: the server's fast path.

Alembic owns the journal's schema (the revisions in store/migrations/versions/, run by
store/migrate.py). Every store checks at open that the journal is at HEAD with one
plain query on its own connection; only a journal that is behind (or new, or made by a
release before Alembic, which has no `alembic_version` table) loads Alembic and
SQLAlchemy to upgrade it:

    open ──► SELECT version_num FROM alembic_version ──► HEAD: done (no import)
                         │ anything else
                         ▼
             migrate.upgrade(url): lock ─► revision known? ─► upgrade to HEAD ─► unlock
                                                 │ unknown: written by a newer release
                                                 ▼
                                          JournalTooNew (refuse to start)

A long-lived process (the server, see serve()) calls isolate_upgrades() first: its
upgrades then run in a child process (`python -m receiver.store.migrate`), so its own
memory never holds SQLAlchemy, even on a fresh journal. The lock that makes replicas
starting together migrate once is migrate.py's: an advisory lock on PostgreSQL, the
`<journal>-writers` flock on SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: the newest revision in store/migrations/versions/ (a unit test checks it against
#: Alembic's head): a journal at it needs nothing done at start
HEAD = "0010"
#: PostgreSQL advisory lock id held for a whole upgrade: the id the store used before
#: Alembic to create its tables, so replicas of an older release wait for it too
POSTGRES_UPGRADE_LOCK = 0x72656D65
#: exit status of `python -m receiver.store.migrate` for a journal newer than the code
EXIT_TOO_NEW = 3

_isolated = False


class SchemaError(RuntimeError):
    """The journal cannot be brought to this release's schema (the message says why and
    what to do)."""


class JournalTooNew(SchemaError):
    """The journal's revision is unknown to this release: a newer release upgraded it.
    The server refuses to run on it (its SQL may not match the tables)."""

    @classmethod
    def at(cls, revision: str, head: str = HEAD) -> JournalTooNew:
        """The error for a journal at `revision` met by code whose newest is `head`."""
        return cls(
            f"the journal is at schema revision {revision!r}, newer than this release of "
            f"Remediator knows (its newest is {head!r}): a newer Remediator upgraded it. "
            "Upgrade Remediator to that release or later; never run an older one on it."
        )


def isolate_upgrades() -> None:
    """From now on, this process upgrades journals in a child process (module
    docstring): call it first in a long-lived process that must stay small."""
    global _isolated
    _isolated = True


def ensure_head(url: str, revision: str | None) -> None:
    """Upgrade the journal at `url` to HEAD unless `revision` (its alembic_version, None
    when it has none) is HEAD already. Raises JournalTooNew for a journal newer than
    this release, SchemaError when the upgrade fails."""
    if revision == HEAD:
        return
    if _isolated:
        upgrade_in_child(url)
        return
    from receiver.store import migrate  # Alembic and SQLAlchemy: only when behind

    migrate.upgrade(url)


def upgrade_in_child(url: str) -> str:
    """Run the upgrade in `python -m receiver.store.migrate` (the URL on its stdin, not
    in its argv, which every local user can read); returns what it reports."""
    done = subprocess.run(
        [sys.executable, "-m", "receiver.store.migrate"],
        input=url,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == EXIT_TOO_NEW:
        raise JournalTooNew(done.stderr.strip())
    if done.returncode != 0:
        raise SchemaError(done.stderr.strip() or f"schema upgrade exited {done.returncode}")
    return done.stdout.strip()


def version_rows(execute: Any, table_exists_sql: str) -> list[tuple[Any, ...]]:
    """The rows of alembic_version (none when the table does not exist), read through a
    transaction's `execute`; `table_exists_sql` is the store's query for a table named
    alembic_version, answering one row with a true value when it exists."""
    if not execute(table_exists_sql, ()).fetchone()[0]:
        return []
    return execute("SELECT version_num FROM alembic_version", ()).fetchall()


def single_revision(rows: list[tuple[Any, ...]]) -> str | None:
    """The journal's revision: None when it has no version (or several heads, which
    these revisions never make; Alembic sorts that out on the upgrade path)."""
    return rows[0][0] if len(rows) == 1 else None


def redacted(url: str) -> str:
    """`url` with its password (if any) shown as `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable store URL>"
