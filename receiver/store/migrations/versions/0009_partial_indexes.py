"""partial indexes: index only the rows their queries look for

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Four indexes held an entry for every row although every query that uses them looks only
at rows whose indexed column is set (issue 16):

    actions_by_fleet            (strategy, fleet, status)   WHERE fleet IS NOT NULL
    runbook_runs_by_escalation  (escalation, id)            WHERE escalation IS NOT NULL
    runbook_runs_by_repeat      (repeat_at)                 WHERE repeat_at IS NOT NULL
    incidents_by_end            (ends_at_ts, service, starts_at_ts, duration_seconds)
                                                            WHERE ends_at_ts IS NOT NULL

Every write of such a row still wrote its index: an action outside any fleet rewrote
its entry in actions_by_fleet at each change of status, a run rewrote its (NULL) entries
in the escalation and repeat indexes when it ended, an incident opened without an end
wrote incidents_by_end. On SQLite each is one more page in the transaction's commit
(a WAL frame: a one-alert ingest wrote 21.6 pages, a dispatched action 24 over its
three commits). Now those rows are not in the indexes at all.

Each query that reads them names the column with `=`, `<`, `<=` or `>=` (or `IS NOT
NULL`), which implies `IS NOT NULL`, so SQLite's and PostgreSQL's planners use the
partial index as they used the whole one (tests/integration/test_partial_indexes.py
checks the plans). Rebuilding them reads the tables once under the upgrade's lock.
Frozen: no import of live code.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: (index, table and columns, the rows it holds)
PARTIAL = [
    ("actions_by_fleet", "actions (strategy, fleet, status)", "fleet IS NOT NULL"),
    ("runbook_runs_by_escalation", "runbook_runs (escalation, id)", "escalation IS NOT NULL"),
    ("runbook_runs_by_repeat", "runbook_runs (repeat_at)", "repeat_at IS NOT NULL"),
    (
        "incidents_by_end",
        "incidents (ends_at_ts, service, starts_at_ts, duration_seconds)",
        "ends_at_ts IS NOT NULL",
    ),
]


def upgrade() -> None:
    bind = op.get_bind()
    for name, columns, rows in PARTIAL:
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        bind.exec_driver_sql(f"CREATE INDEX {name} ON {columns} WHERE {rows}")


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")
