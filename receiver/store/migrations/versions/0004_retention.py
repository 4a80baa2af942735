"""retention: the index the pruning walk over notifications uses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Frozen copy of store/retention.py's index as issue 18 introduced it: the background
job walks notifications by (received_at, id) in batches; without it each batch would
scan the table from the start. (Its walk over incidents uses 0003's incidents_by_end.)
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS notifications_by_received ON notifications (received_at, id)"
    )


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
