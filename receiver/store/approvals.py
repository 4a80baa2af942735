"""The journal of approvals: one row per action held for a person (see approvals.py).

Functions of an open transaction (SqlTransaction), so the approval gate's writes are
part of the claim that judged the action, and a decision is one transaction of its own.
The `RemediationAwaitingApproval` alert is an outbox (`alert_state`): `pending` (to
post), `firing` (posted), `ended` (its end posted, or never needed). The alert is
wanted while the action is planned and its approval awaited; once decided, cancelled
(the alert resolved) or timed out, the dispatcher posts its end. Nothing is lost to a
crash: the state says what is still owed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from receiver import approvals
from receiver.approvals import ApprovalState
from receiver.store import locks

if TYPE_CHECKING:
    from receiver.store.base import Store
    from receiver.store.sql import SqlTransaction

log = logging.getLogger(__name__)

PENDING, FIRING, ENDED = "pending", "firing", "ended"
#: Seconds between posts of a firing alert: Alertmanager forgets alerts at a restart,
#: and a re-post keeps it as long as the approval is awaited.
REPOST_INTERVAL = 60.0
#: Longest `by` and `comment` of a person's decision kept (characters; longer are cut).
MAX_BY, MAX_COMMENT = 200, 2000


@dataclass(frozen=True)
class AlertDue:
    """An alert owed to Alertmanager: `alert` as posted, `firing` (post it) or not (post
    its end)."""

    action_id: int
    alert: dict[str, Any]
    firing: bool
    repost: bool = False  # posted before: kept alive, not journaled again


def load(tx: SqlTransaction, action_id: int) -> ApprovalState | None:
    """The action's approval as journaled, None when it was never requested."""
    row = tx.execute(
        "SELECT requested_at, deadline, on_timeout, decision, decided_by, decided_at, comment "
        "FROM approvals WHERE action_id = ?",
        (action_id,),
    ).fetchone()
    return ApprovalState(*row) if row else None


def save(
    tx: SqlTransaction,
    action_id: int,
    strategy: str,
    state: ApprovalState,
    alert: dict[str, Any] | None = None,
) -> None:
    """Write the action's approval: a new one with its `alert` (pending), or the
    decision of one requested before."""
    if alert is not None:
        tx.execute(
            "INSERT INTO approvals (action_id, strategy, requested_at, deadline, on_timeout, "
            "alert, alert_state) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                action_id,
                strategy,
                state.requested_at,
                state.deadline,
                state.on_timeout,
                json.dumps(alert),
                PENDING,
            ),
        )
        return
    tx.execute(
        "UPDATE approvals SET decision = ?, decided_by = ?, decided_at = ?, comment = ? "
        "WHERE action_id = ?",
        (state.decision, state.decided_by, state.decided_at, state.comment, action_id),
    )


def action_status(tx: SqlTransaction, action_id: int) -> str | None:
    row = tx.execute("SELECT status FROM actions WHERE id = ?", (action_id,)).fetchone()
    return row[0] if row else None


def decide(
    tx: SqlTransaction, action_id: int, decision: str, by: str, comment: str, now: float
) -> ApprovalState | None:
    """Journal a person's decision on the action (`approved` | `denied`), with who and
    when, as an event of the action, and make the action claimable now: it no longer
    waits for a person (`waiting` cleared: next in line) and the next claim acts on it
    (approval opens the approval gate only; the other gates still judge it, and one
    that delays it journals its own `waiting`).
    Returns the new state, None for an unknown action. Raises approvals.NotAwaiting when
    the action does not await approval (never asked, decided, ended, timed out)."""
    found = tx.execute("SELECT target FROM actions WHERE id = ?", (action_id,)).fetchone()
    if found is None:
        return None
    # a claim judges the action under its target's lock (store/dispatch.py): waiting for
    # it, a decision never crosses the timeout that claim may be journaling
    tx.locks.lock(locks.TARGET, found[0])
    status = action_status(tx, action_id)
    state = load(tx, action_id)
    if status != "planned":
        raise approvals.NotAwaiting(f"action is {status}, not awaiting approval")
    decided = approvals.decide(state, decision, by, comment, now)
    save(tx, action_id, "", decided)
    tx.execute(
        "UPDATE actions SET not_before = NULL, waiting = NULL, updated_at = ? WHERE id = ?",
        (now, action_id),
    )
    tx.add_event(action_id, now, "planned", approvals.decision_note(decided))
    return decided


def record_decision(
    store: Store, action_id: int, decision: str, by: str, comment: str, now: float
) -> ApprovalState | None:
    """A person's decision (`approved` | `denied`) on an action, journaled in one
    transaction of its own (decide) and logged: what the API's approve/deny and the
    console's buttons both do. `by` and `comment` are cut to MAX_BY / MAX_COMMENT
    characters; they must be storable (the caller says which field is not). Returns the
    new state, None for an unknown action. Raises approvals.NotAwaiting (the action does
    not await approval: the caller answers 409), StoreUnavailable."""
    by, comment = by[:MAX_BY], comment[:MAX_COMMENT]
    decided = store.change(lambda tx: decide(tx, action_id, decision, by, comment, now))
    if decided is not None:
        log.warning(approvals.decision_note(decided), extra={"action_id": action_id})
    return decided


def alerts_due(tx: SqlTransaction, now: float) -> list[AlertDue]:
    """The alerts owed: pending ones still wanted (to post), firing ones wanted and not
    posted for REPOST_INTERVAL (to post again), and firing ones no longer wanted (to
    end). A pending one no longer wanted was never posted: it is marked ended here."""
    rows = tx.execute(
        "SELECT p.action_id, p.alert, p.alert_state, p.alert_sent_at, p.decision, a.status "
        "FROM approvals p LEFT JOIN actions a ON a.id = p.action_id "
        "WHERE p.alert_state IN (?, ?) ORDER BY p.action_id",
        (PENDING, FIRING),
    ).fetchall()
    due: list[AlertDue] = []
    for action_id, alert, state, sent_at, decision, status in rows:
        wanted = decision is None and status == "planned"
        if state == PENDING and not wanted:
            mark(tx, action_id, ENDED, now)
        elif state == PENDING:
            due.append(AlertDue(action_id, json.loads(alert), True))
        elif wanted and (sent_at or 0) <= now - REPOST_INTERVAL:
            due.append(AlertDue(action_id, json.loads(alert), True, repost=True))
        elif not wanted:
            due.append(AlertDue(action_id, json.loads(alert), False))
    return due


def mark(tx: SqlTransaction, action_id: int, state: str, now: float) -> None:
    """Record the alert's delivery state after a post (or without one)."""
    tx.execute(
        "UPDATE approvals SET alert_state = ?, alert_sent_at = ? WHERE action_id = ?",
        (state, now, action_id),
    )


def delivered(tx: SqlTransaction, action_id: int, state: str, note: str, now: float) -> None:
    """Record a post of the action's alert (`state` firing or ended) and journal `note`
    on the action (a first post and an end only: re-posts are not journaled)."""
    first = tx.execute(
        "SELECT alert_state FROM approvals WHERE action_id = ?", (action_id,)
    ).fetchone()
    mark(tx, action_id, state, now)
    status = action_status(tx, action_id)
    if status is not None and first is not None and first[0] != state:
        tx.add_event(action_id, now, status, note)


def as_dict(state: ApprovalState | None) -> dict[str, Any] | None:
    """An approval as the API shows it (times as ISO text), None for None."""
    from receiver.store.sql import iso  # sql.py imports this module

    if state is None:
        return None
    return {
        "awaiting": state.awaiting,
        "requested_at": iso(state.requested_at),
        "deadline": iso(state.deadline),
        "on_timeout": state.on_timeout,
        "decision": state.decision,
        "decided_by": state.decided_by or None,
        "decided_at": iso(state.decided_at),
        "comment": state.comment,
    }


def awaiting_counts(tx: SqlTransaction) -> dict[str, int]:
    """Actions awaiting approval now (planned, undecided), by strategy."""
    rows = tx.execute(
        "SELECT p.strategy, COUNT(*) FROM approvals p JOIN actions a ON a.id = p.action_id "
        "WHERE p.decision IS NULL AND a.status = 'planned' GROUP BY p.strategy"
    ).fetchall()
    return {strategy: count for strategy, count in rows}
