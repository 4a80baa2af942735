"""MTTR and availability in bounded reads: per-service aggregates of closed incidents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Frozen copy of store/servicewindows.py's tables as issue 18 introduced them, and the
backfill that fills them from the closed incidents a journal already holds (run here,
once, under the upgrade's lock, before any server of this release writes). A service's
rows are keyed by its series name: itself when its value is admitted in
metric_label_values, else `other` (a server with a lower `limits.max_label_values`
folds the rest at read).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUCKET_SECONDS = 300
OTHER = "other"

TABLES = [
    # one row per service series with closed incidents: its lock for merging, and a count
    """CREATE TABLE IF NOT EXISTS incident_window_services (
        service TEXT NOT NULL PRIMARY KEY,
        closed BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS incident_window_buckets (
        service TEXT NOT NULL,
        bucket_start DOUBLE PRECISION NOT NULL,
        incidents BIGINT NOT NULL,
        duration_seconds DOUBLE PRECISION NOT NULL,
        cumulative_incidents BIGINT NOT NULL,
        cumulative_duration_seconds DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (service, bucket_start)
    )""",
    """CREATE TABLE IF NOT EXISTS incident_downtime_segments (
        service TEXT NOT NULL,
        starts_at_ts DOUBLE PRECISION NOT NULL,
        ends_at_ts DOUBLE PRECISION NOT NULL,
        covered_before DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (service, starts_at_ts)
    )""",
    # the window's partial edge bucket: closings by end time, with what a scrape sums of
    # them (covering: the edge's rows are read from the index alone, side by side)
    "CREATE INDEX IF NOT EXISTS incidents_by_end "
    "ON incidents (ends_at_ts, service, starts_at_ts, duration_seconds)",
]

Execute = Callable[[str, Sequence[Any]], Any]
ExecuteMany = Callable[[str, Sequence[Sequence[Any]]], Any]
Fold = Callable[[str], str]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in TABLES:
        bind.exec_driver_sql(statement)
    paramstyle = bind.dialect.paramstyle  # qmark (sqlite3) or format/pyformat (psycopg)
    marker = "?" if paramstyle == "qmark" else "%s"

    def execute(sql: str, params: Sequence[Any] = ()) -> Any:
        return bind.exec_driver_sql(sql.replace("?", marker), tuple(params))

    def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        if rows:
            return bind.exec_driver_sql(sql.replace("?", marker), [tuple(r) for r in rows])
        return None

    admitted = {
        row[0] for row in execute("SELECT value FROM metric_label_values WHERE label = 'service'")
    }
    backfill(execute, lambda s: s if s in admitted else OTHER, execute_many)


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")


def bucket_of(at: float) -> float:
    """The start of the bucket holding `at` (seconds): b <= at < b + BUCKET_SECONDS,
    exactly (the float division may round across a bucket edge; corrected here)."""
    index = math.floor(at / BUCKET_SECONDS)
    if index * BUCKET_SECONDS > at:
        index -= 1
    elif (index + 1) * BUCKET_SECONDS <= at:
        index += 1
    return float(index * BUCKET_SECONDS)


def backfill(
    execute: Execute, fold: Fold, execute_many: ExecuteMany | None = None, batch: int = 10_000
) -> int:
    """Fill the aggregates from the closed incidents a journal already holds (once, when
    the tables are new: the caller's transaction must be the only one writing them).
    `fold` gives a service's series name; `execute_many` (sql, rows), when given, writes
    the rows in bulk. One pass over the closed incidents in start order (on the
    (status, starts_at_ts) index), memory bounded by the rows it writes. Returns the
    number of incidents read."""
    cursor = execute(
        "SELECT service, starts_at_ts, ends_at_ts FROM incidents "
        "WHERE status = 'resolved' AND ends_at_ts IS NOT NULL ORDER BY starts_at_ts",
        (),
    )
    builders: dict[str, _Builder] = {}
    read = 0
    while rows := cursor.fetchmany(batch):
        for service, start, end in rows:
            name = fold(service)
            if name not in builders:
                builders[name] = _Builder()
            builders[name].add(float(start), float(end))
        read += len(rows)
    many = execute_many or (lambda sql, rows: [execute(sql, row) for row in rows])
    for name, builder in sorted(builders.items()):
        _write_built(execute, many, name, builder)
    return read


class _Builder:
    """One series' buckets and segments, built from its intervals in start order."""

    def __init__(self) -> None:
        self.buckets: dict[float, list[float]] = {}  # start -> [incidents, seconds]
        self.segments: list[list[float]] = []  # [start, end, covered_before]
        self.covered = 0.0

    def add(self, start: float, end: float) -> None:
        bucket = self.buckets.setdefault(bucket_of(end), [0, 0.0])
        bucket[0] += 1
        bucket[1] += max(0.0, end - start)
        if end <= start:
            return
        last = self.segments[-1] if self.segments else None
        if last is not None and start <= last[1]:
            if end > last[1]:
                self.covered += end - last[1]
                last[1] = end
            return
        self.segments.append([start, end, self.covered])
        self.covered += end - start


def _write_built(execute: Execute, many: ExecuteMany, service: str, built: _Builder) -> None:
    count = sum(int(n) for n, _ in built.buckets.values())
    execute(
        "INSERT INTO incident_window_services (service, closed) VALUES (?, ?)", (service, count)
    )
    running_count, running_seconds = 0, 0.0
    rows = []
    for bucket, (n, seconds) in sorted(built.buckets.items()):
        running_count += int(n)
        running_seconds += seconds
        rows.append((service, bucket, int(n), seconds, running_count, running_seconds))
    many(
        "INSERT INTO incident_window_buckets (service, bucket_start, incidents, "
        "duration_seconds, cumulative_incidents, cumulative_duration_seconds) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    segments = [(service, *segment) for segment in built.segments]
    if segments:
        many(
            "INSERT INTO incident_downtime_segments (service, starts_at_ts, ends_at_ts, "
            "covered_before) VALUES (?, ?, ?, ?)",
            segments,
        )
