"""label value order: admitted label values by order of arrival

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

An index of metric_label_values by (label, seq), as issue 16 introduced it: admitting a
new value of a bounded label (store/labels.py) gives it the label's next `seq`, its
highest plus one, which this index finds in a few page reads instead of counting every
value of the label (up to limits.max_label_values of them) on each admission.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = [
    "CREATE INDEX IF NOT EXISTS metric_label_values_by_seq ON metric_label_values (label, seq)",
]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in INDEXES:
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
