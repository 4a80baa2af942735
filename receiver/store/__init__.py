"""Open the journal named by a store URL."""

from __future__ import annotations

from receiver.store.base import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable", "open_store"]


def open_store(url: str) -> Store:
    """sqlite:///PATH (default) or postgresql://... (needs the `postgres` extra)."""
    if url.startswith("sqlite:///"):
        from receiver.store.sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from receiver.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")
