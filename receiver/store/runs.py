"""Runbook runs in the journal: one row per run of a strategy's runbook for an incident.

Each action row names its run (`actions.run_id`) and its step (`actions.step`); a run
row holds what the step machine (runbooks.py) needs besides them: its number, status,
current step, and whether an escalation is owed. The trail of finished steps is read
from the run's action rows, so it can never disagree with them.

An escalation is an outbox entry: the transaction that ends a run uncured marks it
`pending`; a dispatcher claims it with a lease, posts it, and marks it `sent` (or keeps
it pending with a note, to try again after the lease). A process that dies after posting
and before marking posts it again: Alertmanager merges an alert re-posted with the same
labels into the one it has, so a person still hears once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from receiver import runbooks
from receiver.store import totals

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

# the table runbook_runs and its indexes are made by the schema's revisions

#: escalation column: owed and not yet delivered, delivered, or nothing to deliver to
PENDING, SENT, UNDELIVERABLE = "pending", "sent", "undeliverable"
#: Seconds a claimed escalation is left to its claimer before another may try it (or it
#: tries again after a failed delivery), at least: the dispatcher leases for twice its
#: escalation executor's timeout when that is longer (see escalation_lease).
ESCALATION_LEASE = 5.0


def escalation_lease(delivery_timeout: float) -> float:
    """Seconds to lease an escalation for: long enough that one delivery attempt, bounded
    by `delivery_timeout` seconds, ends before another process may try the same one."""
    return max(ESCALATION_LEASE, 2 * delivery_timeout + 1)


#: Statuses of an action that end a step (a cancelled step ends its run instead).
STEP_ENDS = ("succeeded", "failed", "timed_out", "skipped")


@dataclass(frozen=True)
class RunRow:
    """One run as journaled; times in seconds since the epoch."""

    id: int
    incident_id: int
    strategy: str
    run: int
    status: str
    current_step: int | None
    started_at: float
    ended_at: float | None

    def state(self, trail: Iterable[runbooks.StepResult]) -> runbooks.RunbookState:
        """The step machine's state of this run, with its trail of finished steps."""
        return runbooks.RunbookState(
            started_at=self.started_at,
            run=self.run,
            current=self.current_step,
            trail=tuple(trail),
            status=self.status,
            ended_at=self.ended_at,
        )


@dataclass(frozen=True)
class Escalation:
    """An escalation owed for a run that ended uncured, with what it carries."""

    run_id: int
    incident_id: int
    strategy: str
    run: int
    reason: str
    labels: dict[str, str]
    annotations: dict[str, str]
    target: str
    last_action_id: int | None
    #: the run as it ended, with its trail of finished steps
    state: runbooks.RunbookState

    @property
    def trail(self) -> tuple[runbooks.StepResult, ...]:
        return self.state.trail


_RUN_COLUMNS = (
    "id, incident_id, strategy, run, status, current_step, started_at, ended_at"  # RunRow order
)


def insert(
    tx: SqlTransaction, incident_id: int, strategy: str, run: int, now: float, reason: str
) -> int:
    """A new running run at step 1; returns its id."""
    return tx.insert_row(
        "INSERT INTO runbook_runs (incident_id, strategy, run, status, current_step, "
        "started_at, reason) VALUES (?, ?, ?, ?, 1, ?, ?)",
        (incident_id, strategy, run, runbooks.RUNNING, now, reason),
    )


def load(tx: SqlTransaction, run_id: int) -> RunRow | None:
    row = tx.execute(f"SELECT {_RUN_COLUMNS} FROM runbook_runs WHERE id = ?", (run_id,)).fetchone()
    return RunRow(*row) if row else None


_RUN_AND_STATUS_SQL = (
    f"SELECT {', '.join('r.' + c.strip() for c in _RUN_COLUMNS.split(','))}, i.status "
    "FROM runbook_runs r JOIN incidents i ON i.id = r.incident_id WHERE r.id = ?"
)


def load_with_status(tx: SqlTransaction, run_id: int) -> tuple[RunRow, str] | None:
    """The run and its incident's status (`firing`, `resolved`) as of now, in one read;
    None when there is no such run. With concurrent writers both rows are locked, the
    incident first (as ingest locks it before the run: store/locks.py), so a resolution
    cannot slip in between this read and the step the caller plans from it."""
    if tx.locks.for_update:
        tx.execute(
            "SELECT i.id FROM incidents i JOIN runbook_runs r ON r.incident_id = i.id "
            "WHERE r.id = ? FOR UPDATE OF i",
            (run_id,),
        )
        row = tx.execute(_RUN_AND_STATUS_SQL + " FOR UPDATE OF r", (run_id,)).fetchone()
    else:
        row = tx.execute(_RUN_AND_STATUS_SQL, (run_id,)).fetchone()
    return (RunRow(*row[:-1]), row[-1]) if row else None


def trail(tx: SqlTransaction, run_id: int) -> list[runbooks.StepResult]:
    """The run's finished steps in the order they ended (their action rows).

    A step refused at rendering is journaled already `skipped`, never claimed, so its row
    has no `finished_at`: it ended when it was written (`updated_at`)."""
    marks = ", ".join("?" for _ in STEP_ENDS)
    rows = tx.execute(
        f"SELECT step, status, reason, COALESCE(finished_at, updated_at) AS ended "
        f"FROM actions WHERE run_id = ? AND status IN ({marks}) ORDER BY ended, id",
        (run_id, *STEP_ENDS),
    ).fetchall()
    return [
        runbooks.StepResult(
            index=step or 1,
            outcome=status,
            reason=reason,
            ended_at=finished_at,
            gate=step_gate(reason) if status == "skipped" else None,
        )
        for step, status, reason, finished_at in rows
    ]


def step_gate(reason: str) -> str:
    """The gate that skipped a step, from its reason (`when: ...`, `budget: ...`)."""
    return totals.skip_reason(reason)


def move_to(tx: SqlTransaction, run_id: int, step: int, reason: str) -> None:
    tx.execute(
        "UPDATE runbook_runs SET current_step = ?, reason = ? WHERE id = ?",
        (step, reason, run_id),
    )


def end(
    tx: SqlTransaction,
    run_id: int,
    status: str,
    reason: str,
    now: float,
    *,
    escalate: bool = False,
    repeat_at: float | None = None,
    strategy: str | None = None,
) -> None:
    """End a run (cured, uncured, cancelled, dry_run); an uncured end owes an escalation
    that says `reason`. `strategy`: the run's strategy name when the caller holds it
    (counted by it), or None to read it."""
    tx.execute(
        "UPDATE runbook_runs SET status = ?, current_step = NULL, ended_at = ?, reason = ?, "
        "repeat_at = ?, escalation = ?, escalation_reason = ? WHERE id = ?",
        (
            status,
            now,
            reason,
            repeat_at,
            PENDING if escalate else None,
            reason if escalate else None,
            run_id,
        ),
    )
    if strategy is None:
        strategy = tx.execute(
            "SELECT strategy FROM runbook_runs WHERE id = ?", (run_id,)
        ).fetchone()[0]
    totals.count_run_end(tx, strategy, status)


def owe_escalation(tx: SqlTransaction, run_id: int, reason: str) -> None:
    """An ended run owes one escalation after all (a cure that did not last, out of
    runs): marked pending with `reason`, its status left as it ended."""
    tx.execute(
        "UPDATE runbook_runs SET escalation = ?, escalation_reason = ? WHERE id = ? "
        "AND escalation IS NULL",
        (PENDING, reason, run_id),
    )


def cancel_open(tx: SqlTransaction, run_ids: Iterable[int], reason: str, now: float) -> None:
    """Cancel the runs (still running) whose planned step was just cancelled."""
    for run_id in sorted(set(run_ids)):
        status = tx.execute(
            "SELECT status FROM runbook_runs WHERE id = ?" + tx.locks.for_update, (run_id,)
        ).fetchone()
        if status and status[0] == runbooks.RUNNING:
            end(tx, run_id, runbooks.CANCELLED, f"cancelled: {reason}", now)


def clear_repeats(tx: SqlTransaction, incident_id: int) -> None:
    """The incident closed: no run of it is repeated."""
    tx.execute(
        "UPDATE runbook_runs SET repeat_at = NULL WHERE incident_id = ? AND repeat_at IS NOT NULL",
        (incident_id,),
    )


def due_repeats(tx: SqlTransaction, now: float, limit: int = 50) -> list[tuple[RunRow, str]]:
    """Cured runs whose repeat time has come, with their incident's status."""
    rows = tx.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in _RUN_COLUMNS.split(','))}, i.status "
        "FROM runbook_runs r JOIN incidents i ON i.id = r.incident_id "
        "WHERE r.repeat_at IS NOT NULL AND r.repeat_at <= ? ORDER BY r.repeat_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [(RunRow(*row[:-1]), row[-1]) for row in rows]


def take_repeat(tx: SqlTransaction, run_id: int, now: float) -> bool:
    """Take a due repeat (only one process can): clears its repeat time."""
    return bool(
        tx.execute(
            "UPDATE runbook_runs SET repeat_at = NULL WHERE id = ? AND repeat_at IS NOT NULL "
            "AND repeat_at <= ?",
            (run_id, now),
        ).rowcount
    )


def claim_escalations(
    tx: SqlTransaction, now: float, lease: float = ESCALATION_LEASE, limit: int = 20
) -> list[Escalation]:
    """Pending escalations not leased to another process (or whose `lease` seconds ran
    out); lease them to the caller."""
    rows = tx.execute(
        "SELECT r.id, r.incident_id, r.strategy, r.run, r.escalation_reason, i.labels, "
        "i.annotations FROM runbook_runs r JOIN incidents i ON i.id = r.incident_id "
        "WHERE r.escalation = ? AND (r.escalation_claimed_at IS NULL "
        "OR r.escalation_claimed_at < ?) ORDER BY r.id LIMIT ?",
        (PENDING, now - lease, limit),
    ).fetchall()
    found = []
    for run_id, incident_id, strategy, run, reason, labels, notes in rows:
        # conditional: of replicas that read the same row, the first to lease it wins
        leased = tx.execute(
            "UPDATE runbook_runs SET escalation_claimed_at = ? WHERE id = ? AND escalation = ? "
            "AND (escalation_claimed_at IS NULL OR escalation_claimed_at < ?)",
            (now, run_id, PENDING, now - lease),
        ).rowcount
        if not leased:
            continue
        last = tx.execute(
            "SELECT id, target FROM actions WHERE run_id = ? ORDER BY id DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        found.append(
            Escalation(
                run_id,
                incident_id,
                strategy,
                run,
                reason or "",
                json.loads(labels),
                json.loads(notes),
                last[1] if last else "",
                last[0] if last else None,
                load(tx, run_id).state(trail(tx, run_id)),
            )
        )
    return found


def record_escalation(
    tx: SqlTransaction, run_id: int, delivered: str | None, note: str, now: float
) -> None:
    """How an escalation went: `delivered` SENT or UNDELIVERABLE ends it; None keeps it
    pending (tried again when the lease runs out)."""
    tx.execute(
        "UPDATE runbook_runs SET escalation = COALESCE(?, escalation), escalation_note = ? "
        "WHERE id = ?",
        (delivered, note, run_id),
    )
    totals.count_escalation(tx, delivered or "retrying")


def for_incident(tx: SqlTransaction, incident_id: int) -> list[dict[str, Any]]:
    """The incident's runs in order, as the read API shows them (times in seconds)."""
    rows = tx.execute(
        "SELECT id, strategy, run, status, current_step, started_at, ended_at, reason, "
        "repeat_at, escalation, escalation_reason, escalation_note FROM runbook_runs "
        "WHERE incident_id = ? ORDER BY id",
        (incident_id,),
    ).fetchall()
    names = (
        "id", "strategy", "run", "status", "current_step", "started_at", "ended_at", "reason",
        "repeat_at", "escalation", "escalation_reason", "escalation_note",
    )  # fmt: skip
    return [dict(zip(names, row, strict=True)) for row in rows]
