"""What the console's overview shows of the journal right now: actions running, waiting
and awaiting approval, breakers not closed. Functions of an open transaction
(SqlTransaction), both backends; each returns at most `limit` rows (texts cut at
TEXT_CHARS characters) and how many there are, so the page stays small however busy
the journal is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from receiver.approvals import AWAITING

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

#: Characters of a strategy, target or reason shown.
TEXT_CHARS = 300
#: Breakers looked at for the open ones (a journal holds one per strategy and target,
#: which the label bound keeps to thousands).
MAX_BREAKERS = 10000

_N = TEXT_CHARS
_ACTION = (
    f"a.id, a.incident_id, substr(a.strategy, 1, {_N}), a.action, substr(a.target, 1, {_N}), "
    f"a.status, substr(a.reason, 1, {_N}), a.waiting, a.not_before, a.started_at, a.created_at"
)
_ACTION_KEYS = (
    "id",
    "incident_id",
    "strategy",
    "action",
    "target",
    "status",
    "reason",
    "waiting",
    "not_before",
    "started_at",
    "created_at",
)


def running(tx: SqlTransaction, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Actions running now, the longest running first: (rows, how many)."""
    return _actions(tx, "a.status = 'running'", "a.started_at, a.id", limit)


def waiting(tx: SqlTransaction, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Planned actions held by a gate or a step's wait (not awaiting approval), the
    soonest eligible first, with `waiting` (what holds them) and `reason` (why)."""
    where = f"a.status = 'planned' AND a.waiting IS NOT NULL AND a.waiting <> '{AWAITING}'"
    return _actions(tx, where, "a.not_before, a.id", limit)


def _actions(
    tx: SqlTransaction, where: str, order: str, limit: int
) -> tuple[list[dict[str, Any]], int]:
    total = tx.execute(f"SELECT COUNT(*) FROM actions a WHERE {where}").fetchone()[0]
    rows = tx.execute(
        f"SELECT {_ACTION} FROM actions a WHERE {where} ORDER BY {order} LIMIT ?", (int(limit),)
    ).fetchall()
    return [dict(zip(_ACTION_KEYS, row, strict=True)) for row in rows], total


def pending_approvals(tx: SqlTransaction, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Actions awaiting a person's decision (planned, undecided), the nearest deadline
    first: (rows with strategy, action, target, requested_at and deadline in seconds,
    on_timeout; how many)."""
    where = "p.decision IS NULL AND a.status = 'planned'"
    join = "FROM approvals p JOIN actions a ON a.id = p.action_id"
    total = tx.execute(f"SELECT COUNT(*) {join} WHERE {where}").fetchone()[0]
    rows = tx.execute(
        f"SELECT {_ACTION}, p.requested_at, p.deadline, p.on_timeout {join} WHERE {where} "
        "ORDER BY p.deadline, a.id LIMIT ?",
        (int(limit),),
    ).fetchall()
    keys = (*_ACTION_KEYS, "requested_at", "deadline", "on_timeout")
    return [dict(zip(keys, row, strict=True)) for row in rows], total


def open_breakers(tx: SqlTransaction, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Breakers not closed (open or half_open as journaled), the latest change first:
    (rows with key `strategy/target`, strategy, target, state, updated_at in seconds;
    how many)."""
    rows = tx.execute(
        f"SELECT substr(strategy, 1, {TEXT_CHARS}), substr(target, 1, {TEXT_CHARS}), state, "
        "updated_at FROM breakers ORDER BY updated_at DESC LIMIT ?",
        (MAX_BREAKERS,),
    ).fetchall()
    found = []
    for strategy, target, state, updated_at in rows:
        word = _state_word(state)
        if word != "closed":
            found.append(
                {
                    "key": f"{strategy}/{target}",
                    "strategy": strategy,
                    "target": target,
                    "state": word,
                    "updated_at": updated_at,
                }
            )
    return found[: int(limit)], len(found)


def _state_word(state: str) -> str:
    """The state word of a journaled breaker (a JSON object with `state`)."""
    try:
        value = json.loads(state)
    except ValueError:
        return "unknown"
    return str(value.get("state", "unknown")) if isinstance(value, dict) else "unknown"
