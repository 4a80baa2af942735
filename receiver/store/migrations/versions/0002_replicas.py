"""replicas on PostgreSQL: sharded running totals and concurrency slots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Frozen copy of store/locks.py's tables as issue 18 introduced them. On PostgreSQL a
transaction adds to a shard row of a running total that no other open transaction holds
(no hot row every ingest queues on); /metrics sums metric_totals and the shards. The
global concurrency cap is a set of slot rows taken FOR UPDATE SKIP LOCKED; the rows up
to the config's bound on max_concurrent_actions (64) are made here, so no claim ever
waits for another's insert. SQLite (one writer) uses neither, but has the same tables.
Existing totals stay where they are and are summed with the shards: no backfill.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE IF NOT EXISTS metric_total_shards (
        metric TEXT NOT NULL,
        labels TEXT NOT NULL,
        shard INTEGER NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (metric, labels, shard)
    )""",
    """CREATE TABLE IF NOT EXISTS action_slots (
        slot INTEGER PRIMARY KEY,
        action_id INTEGER
    )""",
]
#: the config's bound on max_concurrent_actions at this revision
SLOTS = 64


def upgrade() -> None:
    bind = op.get_bind()
    for statement in TABLES:
        bind.exec_driver_sql(statement)
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(
            "INSERT INTO action_slots (slot) SELECT s FROM generate_series(0, %(last)s) AS s "
            "ON CONFLICT (slot) DO NOTHING",
            {"last": SLOTS - 1},
        )


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
