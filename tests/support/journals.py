"""Journals for the schema-migration tests: the fixtures made by the release before
schema revisions (tests/fixtures/), a throwaway copy of one per backend, and a whole
journal's contents to compare before and after an upgrade."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.support.postgres import postgres_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: made by commit fd0029c's own code (tests/fixtures/make_journal.py says how)
SQLITE_FIXTURE = FIXTURES / "journal-fd0029c.db"
POSTGRES_FIXTURE = FIXTURES / "journal-fd0029c.sql"
VERSION_TABLE = "alembic_version"

Contents = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Journal:
    """A journal on one backend: its store URL and how to read it without the store."""

    backend: str  # "sqlite" | "postgres"
    url: str

    def contents(self) -> Contents:
        """Every row of every table but alembic_version, sorted, by table name."""
        tables = [name for name in self.tables() if name != VERSION_TABLE]
        return {name: sorted(self.query(f"SELECT * FROM {name}"), key=repr) for name in tables}

    def tables(self) -> list[str]:
        if self.backend == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        else:
            sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
        return [name for (name,) in self.query(sql)]

    def definitions(self) -> list[tuple[Any, ...]]:
        """The schema's tables, columns and indexes (alembic_version's left out), as the
        backend's catalog describes them."""
        if self.backend == "sqlite":
            return self.query(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE tbl_name != 'alembic_version' ORDER BY name"
            )
        columns = self.query(
            "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
            "column_default FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name != 'alembic_version' ORDER BY 1, 2"
        )
        indexes = self.query(
            "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '') "
            "FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename != 'alembic_version' ORDER BY 2"
        )
        return columns + indexes

    def revision_rows(self) -> list[tuple[Any, ...]]:
        return self.query(f"SELECT version_num FROM {VERSION_TABLE}")

    def set_revision(self, revision: str) -> None:
        self.query(f"UPDATE {VERSION_TABLE} SET version_num = '{revision}'", fetch=False)

    def query(self, sql: str, *, fetch: bool = True) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                rows = connection.execute(sql).fetchall()
                connection.commit()
                return rows
            finally:
                connection.close()
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if fetch else []


@contextmanager
def empty_journal(backend: str, workdir: Path) -> Iterator[Journal]:
    """A journal that does not exist yet: a file path, or an empty throwaway schema."""
    if backend == "sqlite":
        yield Journal(backend, f"sqlite:///{workdir / 'journal.db'}")
        return
    with postgres_schema() as url:
        yield Journal(backend, url)


@contextmanager
def fixture_journal(backend: str, workdir: Path) -> Iterator[Journal]:
    """A copy of the journal the release before schema revisions made."""
    with empty_journal(backend, workdir) as journal:
        if backend == "sqlite":
            shutil.copy(SQLITE_FIXTURE, workdir / "journal.db")
        else:
            subprocess.run(
                ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(POSTGRES_FIXTURE), journal.url],
                check=True,
                capture_output=True,
            )
        yield journal
