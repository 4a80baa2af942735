"""A throwaway PostgreSQL schema per test, on the server the project's machines run.

The store is opened with a URL whose libpq `options` set the search_path, so every
connection the store opens (in this process or in child processes) lands in the fresh
schema, and dropping the schema removes everything the test wrote.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

POSTGRES_URL = os.environ.get(
    "REMEDIATOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def with_search_path(url: str, schema: str) -> str:
    """`url` with a libpq `options=-csearch_path=<schema>` query parameter added."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema(url: str = POSTGRES_URL) -> Iterator[str]:
    """Create `t_<random>`, yield a store URL that uses it, drop it (CASCADE) afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {url} (set REMEDIATOR_TEST_POSTGRES): {exc}"
        ) from exc
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield with_search_path(url, schema)
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
