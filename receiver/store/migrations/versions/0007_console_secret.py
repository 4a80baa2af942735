"""console secret: the key that signs the console's form tokens

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

Frozen copy of store/secrets.py's table as issue 17 introduced it. One row per named
secret the replicas of one journal must share: `console_csrf` signs the tokens of the
console's forms, so a form served by one replica is accepted by another and after a
restart. The value is made by the first process that needs it (store/secrets.py).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE IF NOT EXISTS secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in TABLES:
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
