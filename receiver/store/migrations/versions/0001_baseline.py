"""baseline: the journal's schema as release 0.1.0 made it before Alembic owned it

Revision ID: 0001
Revises:
Create Date: 2026-11-30

Frozen copy of what `create_schema()` created at commit fd0029c (store/sql.py SCHEMA,
ADDED_COLUMNS, ADDED_INDEXES; labels.TABLE, spool.TABLE, runs.TABLE/INDEXES,
fleets.TABLES/ADDED_COLUMNS/ADDED_INDEXES; labels.adopt_existing). Idempotent, so the
same revision creates a fresh journal and brings a journal of any earlier release
(which has no alembic_version table) up to this baseline: tables and indexes are
created IF NOT EXISTS, a column is added only when its table lacks it, and label values
are adopted only when none are recorded yet. Never edit it: change the schema in a new
revision.
"""

from __future__ import annotations

import json
from typing import Any

from alembic import op
from sqlalchemy import text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: (primary key, raw bytes) column types per dialect
TYPES = {
    "sqlite": {"pk": "INTEGER PRIMARY KEY", "blob": "BLOB"},
    "postgresql": {"pk": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"},
}

TABLES = [
    """CREATE TABLE IF NOT EXISTS notifications (
        id {pk},
        received_at DOUBLE PRECISION NOT NULL,
        group_key TEXT NOT NULL,
        receiver TEXT NOT NULL,
        status TEXT NOT NULL,
        alerts INTEGER NOT NULL,
        firing INTEGER NOT NULL,
        resolved INTEGER NOT NULL,
        truncated_alerts INTEGER NOT NULL,
        external_url TEXT NOT NULL,
        summary TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS incidents (
        id {pk},
        fingerprint TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        starts_at_ts DOUBLE PRECISION NOT NULL,
        alertname TEXT NOT NULL,
        service TEXT NOT NULL,
        status TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        generator_url TEXT NOT NULL,
        matched INTEGER NOT NULL,
        first_seen DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        ends_at TEXT,
        ends_at_ts DOUBLE PRECISION,
        duration_seconds DOUBLE PRECISION,
        UNIQUE (fingerprint, starts_at)
    )""",
    "CREATE INDEX IF NOT EXISTS incidents_by_status ON incidents (status, starts_at_ts)",
    "CREATE INDEX IF NOT EXISTS incidents_by_service ON incidents (service, starts_at_ts)",
    """CREATE TABLE IF NOT EXISTS actions (
        id {pk},
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        strategy TEXT NOT NULL,
        action TEXT NOT NULL,
        executor TEXT NOT NULL,
        target TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        claimed_by TEXT,
        heartbeat_at DOUBLE PRECISION,
        output TEXT NOT NULL DEFAULT '',
        process TEXT,
        step INTEGER,
        run_id INTEGER,
        not_before DOUBLE PRECISION,
        waiting TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS actions_by_status ON actions (status, id)",
    "CREATE INDEX IF NOT EXISTS actions_by_incident ON actions (incident_id)",
    # the claim's gates (store/dispatch.py GateReader: lock, cooldown, rate limit) look
    # up one target's actions: without it each claim scanned every action of the
    # strategy, a cost that grew with the journal (0.75 ms per claim at 1,000 actions)
    "CREATE INDEX IF NOT EXISTS actions_by_target ON actions (target, started_at)",
    """CREATE TABLE IF NOT EXISTS metric_totals (
        metric TEXT NOT NULL,
        labels TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (metric, labels)
    )""",
    """CREATE TABLE IF NOT EXISTS action_events (
        id {pk},
        action_id INTEGER NOT NULL REFERENCES actions (id),
        at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS action_events_by_action ON action_events (action_id)",
    """CREATE TABLE IF NOT EXISTS breakers (
        strategy TEXT NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (strategy, target)
    )""",
    """CREATE TABLE IF NOT EXISTS targets (
        executor TEXT NOT NULL,
        target TEXT NOT NULL,
        current_replicas INTEGER NOT NULL,
        desired_replicas INTEGER NOT NULL,
        min_replicas INTEGER NOT NULL,
        max_replicas INTEGER NOT NULL,
        history TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (executor, target)
    )""",
    """CREATE TABLE IF NOT EXISTS metric_label_values (
        label TEXT NOT NULL,
        value TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (label, value)
    )""",
    """CREATE TABLE IF NOT EXISTS spooled_notifications (
        id {pk},
        received_at DOUBLE PRECISION NOT NULL,
        body {blob} NOT NULL,
        alerts INTEGER NOT NULL,
        next_alert INTEGER NOT NULL,
        summary TEXT NOT NULL,
        claimed_by TEXT,
        heartbeat_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS runbook_runs (
    id {pk},
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    strategy TEXT NOT NULL,
    run INTEGER NOT NULL,
    status TEXT NOT NULL,
    current_step INTEGER,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    reason TEXT NOT NULL,
    repeat_at DOUBLE PRECISION,
    escalation TEXT,
    escalation_reason TEXT,
    escalation_note TEXT,
    escalation_claimed_at DOUBLE PRECISION,
    UNIQUE (incident_id, strategy, run)
)""",
    "CREATE INDEX IF NOT EXISTS runbook_runs_by_incident ON runbook_runs (incident_id)",
    "CREATE INDEX IF NOT EXISTS runbook_runs_by_escalation ON runbook_runs (escalation, id)",
    "CREATE INDEX IF NOT EXISTS runbook_runs_by_repeat ON runbook_runs (repeat_at)",
    """CREATE TABLE IF NOT EXISTS fleets (
        strategy TEXT NOT NULL,
        fleet TEXT NOT NULL,
        state TEXT NOT NULL,
        size INTEGER,
        size_at DOUBLE PRECISION,
        size_note TEXT,
        next_at DOUBLE PRECISION,
        reason TEXT NOT NULL DEFAULT '',
        updated_at DOUBLE PRECISION NOT NULL,
        escalation TEXT,
        escalation_summary TEXT,
        escalation_note TEXT,
        escalation_claimed_at DOUBLE PRECISION,
        PRIMARY KEY (strategy, fleet)
    )""",
    """CREATE TABLE IF NOT EXISTS fleet_analyses (
        id {pk},
        strategy TEXT NOT NULL,
        fleet TEXT NOT NULL,
        stage INTEGER NOT NULL,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        due_at DOUBLE PRECISION NOT NULL,
        claimed_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        verdict TEXT,
        judgement TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS fleet_analyses_due ON fleet_analyses (status, due_at)",
    "CREATE INDEX IF NOT EXISTS fleet_analyses_by_fleet ON fleet_analyses (strategy, fleet, id)",
]

#: columns earlier releases added to existing tables, in the order they were added:
#: (table, column, type)
ADDED_COLUMNS = [
    # JSON identity of the process group a command runs in (executors/processes.py),
    # so the crash rule can find it after the process that started it died
    ("actions", "process", "TEXT"),
    # why an incident was closed when no resolution closed it: superseded by a later
    # occurrence of its fingerprint, or reconciled with Alertmanager (engine.py,
    # reconcile.py); NULL for a resolution
    ("incidents", "close_reason", "TEXT"),
    # the externalURL of the notification that opened it: the Alertmanager to ask
    ("incidents", "external_url", "TEXT"),
    # runbooks (runs.py): the step an action carries out and its run; a planned action
    # is not claimed before not_before, and `waiting` says why (a gate or the step's wait)
    ("actions", "step", "INTEGER"),
    ("actions", "run_id", "INTEGER"),
    ("actions", "not_before", "DOUBLE PRECISION"),
    ("actions", "waiting", "TEXT"),
    # the fleet an action's target belongs to (NULL: its strategy has no `fleet`)
    ("actions", "fleet", "TEXT"),
]
ADDED_INDEXES = [
    "CREATE INDEX IF NOT EXISTS actions_by_run ON actions (run_id)",
    "CREATE INDEX IF NOT EXISTS actions_by_fleet ON actions (strategy, fleet, status)",
]

#: metric labels whose values are bounded (labels.BOUNDED_LABELS at fd0029c), and the
#: value every other one folds into
BOUNDED_LABELS = frozenset({"service", "target", "strategy"})
OTHER = "other"


def upgrade() -> None:
    bind = op.get_bind()
    types = TYPES[bind.dialect.name]
    for statement in TABLES:
        bind.exec_driver_sql(statement.format(**types))
    for table, column, kind in ADDED_COLUMNS:
        if column not in _columns(bind, table):
            bind.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in ADDED_INDEXES:
        bind.exec_driver_sql(statement)
    _adopt_label_values(bind)


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")


def _columns(bind: Any, table: str) -> set[str]:
    """Column names from a zero-row SELECT, which both drivers describe (the names are
    the constants above)."""
    return set(bind.exec_driver_sql(f"SELECT * FROM {table} LIMIT 0").keys())


def _adopt_label_values(bind: Any) -> None:
    """Admit the bounded label values a journal written before the bound existed already
    holds (once: when none are recorded), in sorted order, as labels.adopt_existing did."""
    if bind.exec_driver_sql("SELECT 1 FROM metric_label_values LIMIT 1").first():
        return
    found: dict[str, set[str]] = {}
    for (labels,) in bind.exec_driver_sql("SELECT labels FROM metric_totals"):
        for name, value in json.loads(labels).items():
            if name in BOUNDED_LABELS and value != OTHER:
                found.setdefault(name, set()).add(value)
    for strategy, target in bind.exec_driver_sql("SELECT strategy, target FROM breakers"):
        found.setdefault("strategy", set()).add(strategy)
        found.setdefault("target", set()).add(target)
    for (target,) in bind.exec_driver_sql("SELECT target FROM targets"):
        found.setdefault("target", set()).add(target)
    rows = [
        {"label": label, "value": value, "seq": seq}
        for label, values in sorted(found.items())
        for seq, value in enumerate(sorted(values - {OTHER}))
    ]
    if rows:
        insert = "INSERT INTO metric_label_values (label, value, seq) VALUES (:label, :value, :seq)"
        bind.execute(text(insert), rows)
