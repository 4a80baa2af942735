"""keyed tables: SQLite stores action_events and breakers in their key's own B-tree

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

On SQLite a table with a rowid keeps its rows in the rowid's B-tree and each other key
in an index of its own, so every row written writes two B-trees, and on the commit two
pages (two WAL frames):

    action_events  rows by id,                index action_events_by_action (action_id)
    breakers       rows by rowid,             index sqlite_autoindex_breakers_1
                                              (its PRIMARY KEY strategy, target)

Every query of action_events reads one action's events (`WHERE action_id = ?` or `IN`,
ordered by id) and every query of breakers names (strategy, target). A WITHOUT ROWID
table keyed by exactly that (SQLite's "Clustered Indexes and the WITHOUT ROWID
Optimization") holds each row once, in key order: one B-tree, one page per write.
action_events is keyed (action_id, id), where id numbers an action's events from its
last one (store/sql.py `add_event`: a single writer at a time on SQLite, so no two
writers take one number); the ids already journaled keep their values, which keep
each action's order. breakers keeps its key. Columns, their order and every row are
kept. An ingested one-alert notification wrote 17.6 pages, a dispatched command action
19.9 over its three commits (bench/walframes.py); each event is one page fewer now, and
each new breaker too.

SQLite rebuilds each table (its documented way: create the new one, copy, drop, rename),
under the upgrade's lock, reading each once. PostgreSQL keeps rows in a heap with every
key an index, so a WITHOUT ROWID has no counterpart there; its tables are unchanged,
and its action_events ids still come from the table's sequence (concurrent replicas
could take the same next number of an action). Frozen: no import of live code.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: table -> its keyed form (the columns in their order, then the key), and the columns
KEYED = {
    "action_events": (
        """(
            id INTEGER NOT NULL,
            action_id INTEGER NOT NULL REFERENCES actions (id),
            at DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (action_id, id)
        ) WITHOUT ROWID""",
        "id, action_id, at, status, reason",
    ),
    "breakers": (
        """(
            strategy TEXT NOT NULL,
            target TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (strategy, target)
        ) WITHOUT ROWID""",
        "strategy, target, state, updated_at",
    ),
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table, (definition, columns) in KEYED.items():
        bind.exec_driver_sql(f"CREATE TABLE {table}_keyed {definition}")
        bind.exec_driver_sql(f"INSERT INTO {table}_keyed ({columns}) SELECT {columns} FROM {table}")
        bind.exec_driver_sql(f"DROP TABLE {table}")  # and its indexes
        bind.exec_driver_sql(f"ALTER TABLE {table}_keyed RENAME TO {table}")


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
