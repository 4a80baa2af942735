"""Fleets in the journal: one row per (strategy, fleet) with its state, size and escalation
outbox, and one row per canary analysis asked for.

`fleets.state` is fleets.FleetState as JSON, written in the transaction that acts on it
(a claim, an outcome, a verdict), so a restart loses nothing. The fleet's escalation is an
outbox entry like a runbook run's (store/runs.py): the transaction that halts a wave, or
ends a fleet's run uncured outside the escalation window, marks it `pending` with its
summary; a dispatcher leases it, posts it and marks it `sent`. One row per fleet means one
escalation per fleet: a failure while one is pending only adds to its summary.

An analysis (`fleet_analyses`) is asked for by the wave planner and due once its interval
of samples has passed; a dispatcher leases it, samples Prometheus outside any transaction,
and journals the judgement and the verdict's consequences together (receiver/fleetrun.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from receiver import fleets
from receiver.store import locks, totals
from receiver.store.runs import PENDING, SENT  # the same outbox states as a run's

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

# the tables fleets, fleet_analyses and the column actions.fleet are made by the schema's
# revisions (store/migrations/versions/)

#: status of an analysis
DUE, DONE = "due", "done"
#: a run's escalation column when the fleet's escalation covers it
COVERED = "fleet"
#: Fleets exported as gauges at most (fleet keys come from labels: bound the series).
GAUGED = 1000
#: Targets an accumulated escalation names; the count goes on past them.
LISTED = 50


@dataclass(frozen=True)
class FleetRow:
    """A fleet as journaled: its state, last known size (None: never measured) and when
    the planner wants to look again (seconds)."""

    strategy: str
    fleet: str
    state: fleets.FleetState
    size: int | None
    size_at: float | None
    next_at: float | None


@dataclass(frozen=True)
class Waiting:
    """A planned action of the fleet: id, target, since (seconds), and the gate it waits
    for as last journaled (None: not waiting yet)."""

    action_id: int
    target: str
    since: float
    waiting: str | None
    not_before: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Analysis:
    """A leased analysis: what to compare (fleets.AnalysisRequest as JSON) and over when."""

    id: int
    strategy: str
    fleet: str
    stage: int
    canary: tuple[str, ...]
    baseline: tuple[str, ...]
    since: float
    due_at: float


@dataclass(frozen=True)
class FleetEscalation:
    """A leased fleet escalation: its summary (fleets.FleetEscalation.to_dict(), plus the
    targets of runs it covered) and the labels the fleet was grouped by. `leased_at`
    (seconds since the epoch) names the lease: a cover() meanwhile ends it."""

    strategy: str
    fleet: str
    summary: dict[str, Any]
    leased_at: float


def load(tx: SqlTransaction, strategy: str, fleet: str) -> FleetRow:
    """The fleet's row, or a new idle fleet (not yet written). Read under the fleet's
    lock (store/locks.py; a claim holds it already), held until the transaction ends:
    whoever changes the fleet's state reads it with this."""
    tx.locks.lock(locks.FLEET, locks.fleet_key(strategy, fleet))
    row = tx.execute(
        "SELECT state, size, size_at, next_at FROM fleets WHERE strategy = ? AND fleet = ?",
        (strategy, fleet),
    ).fetchone()
    if row is None:
        return FleetRow(strategy, fleet, fleets.FleetState(fleet), None, None, None)
    state, size, size_at, next_at = row
    return FleetRow(
        strategy, fleet, fleets.FleetState.from_dict(json.loads(state)), size, size_at, next_at
    )


def save(
    tx: SqlTransaction,
    strategy: str,
    state: fleets.FleetState,
    next_at: float | None,
    reason: str,
    now: float,
) -> None:
    """Write the fleet's state (insert on first write)."""
    payload = json.dumps(state.to_dict())
    updated = tx.execute(
        "UPDATE fleets SET state = ?, next_at = ?, reason = ?, updated_at = ? "
        "WHERE strategy = ? AND fleet = ?",
        (payload, next_at, reason, now, strategy, state.fleet),
    ).rowcount
    if not updated:
        tx.execute(
            "INSERT INTO fleets (strategy, fleet, state, next_at, reason, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (strategy, state.fleet, payload, next_at, reason, now),
        )


def save_size(
    tx: SqlTransaction, strategy: str, fleet: str, size: int | None, note: str, now: float
) -> None:
    """Record the fleet's size as `size_query` measured it, with `note` saying how.
    None (the query failed) clears it, so the fleet is sized by the journal's count until
    the query answers again (README, Fleets), never by an answer grown stale."""
    tx.execute(
        "UPDATE fleets SET size = ?, size_at = ?, size_note = ? WHERE strategy = ? AND fleet = ?",
        (size, now, note, strategy, fleet),
    )


def waiting(tx: SqlTransaction, strategy: str, fleet: str) -> list[Waiting]:
    """The fleet's planned actions, oldest first."""
    rows = tx.execute(
        "SELECT id, target, created_at, waiting, not_before, reason FROM actions "
        "WHERE strategy = ? AND fleet = ? "
        "AND status = 'planned' ORDER BY id",
        (strategy, fleet),
    ).fetchall()
    return [Waiting(*row) for row in rows]


def run_ends(
    tx: SqlTransaction, strategy: str, fleet: str, targets: tuple[str, ...]
) -> dict[str, tuple[str, str, float | None]]:
    """For each of `targets`: (status, reason, ended_at) of its latest run in this fleet."""
    if not targets:
        return {}
    marks = ", ".join("?" for _ in targets)
    rows = tx.execute(
        "SELECT a.target, r.status, r.reason, r.ended_at FROM actions a "
        "JOIN runbook_runs r ON r.id = a.run_id WHERE a.strategy = ? AND a.fleet = ? "
        f"AND a.target IN ({marks}) ORDER BY r.id, a.id",
        (strategy, fleet, *targets),
    ).fetchall()
    return {target: (status, reason, ended_at) for target, status, reason, ended_at in rows}


def latest_incidents(
    tx: SqlTransaction, strategy: str, fleet: str, targets: tuple[str, ...]
) -> dict[str, tuple[int, dict[str, Any]]]:
    """Per target: its latest incident in this fleet, as (id, template context columns:
    labels, annotations, fingerprint, starts_at, generator_url)."""
    if not targets:
        return {}
    marks = ", ".join("?" for _ in targets)
    rows = tx.execute(
        "SELECT a.target, i.id, i.labels, i.annotations, i.fingerprint, i.starts_at, "
        "i.generator_url FROM actions a JOIN incidents i ON i.id = a.incident_id "
        f"WHERE a.strategy = ? AND a.fleet = ? AND a.target IN ({marks}) ORDER BY a.id",
        (strategy, fleet, *targets),
    ).fetchall()
    return {
        target: (
            incident_id,
            {
                "labels": json.loads(labels),
                "annotations": json.loads(annotations),
                "fingerprint": fingerprint,
                "starts_at": starts_at,
                "generator_url": generator_url,
            },
        )
        for target, incident_id, labels, annotations, fingerprint, starts_at, generator_url in rows
    }


def distinct_targets(tx: SqlTransaction, strategy: str, fleet: str, since: float) -> int:
    """Targets of the fleet acted on or planned since `since` (seconds): its size when no
    `size_query` measures it."""
    return tx.execute(
        "SELECT COUNT(DISTINCT target) FROM actions WHERE strategy = ? AND fleet = ? "
        "AND created_at >= ?",
        (strategy, fleet, since),
    ).fetchone()[0]


def target_labels(
    tx: SqlTransaction, strategy: str, fleet: str, targets: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    """The labels of each target's latest incident in this fleet (for its queries)."""
    found = latest_incidents(tx, strategy, fleet, targets)
    return {target: columns["labels"] for target, (_, columns) in found.items()}


# analyses -----------------------------------------------------------------------------


def ask_analysis(
    tx: SqlTransaction,
    strategy: str,
    fleet: str,
    request: fleets.AnalysisRequest,
    due_at: float,
    now: float,
) -> int:
    """Journal an analysis asked for, due at `due_at` (seconds); returns its id."""
    return tx.execute(
        "INSERT INTO fleet_analyses (strategy, fleet, stage, request, status, due_at, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (strategy, fleet, request.stage, json.dumps(request.to_dict()), DUE, due_at, now),
    ).fetchone()[0]


def claim_analyses(tx: SqlTransaction, now: float, lease: float, limit: int = 5) -> list[Analysis]:
    """Due analyses not leased to another process (or whose lease ran out); lease them."""
    rows = tx.execute(
        "SELECT id, strategy, fleet, stage, request, due_at FROM fleet_analyses "
        "WHERE status = ? AND due_at <= ? AND (claimed_at IS NULL OR claimed_at < ?) "
        "ORDER BY due_at LIMIT ?",
        (DUE, now, now - lease, limit),
    ).fetchall()
    found = []
    for id_, strategy, fleet, stage, request, due_at in rows:
        leased = tx.execute(
            "UPDATE fleet_analyses SET claimed_at = ? WHERE id = ? AND status = ? "
            "AND (claimed_at IS NULL OR claimed_at < ?)",
            (now, id_, DUE, now - lease),
        ).rowcount
        if leased:
            asked = json.loads(request)
            found.append(
                Analysis(
                    id_,
                    strategy,
                    fleet,
                    stage,
                    tuple(asked["canary"]),
                    tuple(asked["baseline"]),
                    float(asked["since"]),
                    due_at,
                )
            )
    return found


def finish_analysis(
    tx: SqlTransaction, analysis_id: int, verdict: str, judgement: dict[str, Any], now: float
) -> bool:
    """Journal a judgement; False when another process finished it first."""
    return bool(
        tx.execute(
            "UPDATE fleet_analyses SET status = ?, verdict = ?, judgement = ?, finished_at = ? "
            "WHERE id = ? AND status = ?",
            (DONE, verdict, json.dumps(judgement), now, analysis_id, DUE),
        ).rowcount
    )


def drop_analyses(tx: SqlTransaction, strategy: str, fleet: str, reason: str, now: float) -> None:
    """A halted wave needs no pending analysis any more."""
    tx.execute(
        "UPDATE fleet_analyses SET status = ?, verdict = 'dropped', judgement = ?, "
        "finished_at = ? WHERE strategy = ? AND fleet = ? AND status = ?",
        (DONE, json.dumps({"reason": reason}), now, strategy, fleet, DUE),
    )


def analyses(tx: SqlTransaction, strategy: str, fleet: str, limit: int = 10) -> list[dict]:
    """The fleet's latest analyses, newest first, as the API shows them."""
    rows = tx.execute(
        "SELECT id, stage, request, status, due_at, created_at, finished_at, verdict, "
        "judgement FROM fleet_analyses WHERE strategy = ? AND fleet = ? ORDER BY id DESC "
        "LIMIT ?",
        (strategy, fleet, limit),
    ).fetchall()
    found = []
    for id_, stage, request, status, due_at, created_at, finished_at, verdict, judged in rows:
        found.append(
            {
                "id": id_,
                "stage": stage,
                "request": json.loads(request),
                "status": status,
                "due_at": due_at,
                "created_at": created_at,
                "finished_at": finished_at,
                "verdict": verdict,
                "judgement": json.loads(judged) if judged else None,
            }
        )
    return found


# escalations --------------------------------------------------------------------------


def owe_escalation(
    tx: SqlTransaction, strategy: str, fleet: str, summary: dict[str, Any], now: float
) -> None:
    """The fleet owes its ONE escalation, saying `summary`; replaces a pending one's."""
    tx.execute(
        "UPDATE fleets SET escalation = ?, escalation_summary = ?, escalation_note = NULL, "
        "escalation_claimed_at = NULL, updated_at = ? WHERE strategy = ? AND fleet = ?",
        (PENDING, json.dumps(summary), now, strategy, fleet),
    )


#: What cover() counts: a run that failed, or one a halted wave skipped (it fired after
#: the halt: the escalation counts it, else nobody would hear of it)
FAILED_SINCE, HELD_SINCE = "covered", "held"


def cover(
    tx: SqlTransaction,
    strategy: str,
    fleet: str,
    target: str,
    reason: str,
    kind: str = FAILED_SINCE,
) -> bool:
    """Count a run of `target` into the fleet's escalation (its summary counts it under
    `kind` and lists the target, bounded). One already sent is owed again, to be posted
    with the same labels: Alertmanager updates the alert it holds (one alert, one page),
    now counting this run too. Returns whether a delivery is owed (False: none exists,
    or it was undeliverable)."""
    row = tx.execute(
        "SELECT escalation, escalation_summary FROM fleets WHERE strategy = ? AND fleet = ?",
        (strategy, fleet),
    ).fetchone()
    if row is None or row[0] not in (PENDING, SENT):
        return False
    summary = json.loads(row[1])
    covered = summary.setdefault(f"{kind}_targets", [])
    summary[kind] = summary.get(kind, 0) + 1
    if target not in covered and len(covered) < LISTED:
        covered.append(target)
    summary["last_reason"] = reason
    tx.execute(
        "UPDATE fleets SET escalation = ?, escalation_summary = ?, escalation_claimed_at = "
        "NULL WHERE strategy = ? AND fleet = ?",
        (PENDING, json.dumps(summary), strategy, fleet),
    )
    return True


def claim_escalations(tx: SqlTransaction, now: float, lease: float) -> list[FleetEscalation]:
    """Pending fleet escalations not leased to another process; lease them."""
    rows = tx.execute(
        "SELECT strategy, fleet, escalation_summary FROM fleets WHERE escalation = ? "
        "AND (escalation_claimed_at IS NULL OR escalation_claimed_at < ?) LIMIT 20",
        (PENDING, now - lease),
    ).fetchall()
    found = []
    for strategy, fleet, summary in rows:
        leased = tx.execute(
            "UPDATE fleets SET escalation_claimed_at = ? WHERE strategy = ? AND fleet = ? "
            "AND escalation = ? AND (escalation_claimed_at IS NULL OR escalation_claimed_at < ?)",
            (now, strategy, fleet, PENDING, now - lease),
        ).rowcount
        if leased:
            found.append(FleetEscalation(strategy, fleet, json.loads(summary), now))
    return found


def record_escalation(
    tx: SqlTransaction, leased: FleetEscalation, delivered: str | None, note: str
) -> None:
    """How a fleet escalation went: SENT or UNDELIVERABLE ends it; None keeps it pending.
    A run covered while it was being posted re-owed it (cover() ended the lease): the
    newer summary stays owed, else the fleet's alert would never count that run."""
    tx.execute(
        "UPDATE fleets SET escalation = CASE WHEN escalation_claimed_at = ? "
        "THEN COALESCE(?, escalation) ELSE escalation END, escalation_note = ? "
        "WHERE strategy = ? AND fleet = ?",
        (leased.leased_at, delivered, note, leased.strategy, leased.fleet),
    )
    totals.count_escalation(tx, delivered or "retrying")


def listing(tx: SqlTransaction, limit: int, offset: int) -> tuple[list[dict], int]:
    """Fleets for the API, by strategy and fleet: the raw rows (state as FleetState)."""
    count = tx.execute("SELECT COUNT(*) FROM fleets").fetchone()[0]
    rows = tx.execute(
        "SELECT strategy, fleet, state, size, size_at, size_note, next_at, reason, updated_at, "
        "escalation, escalation_summary, escalation_note FROM fleets ORDER BY strategy, fleet "
        "LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    found = []
    for (strategy, fleet, state, size, size_at, size_note, next_at, reason, updated_at,
         escalation, summary, note) in rows:  # fmt: skip
        found.append(
            {
                "strategy": strategy,
                "fleet": fleet,
                "state": fleets.FleetState.from_dict(json.loads(state)),
                "size": size,
                "size_at": size_at,
                "size_note": size_note,
                "next_at": next_at,
                "reason": reason,
                "updated_at": updated_at,
                "escalation": escalation,
                "escalation_summary": json.loads(summary) if summary else None,
                "escalation_note": note,
            }
        )
    return found, count


def gauges(tx: SqlTransaction) -> list[tuple[str, str, int, int]]:
    """(strategy, fleet, in flight, wave stage) per fleet, for the gauges; stage -1: no
    wave running."""
    found = []
    rows = tx.execute(
        "SELECT strategy, fleet, state FROM fleets ORDER BY strategy, fleet LIMIT ?", (GAUGED,)
    )
    for strategy, fleet, state in rows:
        parsed = fleets.FleetState.from_dict(json.loads(state))
        wave = parsed.wave
        running = wave is not None and wave.phase in ("canary", "analysing", "stage")
        found.append((strategy, fleet, len(parsed.in_flight), wave.stage if running else -1))
    return found
