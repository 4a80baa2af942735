"""Alembic environment for the journal: run the revisions on the connection
receiver/store/migrate.py hands over (it holds the upgrade lock on it, or around it).

The revisions are plain SQL (no SQLAlchemy models: the hot path keeps its own SQL),
so there is no target metadata and no autogenerate. The version table is Alembic's
default `alembic_version`, unqualified: on PostgreSQL it lands in the first schema of
the connection's search_path, as the journal's tables do.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "run the journal's migrations through `remediator db upgrade` "
        "(receiver/store/migrate.py), which supplies the locked connection"
    )

# all revisions of one upgrade in one transaction, on SQLite too (migrate.py makes the
# driver begin it), so an upgrade that fails leaves the journal as it found it
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
