"""The spool: large notifications accepted but not yet journaled whole, kept durably.

A notification of more than `limits.notification_chunk_alerts` alerts is journaled in
chunks, one transaction each (receiver/writer/process.py). Its raw body is written to
`spooled_notifications` first, in a transaction of its own; each chunk's transaction
then also advances the row's `next_alert` (and the summary of the chunks so far), and
the last chunk's deletes it. So the row is the source of truth for what is left:

    spooled (next_alert 0) --chunk--> next_alert 500 --chunk--> ... --last chunk--> gone

If a chunk fails after the row committed, or the writer dies, the rest is journaled
later from the row, by whichever journal writer claims it. A claim (`claimed_by`, with
`heartbeat_at` refreshed by every chunk) is held by one writer; another may take it
when it is stale (no chunk for STALE_AFTER_S), or at once when its owner is a process
of this host that no longer exists (a writer killed with -9 and restarted). Every
chunk's update is conditional on the claim and on `next_alert` being what its writer
read, so even two writers that both believe they hold a row never journal one chunk
twice: the second one's update matches nothing and its transaction is rolled back.

The SQL is the portable subset of sql.py; the table is made by the schema's revisions
(store/migrations/versions/).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

#: seconds without a chunk after which another writer may take a claim (as the
#: dispatcher adopts a running action after 5 missed heartbeats of 2 s)
STALE_AFTER_S = 10.0


class ClaimLost(RuntimeError):
    """The spool row is no longer this writer's to advance (another writer took it, or
    finished it): the chunk's transaction is rolled back and the writer lets it go."""


def writer_id() -> str:
    """This process's name in `claimed_by`: host, pid, and a random part (pids recur)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_gone(claimed_by: str, host: str, pid_alive: Any) -> bool:
    """True when `claimed_by` names a process of `host` for which `pid_alive(pid)` is
    False (a writer killed and restarted); False when it cannot tell (another host, a
    malformed name), and the heartbeat decides."""
    parts = claimed_by.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    return not pid_alive(int(parts[1]))


def claimable(
    claimed_by: str | None,
    heartbeat_at: float | None,
    me: str,
    now: float,
    gone: bool = False,
    stale_after: float = STALE_AFTER_S,
) -> bool:
    """May the writer `me` take a spool row claimed by `claimed_by`, last advanced at
    `heartbeat_at` (epoch seconds), at `now`? Yes if nobody holds it, it holds it
    itself, the claim is stale, or its owner is `gone` (see owner_gone)."""
    if claimed_by is None or claimed_by == me or gone:
        return True
    return heartbeat_at is None or now - heartbeat_at > stale_after


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 probes it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


@dataclass(frozen=True)
class SpooledRow:
    """A claimed spool row: what resuming it needs. `summary` sums the committed chunks
    (IngestSummary.as_dict; empty before the first)."""

    id: int
    received_at: float
    body: bytes
    alerts: int
    next_alert: int
    summary: dict[str, int]


def insert(tx: Any, received_at: float, body: bytes, alerts: int, me: str, now: float) -> int:
    """Spool a notification's raw body, claimed by `me`; return the row's id."""
    return tx.execute(
        "INSERT INTO spooled_notifications (received_at, body, alerts, next_alert, summary, "
        "claimed_by, heartbeat_at) VALUES (?, ?, ?, 0, ?, ?, ?) RETURNING id",
        (received_at, body, alerts, "{}", me, now),
    ).fetchone()[0]


def advance(
    tx: Any, row_id: int, me: str, start: int, stop: int, total: int, summary: dict[str, int],
    now: float,
) -> None:  # fmt: skip
    """Record that alerts [start, stop) are journaled in this transaction: the row moves
    to `stop` with the summary so far, or is deleted when `stop` reaches `total`. Raises
    ClaimLost unless the row is still `me`'s and still at `start`."""
    if stop >= total:
        cursor = tx.execute(
            "DELETE FROM spooled_notifications WHERE id = ? AND claimed_by = ? AND next_alert = ?",
            (row_id, me, start),
        )
    else:
        cursor = tx.execute(
            "UPDATE spooled_notifications SET next_alert = ?, summary = ?, heartbeat_at = ? "
            "WHERE id = ? AND claimed_by = ? AND next_alert = ?",
            (stop, json.dumps(summary), now, row_id, me, start),
        )
    if cursor.rowcount != 1:
        raise ClaimLost(f"spooled notification {row_id} at alert {start} is not this writer's")


def candidates(tx: Any) -> list[tuple[int, str | None, float | None]]:
    """(id, claimed_by, heartbeat_at) of every spool row, oldest first (few: each is a
    large notification in progress)."""
    rows = tx.execute(
        "SELECT id, claimed_by, heartbeat_at FROM spooled_notifications ORDER BY id"
    ).fetchall()
    return [tuple(row) for row in rows]


def claim(
    tx: Any, row_id: int, was: str | None, beat: float | None, me: str, now: float
) -> SpooledRow | None:
    """Take row `row_id` for `me` if its claim is still (`was`, `beat`) as read; the
    row to resume, or None if it changed or is gone. Run in a write transaction: one
    writer at a time on SQLite; on PostgreSQL the row is read FOR UPDATE (as last
    committed, then locked), so two writers never both take it."""
    row = tx.execute(
        "SELECT received_at, body, alerts, next_alert, summary, claimed_by, heartbeat_at "
        "FROM spooled_notifications WHERE id = ?" + tx.locks.for_update,
        (row_id,),
    ).fetchone()
    if row is None or (row[5], row[6]) != (was, beat):
        return None
    tx.execute(
        "UPDATE spooled_notifications SET claimed_by = ?, heartbeat_at = ? WHERE id = ?",
        (me, now, row_id),
    )
    received_at, body, alerts, next_alert, summary = row[:5]
    return SpooledRow(row_id, received_at, bytes(body), alerts, next_alert, json.loads(summary))


def discard(tx: Any, row_id: int) -> None:
    """Remove a spool row that can never be journaled (see JournalWriter._resume)."""
    tx.execute("DELETE FROM spooled_notifications WHERE id = ?", (row_id,))
