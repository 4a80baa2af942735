"""A fresh journal on each backend the store has, for tests that run over both (the
integration tests' `store` fixture, tests/integration/conftest.py, is built on it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from receiver.store import open_store
from tests.support.postgres import postgres_schema

#: the store's backends, as pytest params: a SQLite file, the local PostgreSQL
BACKENDS = ["sqlite", "postgres"]


@contextmanager
def journal_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The store URL of a fresh journal: `sqlite` a file tmp_path/journal.db, `postgres`
    a throwaway schema on the local PostgreSQL (tests/support/postgres.py), dropped
    afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}"
        return
    if backend != "postgres":
        raise ValueError(f"unknown backend {backend!r}: use one of {BACKENDS}")
    with postgres_schema() as url:
        yield url


@contextmanager
def opened_store(backend: str, tmp_path: Path) -> Iterator[Any]:
    """The store of a fresh journal (see journal_url), opened, closed afterwards."""
    with journal_url(backend, tmp_path) as url:
        store = open_store(url)
        try:
            yield store
        finally:
            store.close()
