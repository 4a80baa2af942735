"""What the journal holds about one incident besides its row and actions: the webhook
notifications that carried its alert and the canary analyses of its fleet (the
console's incident page; console/timeline.py orders them).

A notification row has no link to the incidents it touched; it has its `group_key`
and the time it was received, and ingest journals a notification and the incidents it
opens or refreshes with the same time (engine.journal_work: `received_at`,
`first_seen`, `last_seen`). So the notifications of an incident are those of the
group that opened it (the one received at its `first_seen`) received from its
`first_seen` to its `last_seen`: Alertmanager sends a group whole, every alert of
it, on each notification. An alert routed to several groups is shown with the
notifications of the group that opened it.

Functions of an open transaction (SqlTransaction), both backends, each bounded in the
rows it returns and the characters of each text (a group key may be long).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

#: Characters of a group key or receiver shown.
TEXT_CHARS = 512
#: Characters of a judgement's reason shown.
REASON_CHARS = 2000


def notifications(
    tx: SqlTransaction, incident_id: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """(the incident's notifications oldest first, at most `limit`; how many there are).

    Each: id, received_at (seconds since the epoch), group_key, receiver (cut at
    TEXT_CHARS), status, alerts, firing, resolved, truncated_alerts, summary (dict).
    ([], 0) for an unknown incident, or when the notification that opened it is no
    longer journaled (pruned)."""
    seen = tx.execute(
        "SELECT first_seen, last_seen FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    if seen is None:
        return [], 0
    first, last = seen
    opening = tx.execute(
        "SELECT group_key FROM notifications WHERE received_at = ? ORDER BY id LIMIT 1",
        (first,),
    ).fetchone()
    if opening is None:
        return [], 0
    window = "FROM notifications WHERE group_key = ? AND received_at >= ? AND received_at <= ?"
    params = (opening[0], first, max(first, last))
    total = tx.execute(f"SELECT COUNT(*) {window}", params).fetchone()[0]
    rows = tx.execute(
        f"SELECT id, received_at, substr(group_key, 1, {TEXT_CHARS}), "
        f"substr(receiver, 1, {TEXT_CHARS}), status, alerts, firing, resolved, "
        f"truncated_alerts, summary {window} ORDER BY received_at, id LIMIT ?",
        (*params, int(limit)),
    ).fetchall()
    found = []
    for row_id, at, group, receiver, status, alerts, firing, resolved, left_out, summary in rows:
        found.append(
            {
                "id": row_id,
                "received_at": at,
                "group_key": group,
                "receiver": receiver,
                "status": status,
                "alerts": alerts,
                "firing": firing,
                "resolved": resolved,
                "truncated_alerts": left_out,
                "summary": _object(summary),
            }
        )
    return found, total


def analyses(
    tx: SqlTransaction,
    fleets: list[tuple[str, str]],
    since: float,
    until: float | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The canary analyses of the (strategy, fleet) pairs created in [since, until]
    (seconds; `until` None: no end, for an incident still firing), oldest first, at
    most `limit` per pair: id, at (when judged, else created), strategy, fleet, stage,
    status, verdict, reason (the judgement's, cut at REASON_CHARS)."""
    found: list[dict[str, Any]] = []
    end = "" if until is None else " AND created_at <= ?"
    for strategy, fleet in sorted(set(fleets)):
        rows = tx.execute(
            "SELECT id, stage, status, created_at, finished_at, verdict, judgement "
            f"FROM fleet_analyses WHERE strategy = ? AND fleet = ? AND created_at >= ?{end} "
            "ORDER BY id LIMIT ?",
            (strategy, fleet, since, *(() if until is None else (until,)), int(limit)),
        ).fetchall()
        for row_id, stage, status, created, finished, verdict, judgement in rows:
            judged = _object(judgement)
            found.append(
                {
                    "id": row_id,
                    "at": finished if finished is not None else created,
                    "strategy": strategy,
                    "fleet": fleet,
                    "stage": stage,
                    "status": status,
                    "verdict": verdict,
                    "reason": str(judged.get("reason") or "")[:REASON_CHARS],
                }
            )
    return sorted(found, key=lambda analysis: (analysis["at"], analysis["id"]))


def _object(text: str | None) -> dict[str, Any]:
    """A stored JSON object, {} for none or for text that is not one."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
