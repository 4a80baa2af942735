"""Pruning the journal (the SQL of retention; receiver/retention.py decides the cutoffs).

A pass walks the old rows in key order, one batch per short write transaction:

    notifications (received before the cutoff) --> incidents (closed, ended before the
    cutoff, with their action_events, actions, runbook_runs) --> fleet_analyses (done,
    finished before the incidents' cutoff) --> MTTR window aggregates --> done

Children go before their parents (action_events.action_id REFERENCES actions,
actions.incident_id and runbook_runs.incident_id REFERENCE incidents). Each batch's
deletions are counted in `remediator_journal_pruned_rows_total{table}` in the same
transaction. A dry run walks the same batches in read transactions and counts instead
of deleting, so it says exactly what a prune at the same moment would delete.

What goes:

- notifications received before `Cutoffs.notifications` (no row references them);
- incidents closed (not `firing`) whose end is before `Cutoffs.incidents`, with their
  actions, those actions' events and the incident's runbook runs;
- fleet canary analyses that are done and finished before `Cutoffs.incidents`;
- the per-service MTTR and availability aggregates (store/servicewindows.py) wholly
  before `Cutoffs.actions`, which is never later than now minus the MTTR window, so no
  read needs them. They are derived rows, not journal records: not counted in the
  metric, and a dry run leaves them out.

What is never pruned, and why:

- spooled_notifications: a large notification accepted and not yet journaled whole; it
  leaves the spool only by being journaled (store/spool.py);
- a firing incident, and with it its actions, events and runs (the dispatcher, the
  health figures and reconciliation read them);
- an incident with an action not final (planned, waiting, running:
  anything outside FINAL_ACTION_STATUSES), or with an action started, updated or
  finished within the longest gate window (`Cutoffs.actions`: the lock, cooldown and
  budget gates and the fleet size read actions over their windows);
- an incident with a runbook run not ended, or whose escalation is still owed
  (`pending`: an outbox entry not yet delivered);
- an incident with an action in a fleet that is busy (a wave not done or halted,
  targets in flight or loose): the wave planner reads its targets' runs and incidents;
- the newest incident of each service value in metric_label_values and one of the
  other services: `/metrics` lists a service's MTTR, availability and health series
  as long as the journal holds an incident of it, so pruning must not end a series;
- breakers, targets, fleets, metric_totals and metric_label_values: current state and
  running totals, which stay monotonic (counters and histograms never shrink).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver import fleets
from receiver.retention import PAUSE, Cutoffs
from receiver.store import servicewindows, totals
from receiver.store.base import FINAL_ACTION_STATUSES

log = logging.getLogger(__name__)

PRUNED_METRIC = "remediator_journal_pruned_rows_total"
#: the tables a pass deletes from, in the order it reports them (the metric's `table`)
TABLES = (
    "notifications",
    "incidents",
    "actions",
    "action_events",
    "runbook_runs",
    "fleet_analyses",
)

NOTIFICATIONS, INCIDENTS, ANALYSES, WINDOWS, DONE = (
    "notifications",
    "incidents",
    "analyses",
    "windows",
    "done",
)
_PHASES = (NOTIFICATIONS, INCIDENTS, ANALYSES, WINDOWS, DONE)
_FINAL = ", ".join(f"'{status}'" for status in FINAL_ACTION_STATUSES)  # constants only
_BUSY_WAVE = frozenset(fleets.PHASES) - {fleets.DONE, fleets.HALTED}


@dataclass
class Pass:
    """One pass over the journal: its cutoffs, where each walk has got to (keyset
    cursors), what it keeps whatever its age, and what it deleted so far (per table).

    Built by `begin`; advanced one batch at a time by `step`."""

    cutoffs: Cutoffs
    batch_size: int
    witnesses: frozenset[int] = frozenset()
    busy_fleets: frozenset[tuple[str, str]] = frozenset()
    phase: str = NOTIFICATIONS
    after_notification: tuple[float, int] = (-math.inf, 0)
    after_incident: tuple[float, int] = (-math.inf, 0)
    after_analysis: int = 0
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    batches: int = 0

    @property
    def done(self) -> bool:
        return self.phase == DONE

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def summary(self) -> str:
        """`incidents=3 actions=5 ...`: the tables it deleted from, for the log line."""
        return " ".join(f"{table}={count}" for table, count in self.deleted.items() if count)


def begin(tx: Any, cutoffs: Cutoffs, batch_size: int) -> Pass:
    """A new pass: reads (in `tx`, a transaction) what it must keep whatever its age:
    the witness incidents of each service and the busy fleets."""
    return Pass(cutoffs, batch_size, _witnesses(tx), _busy_fleets(tx))


def step(tx: Any, pruning: Pass, *, delete: bool = True) -> dict[str, int]:
    """One batch of the pass's current walk in `tx` (a write transaction when `delete`):
    delete (or only count, for a dry run) at most `batch_size` notifications, incidents
    (with their dependent rows) or analyses, and advance. Returns the rows per table."""
    counts = dict.fromkeys(TABLES, 0)
    if pruning.phase == NOTIFICATIONS:
        found = _notifications(tx, pruning, counts, delete)
    elif pruning.phase == INCIDENTS:
        found = _incidents(tx, pruning, counts, delete)
    elif pruning.phase == ANALYSES:
        found = _analyses(tx, pruning, counts, delete)
    elif pruning.phase == WINDOWS:
        found = _windows(tx, pruning, delete)
    else:
        return counts
    if found < pruning.batch_size:  # the walk is at its end
        pruning.phase = _PHASES[_PHASES.index(pruning.phase) + 1]
    for table, count in counts.items():
        pruning.deleted[table] += count
        if delete and count:
            totals.add(tx, PRUNED_METRIC, {"table": table}, count)
    pruning.batches += 1
    return counts


# the walks ----------------------------------------------------------------------------


def _notifications(tx: Any, pruning: Pass, counts: dict[str, int], delete: bool) -> int:
    cutoff = pruning.cutoffs.notifications
    if cutoff is None:
        return 0
    after, limit = pruning.after_notification, pruning.batch_size
    rows = _page(tx, "notifications", "received_at", cutoff, after, limit)
    if rows:
        pruning.after_notification = (rows[-1][0], rows[-1][1])
        ids = [row[1] for row in rows]
        counts["notifications"] = _remove(tx, "notifications", "id", ids, delete)
    return len(rows)


def _page(
    tx: Any,
    table: str,
    column: str,
    cutoff: float,
    after: tuple[float, int],
    limit: int,
    condition: str = "",
) -> list[Any]:
    """The next batch (at most `limit` rows) of `table`'s (`column`, id) rows with
    `column` below `cutoff` (and `condition`, SQL, when given), in (`column`, id) order
    after the cursor `after` (the last row seen, (-inf, 0) at the start): keyset
    pagination, so each batch starts on the index where the last one ended."""
    at, last = after
    where = f"{column} < ?" + (f" AND {condition}" if condition else "")
    return tx.execute(
        f"SELECT {column}, id FROM {table} WHERE {where} "
        f"AND ({column} > ? OR ({column} = ? AND id > ?)) "
        f"ORDER BY {column}, id LIMIT ?",
        (cutoff, _finite(at), _finite(at), last, limit),
    ).fetchall()


def _incidents(tx: Any, pruning: Pass, counts: dict[str, int], delete: bool) -> int:
    cutoff = pruning.cutoffs.incidents
    if cutoff is None:
        return 0
    after, limit = pruning.after_incident, pruning.batch_size
    rows = _page(tx, "incidents", "ends_at_ts", cutoff, after, limit, "status <> 'firing'")
    if not rows:
        return 0
    pruning.after_incident = (rows[-1][0], rows[-1][1])
    ids = [row[1] for row in rows if row[1] not in pruning.witnesses]
    ids = sorted(set(ids) - _kept_incidents(tx, pruning, ids))
    if ids:
        marks = _marks(ids)
        counts["action_events"] = _remove(
            tx,
            "action_events",
            "action_id",
            ids,
            delete,
            inner=f"SELECT id FROM actions WHERE incident_id IN ({marks})",
        )
        # an action's approval goes with it (not counted apart: its alert ended by then,
        # or ends by itself at its deadline, approvals.awaiting_alert)
        _remove(
            tx,
            "approvals",
            "action_id",
            ids,
            delete,
            inner=f"SELECT id FROM actions WHERE incident_id IN ({marks})",
        )
        counts["actions"] = _remove(tx, "actions", "incident_id", ids, delete)
        counts["runbook_runs"] = _remove(tx, "runbook_runs", "incident_id", ids, delete)
        counts["incidents"] = _remove(tx, "incidents", "id", ids, delete)
    return len(rows)


def _kept_incidents(tx: Any, pruning: Pass, ids: Sequence[int]) -> set[int]:
    """Of `ids` (closed, old), those a rule keeps: an action not final or recent, an
    action in a busy fleet, a run not ended or an escalation owed."""
    if not ids:
        return set()
    marks = _marks(ids)
    since = pruning.cutoffs.actions
    kept = {
        row[0]
        for row in tx.execute(
            f"SELECT DISTINCT incident_id FROM actions WHERE incident_id IN ({marks}) "
            f"AND (status NOT IN ({_FINAL}) OR updated_at >= ? OR started_at >= ? "
            "OR finished_at >= ?)",
            (*ids, since, since, since),
        ).fetchall()
    }
    if pruning.busy_fleets:
        for incident_id, strategy, fleet in tx.execute(
            f"SELECT DISTINCT incident_id, strategy, fleet FROM actions "
            f"WHERE incident_id IN ({marks}) AND fleet IS NOT NULL",
            tuple(ids),
        ).fetchall():
            if (strategy, fleet) in pruning.busy_fleets:
                kept.add(incident_id)
    kept |= {
        row[0]
        for row in tx.execute(
            f"SELECT DISTINCT incident_id FROM runbook_runs WHERE incident_id IN ({marks}) "
            "AND (ended_at IS NULL OR escalation = 'pending')",
            tuple(ids),
        ).fetchall()
    }
    return kept


def _analyses(tx: Any, pruning: Pass, counts: dict[str, int], delete: bool) -> int:
    cutoff = pruning.cutoffs.incidents
    if cutoff is None:
        return 0
    rows = tx.execute(
        "SELECT id, strategy, fleet FROM fleet_analyses WHERE status = ? AND finished_at < ? "
        "AND id > ? ORDER BY id LIMIT ?",
        ("done", cutoff, pruning.after_analysis, pruning.batch_size),
    ).fetchall()
    if rows:
        pruning.after_analysis = rows[-1][0]
        ids = [i for i, strategy, fleet in rows if (strategy, fleet) not in pruning.busy_fleets]
        if ids:
            counts["fleet_analyses"] = _remove(tx, "fleet_analyses", "id", ids, delete)
    return len(rows)


def _windows(tx: Any, pruning: Pass, delete: bool) -> int:
    """The MTTR window aggregates older than every read: the larger of the bucket rows
    and the segments deleted, so the walk goes on while either filled a batch."""
    if not delete:
        return 0
    buckets, segments = servicewindows.prune(
        tx.execute, pruning.cutoffs.actions, pruning.batch_size
    )
    return max(buckets, segments)


# what a pass keeps whatever its age ------------------------------------------------------


def _witnesses(tx: Any) -> frozenset[int]:
    """The newest incident of each service in metric_label_values, and one incident of
    a service not in it: while they exist, /metrics lists the same services."""
    found = set()
    values = [
        row[0]
        for row in tx.execute(
            "SELECT value FROM metric_label_values WHERE label = 'service'"
        ).fetchall()
    ]
    for service in values:
        row = tx.execute(
            "SELECT id FROM incidents WHERE service = ? ORDER BY starts_at_ts DESC LIMIT 1",
            (service,),
        ).fetchone()
        if row:
            found.add(row[0])
    row = tx.execute(
        "SELECT id FROM incidents WHERE service NOT IN "
        "(SELECT value FROM metric_label_values WHERE label = 'service') LIMIT 1"
    ).fetchone()
    if row:
        found.add(row[0])
    return frozenset(found)


def _busy_fleets(tx: Any) -> frozenset[tuple[str, str]]:
    """(strategy, fleet) of each fleet with a wave under way or targets in flight."""
    busy = set()
    for strategy, fleet, state in tx.execute("SELECT strategy, fleet, state FROM fleets"):
        parsed = fleets.FleetState.from_dict(json.loads(state))
        wave = parsed.wave
        if parsed.in_flight or parsed.loose or (wave is not None and wave.phase in _BUSY_WAVE):
            busy.add((strategy, fleet))
    return frozenset(busy)


# helpers ------------------------------------------------------------------------------


def _marks(ids: Sequence[Any]) -> str:
    return ", ".join("?" for _ in ids)


def _finite(value: float) -> float:
    """A keyset cursor's start: below any stored time (SQL has no -infinity literal
    both drivers bind)."""
    return value if math.isfinite(value) else -1e308


def _remove(
    tx: Any,
    table: str,
    column: str,
    ids: Sequence[int],
    delete: bool,
    inner: str | None = None,
) -> int:
    """Delete the rows of `table` whose `column` is in `ids` (or in the `inner` query
    over `ids`); count them instead when not `delete`. Returns the rows."""
    where = f"{column} IN ({inner or _marks(ids)})"  # table, column: constants above
    if delete:
        return tx.execute(f"DELETE FROM {table} WHERE {where}", tuple(ids)).rowcount
    return tx.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", tuple(ids)).fetchone()[0]


# running a pass ----------------------------------------------------------------------------


def start(store: Any, cutoffs: Cutoffs, batch_size: int) -> Pass:
    """A new pass over `store`'s journal (one read transaction)."""
    with store.transaction(write=False) as tx:
        return begin(tx, cutoffs, batch_size)


def advance(
    store: Any,
    pruning: Pass,
    *,
    delete: bool = True,
    budget: float | None = None,
    pause: float = PAUSE,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Pass:
    """Run batches of `pruning`, each in its own transaction (a write transaction when
    `delete`, else a read one), with `pause` seconds between them, until it is done or
    `budget` seconds (None: no bound) have passed; returns it (done or not). Raises
    StoreUnavailable when the journal is; the batches committed before stay done."""
    started = monotonic()
    while not pruning.done:
        with store.transaction(write=delete) as tx:
            step(tx, pruning, delete=delete)
        if pruning.done or (budget is not None and monotonic() - started >= budget):
            break
        sleep(pause)
    return pruning


def prune(store: Any, cutoffs: Cutoffs, batch_size: int, *, delete: bool = True) -> Pass:
    """A whole pass at once (the CLI): what it deleted, or would delete when not
    `delete`, per table."""
    return advance(store, start(store, cutoffs, batch_size), delete=delete)
