"""Keyed locks: what lets PostgreSQL replicas write the journal at the same time.

SQLite has one writer at a time (sqlite.py), so every invariant of the journal holds by
construction there and each lock below is a no-op (`KeyedLocks`). On PostgreSQL several
replicas write at once, and each invariant the old global write and claim locks kept is
kept instead by a lock keyed by what it guards, or by a constraint (`PostgresLocks`):

    invariant                                  guarded by
    ─────────────────────────────────────────  ──────────────────────────────────────────
    one incident per (fingerprint, startsAt)   UNIQUE key + INSERT ... ON CONFLICT DO
                                               NOTHING (sql.py insert_incident); an
                                               occurrence's rows read FOR UPDATE
    one claim per planned action               SELECT ... FOR UPDATE SKIP LOCKED
    never two actions on one target; cooldown, lock TARGET (the target): every claim
    budget; the (strategy, target) breaker     that may start an action on it, every
                                               outcome and every manual reset holds it
    global cap on concurrent actions           one of `cap` rows of `action_slots`,
                                               taken FOR UPDATE SKIP LOCKED
    a fleet's in-flight limit, waves           lock FLEET (strategy, fleet)
    label values admitted (labels.py)          lock LABEL (the label name), only while a
                                               new value is admitted
    running totals (metric_totals)             one of SHARDS shard rows per series,
                                               chosen by a try-lock (`total_shard`)

Claims never wait on a keyed lock: they *try* it (`try_lock`) and pass over a candidate
whose target or fleet another transaction holds (it is claimed later), so two claims
never deadlock on each other. Outcomes and resets wait (`lock`), one key at a time in
the order target, then fleet, then label. Locks are PostgreSQL's transaction-level
advisory locks (released at COMMIT or ROLLBACK, even when the process dies), keyed by a
64-bit hash of the kind, the schema and the key, so journals in different schemas of
one database never share a lock. Two keys whose hashes collide only share a lock: that
serializes more than needed, never less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

TARGET = "target"
FLEET = "fleet"
LABEL = "label"
TOTALS = "totals"

#: Shard rows per running total on PostgreSQL: a transaction adds its deltas to a shard
#: no other open transaction holds, so a total touched by every ingest (alerts received)
#: never makes writers queue on one row. Shards are used from 0 up, only as many as
#: writers flush at the same moment; /metrics sums them.
SHARDS = 8

#: Concurrency slot rows made when the schema is created: config's bound on
#: `max_concurrent_actions` (a claim never has to create one, which would make the
#: others wait for its commit; a larger cap would have its missing rows made then).
MAX_SLOTS = 64
#: The slot rows, made at start by every replica (PostgreSQL only; idempotent).
SLOT_ROWS = (
    "INSERT INTO action_slots (slot) SELECT s FROM generate_series(0, ? - 1) AS s "
    "ON CONFLICT (slot) DO NOTHING"
)

Execute = Callable[[str, Sequence[Any]], Any]


def fleet_key(strategy: str, fleet: str) -> str:
    """The FLEET lock's key of a (strategy, fleet)."""
    return f"{strategy}\x1f{fleet}"


class KeyedLocks:
    """No-op locks for a store with one writer at a time (SQLite): every write
    transaction is exclusive already, so each lock is held by construction."""

    #: appended to a SELECT whose rows the transaction goes on to change
    for_update = ""
    #: appended to the claim's scan of planned actions (alias `a`)
    skip_locked = ""

    def lock(self, kind: str, key: str) -> None:
        """Wait for the lock `kind`/`key` and hold it until the transaction ends."""

    def try_lock(self, kind: str, key: str) -> bool:
        """Take the lock `kind`/`key` if free (held until the transaction ends); False
        when another transaction holds it."""
        return True

    def total_shard(self) -> int | None:
        """The shard row this transaction adds its running totals to (None: the single
        row of metric_totals, as SQLite writes)."""
        return None

    def take_slot(self, action_id: int, cap: int) -> bool:
        """Reserve one of the `cap` concurrency slots for `action_id`, about to start;
        False when all are held. Without concurrent writers the gate's count of running
        actions is exact, so there is nothing to reserve."""
        return True


#: a slot row no running action holds
_FREE = (
    "(action_slots.action_id IS NULL OR NOT EXISTS (SELECT 1 FROM actions a "
    "WHERE a.id = action_slots.action_id AND a.status = 'running'))"
)


class PostgresLocks(KeyedLocks):
    """Transaction-level advisory locks and row locks (module docstring)."""

    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE OF a SKIP LOCKED"
    _KEY = "hashtextextended(? || chr(31) || current_schema() || chr(31) || ?, 0)"

    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._shard: int | None = None
        self._slots_ready = 0  # slots known to exist, in this transaction

    def lock(self, kind: str, key: str) -> None:
        self._execute(f"SELECT pg_advisory_xact_lock({self._KEY})", (kind, key)).fetchone()

    def try_lock(self, kind: str, key: str) -> bool:
        row = self._execute(f"SELECT pg_try_advisory_xact_lock({self._KEY})", (kind, key))
        return bool(row.fetchone()[0])

    def total_shard(self) -> int:
        """The lowest shard no other open transaction holds (try-locks from 0 up, in one
        statement; at most SHARDS), or, if all are held, shard 0 waited for: its holder
        is between its last upsert and its commit."""
        if self._shard is not None:
            return self._shard
        key = self._KEY.replace("?, 0)", "s::text, 0)", 1)
        row = self._execute(
            f"SELECT s FROM generate_series(0, {SHARDS - 1}) AS s "
            f"WHERE pg_try_advisory_xact_lock({key}) LIMIT 1",
            (TOTALS,),
        ).fetchone()
        if row is None:
            self.lock(TOTALS, "0")
            self._shard = 0
        else:
            self._shard = row[0]
        return self._shard

    def take_slot(self, action_id: int, cap: int) -> bool:
        """Lock a free slot below `cap` (SKIP LOCKED: never wait for another claim's),
        then write `action_id` into it if it is still free as a fresh statement sees it
        (the lock may have waited out a commit that the first statement's snapshot
        predates: its new holder is running). A slot stays held until its action is no
        longer running; nothing has to free it."""
        if cap <= 0:
            return False
        self._ensure_slots(cap)
        after = -1
        while True:
            row = self._execute(
                f"SELECT slot FROM action_slots WHERE slot > ? AND slot < ? AND {_FREE} "
                "ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED",
                (after, cap),
            ).fetchone()
            if row is None:
                return False
            taken = self._execute(
                f"UPDATE action_slots SET action_id = ? WHERE slot = ? AND {_FREE}",
                (action_id, row[0]),
            ).rowcount
            if taken:
                return True
            after = row[0]

    def _ensure_slots(self, cap: int) -> None:
        if self._slots_ready >= cap:
            return
        have = self._execute("SELECT COUNT(*) FROM action_slots WHERE slot < ?", (cap,))
        if have.fetchone()[0] < cap:
            self._execute(SLOT_ROWS, (cap,))
        self._slots_ready = cap
