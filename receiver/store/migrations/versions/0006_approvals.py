"""approvals: a person's decision on an action, and the alert that asks for it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Frozen copy of store/approvals.py's table as issue 17 introduced it. One row per action
that waits (or waited) for approval: when it was requested, its deadline and what the
timeout does, the decision with who made it, when and why, and the
`RemediationAwaitingApproval` alert (as posted) with its delivery state, an outbox:
pending (to post), firing (posted), ended (its end posted, or never needed).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = [
    """CREATE TABLE IF NOT EXISTS approvals (
        action_id INTEGER PRIMARY KEY,
        strategy TEXT NOT NULL,
        requested_at DOUBLE PRECISION NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        on_timeout TEXT NOT NULL,
        decision TEXT,
        decided_by TEXT NOT NULL DEFAULT '',
        decided_at DOUBLE PRECISION,
        comment TEXT NOT NULL DEFAULT '',
        alert TEXT NOT NULL,
        alert_state TEXT NOT NULL,
        alert_sent_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS approvals_by_alert ON approvals (alert_state)",
]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in TABLES:
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
