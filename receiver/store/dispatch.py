"""Store operations of the dispatcher: claims, outcomes, breakers, scale targets.

A claim is ONE write transaction that takes the planned actions due now, oldest first,
reads each one's gate inputs from the journal, and marks it running, skipped, or waiting
(still planned, with the gate and when to look again), until it has marked as many
running as it may (claim_many's `limit`: one per dispatcher thread free to start one).
Each is judged after the ones before it were marked, so the gates see them. A skip and
an outcome are folded into the action's runbook run by the caller's `follow` in that
same transaction.

Claims are exclusive per action and per key, not per journal. On SQLite a write
transaction is exclusive (BEGIN IMMEDIATE), so one claim runs at a time. On PostgreSQL
claims run at once, in every replica (store/locks.py says which lock guards what):
candidates are read FOR UPDATE SKIP LOCKED (two claims never take one action); a
candidate is judged only under its target's lock and its fleet's, *tried* (never
waited for: a candidate whose key another transaction holds is passed over, and looked
at by a later claim), so the lock, cooldown, budget and breaker gates read what no
other transaction can change until this one commits; an action starts only holding one
of the `max_concurrent_actions` concurrency slots (rows taken FOR UPDATE SKIP LOCKED).
Outcomes (`finish`) and breaker resets wait for the target's lock, so a claim never
writes back a breaker state that an outcome or a reset changed meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from receiver import breaker
from receiver.gates import HANDLED, GateInputs, Verdict
from receiver.store import listing, locks, runs, totals
from receiver.store.base import Page
from receiver.store.sql import SqlTransaction, iso

T = TypeVar("T")
EXECUTED = ("running", "succeeded", "failed", "timed_out")
CLAIM_SCAN_LIMIT = 50  # candidates looked at per claim; skips are journaled as we go
#: Candidates read by a claim's first query; the rest of CLAIM_SCAN_LIMIT only when
#: the gates held all of those back. Most claims take their first candidate, and reading
#: (and decoding) 50 rows to use one cost more than the claim's gates (profiled: about
#: 0.15 ms of a 1.4 ms action).
CLAIM_FIRST_PAGE = 4


@dataclass(frozen=True)
class ActionRow:
    """A planned or running action with what the executor needs from its incident."""

    id: int
    incident_id: int
    strategy: str
    action: str
    executor: str
    target: str
    params: dict[str, Any]
    dry_run: bool
    created_at: float
    started_at: float | None
    labels: dict[str, str]
    annotations: dict[str, str]
    incident_status: str
    #: identity of the process group its command was started in (ProcessIdentity.to_dict)
    process: dict[str, Any] | None = None
    #: the runbook step (1-based) it carries out, and its run (None: journaled before runs)
    step: int = 1
    run_id: int | None = None
    #: the gate it waits for, as last journaled (None: not waiting)
    waiting: str | None = None
    #: the fleet its target belongs to (None: its strategy has no `fleet`)
    fleet: str | None = None
    #: when its incident's alert started firing (epoch seconds), for time-to-remediate
    alert_start: float | None = None


_ROW_SQL = (
    "SELECT a.id, a.incident_id, a.strategy, a.action, a.executor, a.target, a.params, "
    "a.dry_run, a.created_at, a.started_at, i.labels, i.annotations, i.status, a.process, "
    "a.step, a.run_id, a.waiting, a.fleet, i.starts_at_ts "
    "FROM actions a JOIN incidents i ON i.id = a.incident_id "
)


def _row(values: tuple[Any, ...]) -> ActionRow:
    (id_, incident_id, strategy, action, executor, target, params, dry_run, created_at,
     started_at, labels, annotations, incident_status, process, step, run_id,
     waiting, fleet, alert_start) = values  # fmt: skip
    return ActionRow(
        id_, incident_id, strategy, action, executor, target, json.loads(params),
        bool(dry_run), created_at, started_at, json.loads(labels), json.loads(annotations),
        incident_status, json.loads(process) if process else None,
        1 if step is None else step, run_id,
        waiting, fleet, alert_start,
    )  # fmt: skip


class GateReader:
    """Gate inputs read inside the claim transaction."""

    def __init__(self, tx: SqlTransaction) -> None:
        self.tx = tx
        #: breaker states as read (or written) in this transaction, by (strategy, target)
        self._breakers: dict[tuple[str, str], breaker.BreakerState] = {}

    def running_on_target(self, target: str) -> int | None:
        row = self.tx.execute(
            "SELECT id FROM actions WHERE status = 'running' AND target = ? LIMIT 1", (target,)
        ).fetchone()
        return row[0] if row else None

    def last_started(self, strategy: str, target: str, incident_id: int = -1) -> float | None:
        """The latest start of (strategy, target) for an incident other than
        `incident_id` (a runbook's own steps are not in its cooldown)."""
        return self.tx.execute(
            "SELECT MAX(started_at) FROM actions WHERE strategy = ? AND target = ? "
            "AND status IN ('running', 'succeeded', 'failed', 'timed_out') "
            "AND incident_id != ?",
            (strategy, target, incident_id),
        ).fetchone()[0]

    def started_since(self, target: str, since: float) -> int:
        return self.tx.execute(
            "SELECT COUNT(*) FROM actions WHERE target = ? AND started_at >= ? "
            "AND status IN ('running', 'succeeded', 'failed', 'timed_out')",
            (target, since),
        ).fetchone()[0]

    def running_total(self) -> int:
        return self.tx.execute("SELECT COUNT(*) FROM actions WHERE status = 'running'").fetchone()[
            0
        ]

    def inputs(self, row: ActionRow, budget_since: float) -> GateInputs:
        """What the gates judge `row` on: the action running on its target, the latest
        start of its (strategy, target) for another incident, the starts on its target
        since `budget_since` (epoch seconds: now minus the budget window), the actions
        running anywhere, and its (strategy, target)'s breaker."""
        return GateInputs(
            running_on_target=self.running_on_target(row.target),
            last_started=self.last_started(row.strategy, row.target, row.incident_id),
            started_in_budget_window=self.started_since(row.target, budget_since),
            running_total=self.running_total(),
            breaker_state=self.breaker(row.strategy, row.target),
        )

    def take_slot(self, action_id: int, cap: int) -> bool:
        """Reserve a concurrency slot (of `cap`) for the action the gates let run; False
        when every slot is held, the concurrency gate's DEFER (see locks.take_slot)."""
        return self.tx.locks.take_slot(action_id, cap)

    def breaker(self, strategy: str, target: str) -> breaker.BreakerState:
        state = load_breaker(self.tx, strategy, target)
        self._breakers[strategy, target] = state
        return state

    def changes(self, row: ActionRow, state: breaker.BreakerState) -> bool:
        """Whether writing `state` as the breaker of the row's (strategy, target) changes
        what the journal holds; True unless this transaction read (or wrote) that very
        state. A closed breaker admits without a change: no write per claim."""
        return self._breakers.get((row.strategy, row.target)) != state

    def saved(self, row: ActionRow, state: breaker.BreakerState) -> None:
        """Note that `state` was written as the row's breaker in this transaction."""
        self._breakers[row.strategy, row.target] = state


def load_breaker(tx: SqlTransaction, strategy: str, target: str) -> breaker.BreakerState:
    """The breaker of (strategy, target): as stored, or a new (closed) one."""
    return stored_breaker(tx, strategy, target) or breaker.BreakerState()


def stored_breaker(tx: SqlTransaction, strategy: str, target: str) -> breaker.BreakerState | None:
    """The breaker of (strategy, target) as stored; None when it has no row yet."""
    row = tx.execute(
        "SELECT state FROM breakers WHERE strategy = ? AND target = ?", (strategy, target)
    ).fetchone()
    return breaker.BreakerState.from_dict(json.loads(row[0])) if row else None


def save_breaker(
    tx: SqlTransaction,
    strategy: str,
    target: str,
    state: breaker.BreakerState,
    now: float,
    *,
    exists: bool | None = None,
) -> None:
    """Write the breaker of (strategy, target). `exists`: whether its row is known (read
    in this transaction) to exist, or None to find out (an UPDATE, then an INSERT)."""
    payload = json.dumps(state.to_dict())
    updated = 0
    if exists is not False:
        updated = tx.execute(
            "UPDATE breakers SET state = ?, updated_at = ? WHERE strategy = ? AND target = ?",
            (payload, now, strategy, target),
        ).rowcount
    # the target gets its own metric series or is exported as "other"; a new breaker
    # past the bound counts as folded once
    tx.labels.value("target", target, count=not updated)
    if not updated:
        tx.execute(
            "INSERT INTO breakers (strategy, target, state, updated_at) VALUES (?, ?, ?, ?)",
            (strategy, target, payload, now),
        )


Judge = Callable[[ActionRow, GateReader], Verdict]
#: Folds an action's just-journaled end into its runbook run, in the same transaction
#: (runs.follow); returns what it planned.
Follow = Callable[[SqlTransaction, ActionRow], Any]


@dataclass(frozen=True)
class Claimed:
    """What one claim transaction took: `actions`, (row marked running, its verdict)
    oldest first; `more`, True when the claim stopped before it had seen every due
    candidate (its limit reached, a deferral, or CLAIM_SCAN_LIMIT), so another claim may
    find work now; False when every due candidate was judged."""

    actions: list[tuple[ActionRow, Verdict]]
    more: bool


def _claim_in(
    tx: SqlTransaction,
    worker: str,
    now: float,
    judge: Judge,
    follow: Follow | None,
    limit: int,
) -> Claimed:
    """The body of claim_many, inside its transaction."""
    reader = GateReader(tx)
    taken: list[tuple[ActionRow, Verdict]] = []
    scan = _Scan(tx, now, limit)
    passed_over = False
    for values in scan:
        row = _row(values)
        if not _lock_keys(tx, row):
            passed_over = True  # another transaction decides on its target or fleet now
            continue
        verdict = judge(row, reader)
        if verdict.outcome == HANDLED:
            continue  # the judge journaled it already (its fleet's plan)
        if verdict.breaker_state is not None and reader.changes(row, verdict.breaker_state):
            save_breaker(tx, row.strategy, row.target, verdict.breaker_state, now)
            reader.saved(row, verdict.breaker_state)
        if verdict.outcome == "defer":
            _wait(tx, row, verdict, None, now)
            return Claimed(taken, more=True)
        if verdict.outcome == "delay":
            _wait(tx, row, verdict, verdict.not_before, now)
        elif verdict.outcome == "skip":
            set_status(tx, row.id, "skipped", verdict.reason, now, finished=True, row=row)
            if follow is not None:
                follow(tx, row)
        else:
            taken.append((_mark_running(tx, row, worker, verdict, now), verdict))
            if len(taken) == limit:
                return Claimed(taken, more=True)
    return Claimed(taken, more=scan.cut or passed_over)


def _lock_keys(tx: SqlTransaction, row: ActionRow) -> bool:
    """Try the locks a candidate is judged under: its fleet's, then its target's (held
    until the claim commits); False when another transaction holds one."""
    if row.fleet is not None and not tx.locks.try_lock(
        locks.FLEET, locks.fleet_key(row.strategy, row.fleet)
    ):
        return False
    return tx.locks.try_lock(locks.TARGET, row.target)


def _mark_running(
    tx: SqlTransaction, row: ActionRow, worker: str, verdict: Verdict, now: float
) -> ActionRow:
    tx.execute(
        "UPDATE actions SET status = 'running', claimed_by = ?, started_at = ?, "
        "heartbeat_at = ?, updated_at = ?, reason = ?, not_before = NULL, "
        "waiting = NULL WHERE id = ?",
        (worker, now, now, now, verdict.reason, row.id),
    )
    tx.add_event(row.id, now, "running", f"claimed by {worker}: {verdict.reason}")
    return replace(row, started_at=now)


class DispatchStore:
    """Mixed into SqlStore; relies on its `transaction()` and `_read()`."""

    def claim(
        self, worker: str, now: float, judge: Judge, follow: Follow | None = None
    ) -> tuple[ActionRow, Verdict] | None:
        """Claim the oldest planned action due at `now` that the gates let run (see
        claim_many, with `limit` 1): (row marked running, its verdict), or None."""
        claimed = self.claim_many(worker, now, judge, follow, limit=1)
        return claimed.actions[0] if claimed.actions else None

    def claim_many(
        self,
        worker: str,
        now: float,
        judge: Judge,
        follow: Follow | None = None,
        *,
        limit: int = 1,
    ) -> Claimed:
        """Claim up to `limit` (>= 1) planned actions due at `now` that the gates let
        run, oldest first, in ONE transaction; skip the ones they end (`follow` folds
        each skip into its runbook) and let the ones they delay wait (journaled when the
        gate they wait for changes). Each candidate is judged after the ones before it
        in the batch were marked running, so the gates (per-target lock, cooldown,
        budget, concurrency cap, breaker, fleet) see them as another claim would. A
        deferral (`concurrency`) ends the batch. Returns the rows marked running (with
        `started_at` = `now`) and whether candidates may be left behind the batch."""
        return self.claim_due(worker, lambda: now, lambda _now: judge, follow, limit=limit)

    def claim_due(
        self,
        worker: str,
        clock: Callable[[], float],
        judging: Callable[[float], Judge],
        follow: Follow | None = None,
        *,
        limit: int = 1,
    ) -> Claimed:
        """claim_many at the time `clock()` (seconds since the epoch) reads once the
        claim's transaction began, judged by `judging(now)`. On SQLite that is once
        the journal's write lock is held, so an action planned by a transaction the
        claim waited for (a runbook's next step, planned as its step before ends) is
        never stamped as started before it was planned, nor before that step ended. On
        PostgreSQL, whose claims take no journal-wide lock, the clock is read just
        before the scan's first query, with no wait between them. (Refusing actions
        planned after `now` would close that gap too, but would stall every claim for
        as long as a replica's clock runs ahead or a host's clock is stepped back.)"""
        with self.transaction() as tx:
            now = clock()
            return _claim_in(tx, worker, now, judging(now), follow, max(1, limit))

    def change(self, apply: Callable[[SqlTransaction], T]) -> T:
        """Run `apply` in one write transaction (a fleet's verdict, size or escalation: see
        fleetrun.py; a fleet's state is read under its lock, store/fleets.py load);
        returns what it returns."""
        with self.transaction() as tx:
            return apply(tx)

    def look(self, read: Callable[[SqlTransaction], T]) -> T:
        """Run `read` in one read-only transaction; returns what it returns."""
        with self.transaction(write=False) as tx:
            return read(tx)

    def note(self, action_id: int, now: float, reason: str) -> None:
        """Journal a step of a running action (executed, verifying, silenced...)."""
        with self.transaction() as tx:
            tx.add_event(action_id, now, "running", reason)
            tx.execute("UPDATE actions SET heartbeat_at = ? WHERE id = ?", (now, action_id))

    def record_process(
        self, action_id: int, process: dict[str, Any], now: float, reason: str
    ) -> None:
        """Journal the process group a running action's command was started in, so the
        crash rule can find it if this process dies (see dispatcher.py)."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE actions SET process = ?, heartbeat_at = ? WHERE id = ?",
                (json.dumps(process), now, action_id),
            )
            tx.add_event(action_id, now, "running", reason)

    def remark(self, action_id: int, now: float, reason: str) -> None:
        """Journal something that happened after the outcome (e.g. the escalation)."""
        with self.transaction() as tx:
            status = tx.execute("SELECT status FROM actions WHERE id = ?", (action_id,)).fetchone()
            tx.add_event(action_id, now, status[0], reason)

    def heartbeat(self, action_ids: list[int], now: float) -> None:
        if not action_ids:
            return
        marks = ", ".join("?" for _ in action_ids)
        with self.transaction() as tx:
            tx.execute(
                f"UPDATE actions SET heartbeat_at = ? WHERE id IN ({marks}) AND status = 'running'",
                (now, *action_ids),
            )

    def finish(
        self,
        row: ActionRow,
        status: str,
        reason: str,
        output: str,
        now: float,
        outcome_for_breaker: Callable[[breaker.BreakerState], breaker.BreakerState] | None,
        follow: Follow | None = None,
        steps: tuple[tuple[float, str], ...] = (),
    ) -> tuple[breaker.BreakerState, breaker.BreakerState]:
        """Record the outcome, the breaker's update and (`follow`) what the action's runbook
        does next, together; returns the breaker's (before, after). `steps`: (epoch
        seconds, reason) of running steps not journaled yet (the dispatcher's "executed"
        when no verification follows), journaled first as `running` events, as `note`
        would, in this same transaction."""
        with self.transaction() as tx:
            for at, step in steps:
                tx.add_event(row.id, at, "running", step)
            # A claim writes back the breaker state its judge read, under the target's
            # lock: waiting for it, this read-modify-write is never erased by that write.
            tx.locks.lock(locks.TARGET, row.target)
            stored = stored_breaker(tx, row.strategy, row.target)
            before = stored or breaker.BreakerState()
            after = outcome_for_breaker(before) if outcome_for_breaker else before
            # a claim does not write a closed breaker it read (claim_many): the first
            # outcome writes it, so every (strategy, target) that acted has its row
            if after != before or (stored is None and outcome_for_breaker is not None):
                save_breaker(tx, row.strategy, row.target, after, now, exists=stored is not None)
            set_status(tx, row.id, status, reason, now, finished=True, output=output, row=row)
            if follow is not None:
                follow(tx, row)
        return before, after

    def orphans(self, stale_before: float) -> list[ActionRow]:
        """Running actions whose process stopped heart-beating (it crashed or was killed)."""
        with self.transaction(write=False) as tx:
            rows = tx.execute(
                _ROW_SQL + "WHERE a.status = 'running' AND a.heartbeat_at < ? ORDER BY a.id",
                (stale_before,),
            ).fetchall()
        return [_row(values) for values in rows]

    def adopt(self, action_id: int, worker: str, stale_before: float, now: float) -> bool:
        """Take over an orphan; only one process can win it."""
        with self.transaction() as tx:
            taken = tx.execute(
                "UPDATE actions SET claimed_by = ?, heartbeat_at = ?, updated_at = ? "
                "WHERE id = ? AND status = 'running' AND heartbeat_at < ?",
                (worker, now, now, action_id, stale_before),
            ).rowcount
            if taken:
                tx.add_event(action_id, now, "running", f"adopted by {worker} after a crash")
        return bool(taken)

    # runbooks: escalations owed, repeats due, waiting actions -----------------
    def claim_escalations(
        self, now: float, lease: float = runs.ESCALATION_LEASE
    ) -> list[runs.Escalation]:
        """Lease the pending escalations of uncured runbook runs for `lease` seconds (see
        store/runs.py)."""
        with self.transaction() as tx:
            return runs.claim_escalations(tx, now, lease)

    def record_escalation(
        self, escalation: runs.Escalation, delivered: str | None, note: str, now: float
    ) -> None:
        """Journal how an escalation went, on its run and on the run's last action."""
        with self.transaction() as tx:
            runs.record_escalation(tx, escalation.run_id, delivered, note, now)
            if escalation.last_action_id is not None:
                status = tx.execute(
                    "SELECT status FROM actions WHERE id = ?", (escalation.last_action_id,)
                ).fetchone()[0]
                tx.add_event(escalation.last_action_id, now, status, note)

    def repeat_due(self, now: float, start: Callable[[SqlTransaction, runs.RunRow], Any]) -> int:
        """Take each cured run whose repeat time came and, if its incident still fires,
        `start` its next run in the same transaction; returns how many were taken."""
        taken = 0
        with self.transaction() as tx:
            for run, incident_status in runs.due_repeats(tx, now):
                if runs.take_repeat(tx, run.id, now):
                    taken += 1
                    if incident_status == "firing":
                        start(tx, run)
        return taken

    def waiting_counts(self) -> dict[str, int]:
        """Planned actions by what they wait for (`queued`: nothing yet, just planned)."""
        rows = self._read(
            "SELECT COALESCE(waiting, 'queued'), COUNT(*) FROM actions WHERE status = 'planned' "
            "GROUP BY COALESCE(waiting, 'queued')"
        )
        return {reason: count for reason, count in rows}

    def firing_labels(self) -> list[dict[str, str]]:
        rows = self._read("SELECT labels FROM incidents WHERE status = 'firing' LIMIT 100000")
        return [json.loads(row[0]) for row in rows]

    # breakers ---------------------------------------------------------------
    def list_breakers(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT strategy, target, state, updated_at FROM breakers ORDER BY 1, 2")
        return [_breaker_dict(*row) for row in rows]

    def breakers_page(self, limit: int, offset: int, bounds: listing.PageBounds) -> Page:
        """Breakers as list_breakers shows them, in a page bounded in rows and bytes
        (strategy and target cut at the field bound, the recent calls too)."""
        cut = self.byte_length
        count = self._read("SELECT COUNT(*) FROM breakers")[0][0]
        fill = listing.PageFill(bounds)
        with self.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT substr(strategy, 1, {bounds.field_bytes}), {cut.format('strategy')}, "
                f"substr(target, 1, {bounds.field_bytes}), {cut.format('target')}, state, "
                "updated_at FROM breakers ORDER BY strategy, target LIMIT ? OFFSET ?",
                (min(limit, bounds.rows), offset),
            )
            for strategy, strategy_size, target, target_size, state, updated_at in rows:
                shown_strategy, strategy_cut = listing.cut_prefix(
                    strategy, strategy_size, bounds.field_bytes
                )
                shown_target, target_cut = listing.cut_prefix(
                    target, target_size, bounds.field_bytes
                )
                row = _breaker_dict(shown_strategy, shown_target, state, updated_at)
                calls, left_out = listing.latest_that_fit(row["calls"], bounds.field_bytes)
                row["calls"] = calls
                row["truncated"] = bool(strategy_cut or target_cut or left_out)
                if left_out:
                    row["omitted"] = {"calls": {"entries": left_out}}
                if not fill.add(row):
                    break
        return Page(fill.items, count, limit, offset)

    def targets_page(self, limit: int, offset: int, bounds: listing.PageBounds) -> Page:
        """Scale targets as list_targets shows them, in a page bounded in rows and bytes."""
        cut = self.byte_length
        count = self._read("SELECT COUNT(*) FROM targets")[0][0]
        fill = listing.PageFill(bounds)
        with self.transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT substr(executor, 1, {bounds.field_bytes}), {cut.format('executor')}, "
                f"substr(target, 1, {bounds.field_bytes}), {cut.format('target')}, "
                "current_replicas, desired_replicas, min_replicas, max_replicas, updated_at "
                "FROM targets ORDER BY target, executor LIMIT ? OFFSET ?",
                (min(limit, bounds.rows), offset),
            )
            for executor, executor_size, target, target_size, *figures in rows:
                shown_executor, executor_cut = listing.cut_prefix(
                    executor, executor_size, bounds.field_bytes
                )
                shown_target, target_cut = listing.cut_prefix(
                    target, target_size, bounds.field_bytes
                )
                row = _target_dict(shown_executor, shown_target, *figures)
                row["truncated"] = bool(executor_cut or target_cut)
                if not fill.add(row):
                    break
        return Page(fill.items, count, limit, offset)

    def reset_breaker(self, strategy: str, target: str, now: float) -> bool:
        with self.transaction() as tx:
            tx.locks.lock(locks.TARGET, target)  # see finish(): a claim must not undo it
            exists = tx.execute(
                "SELECT 1 FROM breakers WHERE strategy = ? AND target = ?", (strategy, target)
            ).fetchone()
            if exists:
                save_breaker(tx, strategy, target, breaker.reset(), now)
        return bool(exists)

    # scale targets ----------------------------------------------------------
    def load_scale_history(self, executor: str, target: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT history FROM targets WHERE executor = ? AND target = ?", (executor, target)
        )
        return json.loads(rows[0][0]) if rows else None

    def save_target(
        self,
        executor: str,
        target: str,
        replicas: tuple[int, int, int, int],
        history: dict[str, Any],
        now: float,
    ) -> None:
        """replicas = (current, desired, min, max), as the dashboard draws them."""
        with self.transaction() as tx:
            tx.labels.value("target", target, count=False)  # admitted, or exported as "other"
            tx.execute("DELETE FROM targets WHERE executor = ? AND target = ?", (executor, target))
            tx.execute(
                "INSERT INTO targets (executor, target, current_replicas, desired_replicas, "
                "min_replicas, max_replicas, history, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (executor, target, *replicas, json.dumps(history), now),
            )

    def list_targets(self) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT executor, target, current_replicas, desired_replicas, min_replicas, "
            "max_replicas, updated_at FROM targets ORDER BY target, executor"
        )
        return [_target_dict(*row) for row in rows]


def _breaker_dict(strategy: str, target: str, state: str, updated_at: float) -> dict[str, Any]:
    return {
        "key": f"{strategy}/{target}",
        "strategy": strategy,
        "target": target,
        **json.loads(state),
        "updated_at": iso(updated_at),
    }


def _target_dict(
    executor: str,
    target: str,
    current: int,
    desired: int,
    minimum: int,
    maximum: int,
    updated_at: float,
) -> dict[str, Any]:
    return {
        "executor": executor,
        "target": target,
        "current": current,
        "desired": desired,
        "min": minimum,
        "max": maximum,
        "updated_at": iso(updated_at),
    }


def _wait(
    tx: SqlTransaction, row: ActionRow, verdict: Verdict, not_before: float | None, now: float
) -> None:
    """Keep a planned action waiting for a gate until `not_before` (None: the next claim);
    journal it the first time it waits for this gate, not at every look."""
    if row.waiting == verdict.gate:
        tx.execute("UPDATE actions SET not_before = ? WHERE id = ?", (not_before, row.id))
        return
    reason = f"waiting: {verdict.reason}"
    if not_before is not None:
        reason += f"; eligible at {iso(not_before)}"
    tx.execute(
        "UPDATE actions SET not_before = ?, waiting = ?, reason = ?, updated_at = ? WHERE id = ?",
        (not_before, verdict.gate, reason, now, row.id),
    )
    tx.add_event(row.id, now, "planned", reason)


class _Scan:
    """The planned actions due at `now`, oldest first, at most CLAIM_SCAN_LIMIT (or
    `limit`, if larger): read a first page of CLAIM_FIRST_PAGE (or `limit`), the rest
    only if the caller asks for more. Each page is fetched whole, since the caller runs
    its own queries on the same cursor. Rows the caller changed in between are behind
    the page's last id, so neither page repeats one or leaves one out that the single
    query would have returned (SQLite's writer sees no other commit meanwhile; on
    PostgreSQL a row committed in between may be returned too, a candidate all the
    same). On PostgreSQL each page is locked FOR UPDATE SKIP LOCKED: rows another
    claim holds are not returned. `cut` is True once the scan stopped at its bound with
    rows maybe left."""

    SQL = (
        _ROW_SQL + "WHERE a.status = 'planned' AND (a.not_before IS NULL "
        "OR a.not_before <= ?) AND a.id > ? ORDER BY a.id LIMIT ?"
    )

    def __init__(self, tx: SqlTransaction, now: float, limit: int = 1) -> None:
        self.tx = tx
        self.now = now
        self.limit = limit
        self.cut = False

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        after = 0
        left = max(CLAIM_SCAN_LIMIT, self.limit)
        page = max(CLAIM_FIRST_PAGE, self.limit)
        while left > 0:
            size = min(page, left)
            sql = self.SQL + self.tx.locks.skip_locked  # rows another claim holds: passed
            rows = self.tx.execute(sql, (self.now, after, size)).fetchall()
            yield from rows
            if len(rows) < size:
                return  # no more due
            left -= len(rows)
            after = rows[-1][0]
            page = left
        self.cut = True


def set_status(
    tx: SqlTransaction,
    action_id: int,
    status: str,
    reason: str,
    now: float,
    *,
    finished: bool,
    output: str = "",
    row: ActionRow | None = None,
) -> None:
    """Journal an action's new status (and its event); a final one (`finished`) is
    counted in the totals. `row`: the action as read in this transaction, so counting
    it need not read it again (its strategy, step and start times do not change)."""
    tx.execute(
        "UPDATE actions SET status = ?, reason = ?, updated_at = ?, finished_at = ?, "
        "output = ?, waiting = NULL WHERE id = ?",
        (status, reason, now, now if finished else None, output, action_id),
    )
    tx.add_event(action_id, now, status, reason)
    if finished:
        facts = None
        if row is not None and row.alert_start is not None:
            facts = totals.ActionFacts(
                row.strategy, row.action, row.started_at, now, row.alert_start, row.step,
                row.run_id,
            )  # fmt: skip
        totals.count_action_final(tx, action_id, status, reason, facts)
