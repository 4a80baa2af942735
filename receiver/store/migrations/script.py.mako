"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    """Frozen SQL, portable across SQLite and PostgreSQL (or one variant per
    `op.get_bind().dialect.name`): never import live code lists into a revision."""
    ${upgrades if upgrades else "op.execute(...)"}


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
