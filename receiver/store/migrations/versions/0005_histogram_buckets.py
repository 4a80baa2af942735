"""histogram buckets stored per bucket, not cumulative

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Until this revision a histogram observation added 1 to every cumulative bucket row at or
above its value (Prometheus's `le` buckets, as exported). From it on the row of bound
`le` counts only the observations in (previous bound, le], the +Inf row those above the
last bound, and reading sums them back up (store/totals.py at issue 16). This revision
converts the rows a journal holds, per series (metric and labels, `le` left out):

    cumulative  le=1: 2   le=5: 3   le=+Inf: 7
    per bucket  le=1: 2   le=5: 1   le=+Inf: 4     row(le_i) - row(le_(i-1)), ascending

A bucket row is a metric named `*_bucket` whose labels hold `le`. On PostgreSQL a total
is its metric_totals row plus its shard rows (metric_total_shards, revision 0002): each
bucket's shards are folded into its metric_totals row first, the sums converted, and
the shard rows deleted, which is exact (only the sums have a meaning; later writers add
per-bucket deltas to fresh shards). It runs under the upgrade's lock, before any server
of this release writes; a server of an earlier release must not write the journal
afterwards (it would add cumulative deltas again). Frozen: no import of live code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Key = tuple[str, str]  # (metric, stored labels JSON)


def upgrade() -> None:
    bind = op.get_bind()
    marker = "?" if bind.dialect.paramstyle == "qmark" else "%s"
    cumulative = _bucket_totals(bind)
    if not cumulative:
        return
    converted = per_bucket(cumulative)
    bind.exec_driver_sql(
        "INSERT INTO metric_totals (metric, labels, value) VALUES (?, ?, ?) "
        "ON CONFLICT (metric, labels) DO UPDATE SET value = excluded.value".replace("?", marker),
        [(metric, labels, value) for (metric, labels), value in sorted(converted.items())],
    )
    bind.exec_driver_sql(
        "DELETE FROM metric_total_shards WHERE metric = ? AND labels = ?".replace("?", marker),
        sorted(converted),
    )


def downgrade() -> None:
    raise NotImplementedError("the journal is upgraded only; restore a backup to go back")


def _bucket_totals(bind: Any) -> dict[Key, float]:
    """Every bucket row's total: its metric_totals row plus its shard rows."""
    found: dict[Key, float] = {}
    rows = [
        *bind.exec_driver_sql("SELECT metric, labels, value FROM metric_totals"),
        *bind.exec_driver_sql("SELECT metric, labels, value FROM metric_total_shards"),
    ]
    for metric, labels, value in rows:
        if metric.endswith("_bucket") and "le" in json.loads(labels):
            found[metric, labels] = found.get((metric, labels), 0.0) + float(value)
    return found


def per_bucket(cumulative: dict[Key, float]) -> dict[Key, float]:
    """Per-bucket counts from cumulative ones, keyed alike: within each series (the
    metric and its labels but `le`), in ascending `le` order (+Inf last), each row less
    the row below it. A bound with no row (an old journal wrote none below its first
    observation) counted nothing: the next row is taken less the last row present."""
    series: dict[tuple[str, str], list[tuple[float, Key]]] = {}
    for metric, labels in cumulative:
        parsed = json.loads(labels)
        bound = float(parsed.pop("le"))  # "+Inf" -> inf
        name = json.dumps(parsed, sort_keys=True)
        series.setdefault((metric, name), []).append((bound, (metric, labels)))
    converted: dict[Key, float] = {}
    for rows in series.values():
        converted.update(_differences(cumulative, sorted(rows)))
    return converted


def _differences(
    cumulative: dict[Key, float], rows: Iterable[tuple[float, Key]]
) -> Iterable[tuple[Key, float]]:
    below = 0.0
    for _, key in rows:
        yield key, cumulative[key] - below
        below = cumulative[key]
