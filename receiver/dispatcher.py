"""Claims planned actions from the journal and carries them out, safely.

A pool of threads in the server process. Each claim is one store transaction that
runs the gates (see gates.py) and marks the action running, so several processes can
share a journal. After the gates: a step's `when`, preconditions, an optional silence,
the executor, verification, and the outcome with the breaker's update and the runbook's
next move (runs.follow: the next step, or the run's end) in one transaction. A run that
ends uncured owes one escalation, which the dispatcher delivers from the journal (an
outbox: see store/runs.py), so none is lost to a crash.

Crash rule (actions a dead process left `running`, found by their stale heartbeat):
0. if its command's process group is still running (its identity was journaled when it
   started: executors/processes.py), wait for it to end, at most until its timeout since
   it started, then kill the group; journal which. Nothing is ever started on the target
   while the first copy runs;
1. if the strategy verifies, verify now: true -> succeeded, nothing re-run;
2. else if the alert still fires and the action is idempotent (restart, scale,
   escalate, or `idempotent: true`), run it again, once, under this process;
3. else -> failed ("interrupted by a crash"), which counts against the breaker
   (timed_out when step 0 had to kill the group at its timeout).
Each orphan is resolved in a thread of its own, heart-beating, so a long wait in step 0
neither stops the heartbeats of other actions nor lets another process adopt it too.

Shutdown (`shutdown(grace)`): no new claims; running actions get `grace` seconds to end
(commands, then their verification); then the command executor kills the process groups
still running, and each is journaled failed "killed at shutdown after <grace> grace".
Neither a kill at shutdown nor a `refused` execution counts against the breaker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from receiver import (
    approvals,
    breaker,
    canary,
    fleetrun,
    fleets,
    gates,
    retention,
    runbooks,
    runs,
    scaling,
)
from receiver.config import Config, ServerConfig, Strategy
from receiver.executors import (
    ActionRequest,
    AlertmanagerExecutor,
    ExecutionResult,
    Executor,
    ExecutorError,
    build_each,
    processes,
)
from receiver.executors.base import Interrupt, effective_timeout, seconds
from receiver.executors.command import KILL_GRACE
from receiver.matchers import parse_matchers
from receiver.plans import incident_context
from receiver.prometheus import PrometheusClient, PrometheusError, describe_sample, truthy
from receiver.store import approvals as approval_journal
from receiver.store import fleets as fleet_journal
from receiver.store import retention as prune_journal
from receiver.store import runs as run_journal
from receiver.store.base import StoreUnavailable
from receiver.store.dispatch import ActionRow, GateReader
from receiver.templates import RenderError, UnsafeValueError
from receiver.verification import SampleJournal

log = logging.getLogger(__name__)
T = TypeVar("T")

IDEMPOTENT_ACTIONS = {"restart", "scale", "escalate"}
HEARTBEAT_INTERVAL = 2.0
ORPHAN_AFTER = 5 * HEARTBEAT_INTERVAL
IDLE_POLL = 1.0
#: After the shutdown grace: time for executors to kill what they run and journal it.
KILL_WAIT = 10.0
#: How often an orphan's still-running process group is looked at (seconds).
ORPHAN_POLL = 0.2
#: seconds of retention batches per housekeeping tick, at most: the heartbeats that
#: follow must not be late (other processes adopt actions after ORPHAN_AFTER)
PRUNE_BUDGET = 0.5
#: Starts the reason of a verification the shutdown grace cut short (not counted).
CUT_BY_SHUTDOWN = "verification not finished at shutdown"
#: Seconds an action's own journal writes are tried again while the journal is
#: unavailable (a PostgreSQL restart cuts every connection; the next call reconnects):
#: its outcome as long as it is still running here, heart-beating (this process knows
#: the outcome, no other can); its command's process group for less than ORPHAN_AFTER,
#: since until it is journaled no other process could see that command.
FINISH_RETRY = 60.0
RECORD_RETRY = ORPHAN_AFTER / 2
JOURNAL_RETRY_POLL = 0.5
#: How often the fleets' thread looks for due analyses and sizes to measure (seconds).
FLEET_POLL = 2.0
#: Seconds an analysis is leased to the process judging it (sampling included).
ANALYSIS_LEASE = 120.0


class ConfigSource(Protocol):
    config: Config


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | timed_out | skipped
    reason: str
    output: str = ""
    counts: bool = True  # whether the breaker hears of it
    #: cut short by this process's shutdown: its runbook is not continued (see runs.follow)
    interrupted: bool = False
    #: (time in epoch seconds, reason) of running steps not yet journaled, written as
    #: `running` events in the finish transaction, before the final status: one
    #: transaction instead of two when nothing happens between the step and the end
    steps: tuple[tuple[float, str], ...] = ()


@dataclass
class _Runtime:
    """Executors built for one config version; rebuilt when the config changes.

    Built one by one: an executor that cannot be built is in `errors` (name -> reason)
    and fails only the actions of strategies that use it.
    """

    sha256: str = ""
    executors: dict[str, Executor] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def unusable(self, name: str) -> str | None:
        """Why executor `name` cannot act ("unusable executor 'api': ..."), else None."""
        reason = self.errors.get(name)
        return f"unusable {reason}" if reason is not None else None


@dataclass(frozen=True)
class Escalated:
    """What an escalation says: for whom (`strategy`, `target`, the alert's `labels` and
    `annotations`), why, the annotations it adds (`details`) and the same as `text` for an
    executor that takes only a reason; `action_id` the action it follows (0: none)."""

    strategy: str
    target: str
    labels: dict[str, str]
    annotations: dict[str, str]
    reason: str
    details: dict[str, str]
    text: str
    action_id: int = 0


#: Outcomes that need a person: a WARNING, so that a log alert on WARNING catches them.
ATTENTION_STATUSES = ("failed", "timed_out")


def outcome_level(strategy: Strategy | None, status: str) -> int:
    """The log level of an action's outcome: WARNING when it failed or timed out, or
    when it escalated to a person (an `escalate` action that ran); INFO otherwise."""
    escalated = strategy is not None and strategy.action == "escalate" and status == "succeeded"
    return logging.WARNING if status in ATTENTION_STATUSES or escalated else logging.INFO


@dataclass(frozen=True)
class _Handed:
    """An action claimed by one pool thread for another: carried out with the config
    it was judged under; `more` as the claim's (Claimed.more)."""

    config: Config
    row: ActionRow
    more: bool


@dataclass(frozen=True)
class _Turn:
    """What one claim turn did: `did_work` (claimed, skipped or delayed something),
    `again` (the thread should claim again at once rather than wait), `queued` (another
    thread of the pool was claiming: this one waits for the next claim)."""

    did_work: bool
    again: bool
    queued: bool = False


@dataclass
class _Seat:
    """One pool thread's place among the idle ones (guarded by _IdlePool's lock)."""

    ready: threading.Condition
    woken: bool = False  # by a wake-up: claim now
    reserved: bool = False  # by a claiming thread: wait for its hand-over
    queued: bool = False  # it wants to claim: the claim after the one in flight
    handed: _Handed | None = None
    deadline: float = 0.0  # monotonic end of its idle wait (then it polls)


class _IdlePool:
    """The dispatcher's idle threads: woken for planned actions, handed claimed ones.

    A thread about to claim reserves every idle thread (`enter`), claims up to 1 + that
    many actions in one transaction, and `hand`s each reserved thread one of the extra
    actions right after the commit, or releases it (back to idle) when the claim took
    fewer. A reserved thread is neither woken nor lets its idle poll end the wait, so
    no action is claimed that a thread cannot start at once. Wake-ups: `wake(n)` wakes
    ONE idle thread, whose claim sees all n; with no thread idle, n are owed
    (`_wakeups`, at most the pool size) to the next threads that would go idle, so
    none sleeps through an action planned while the pool was busy.

    One claim of the pool at a time (`enter`): a thread that would claim while another
    does waits queued among the idle ones (claims queue on the journal's write lock in
    any case); the claim in flight wakes one queued thread when it hands over, and that
    one claims for every thread then idle. Under a backlog, threads that end their
    actions together are served by one claim, not one each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Seat] = []
        self._seats: list[_Seat] = []
        self._wakeups = 0
        self._stopped = False
        self._claimer: _Seat | None = None  # the pool thread whose claim is in flight
        self.size = 1  # the pool's thread count (caps the wake-ups owed)

    def seat(self) -> _Seat:
        """A new thread's seat."""
        seat = _Seat(threading.Condition(self._lock))
        with self._lock:
            self._seats.append(seat)
        return seat

    def wake(self, actions: int) -> None:
        """`actions` (>= 1) were planned: wake idle threads for them, owe the rest."""
        with self._lock:
            if not self._idle:
                self._wakeups = min(self.size, self._wakeups + actions)
                return
            # Its claim begins after they were committed, so it sees them all; it claims
            # for itself and every thread idle then, and looks again while it took as
            # many as it could (Claimed.more): nothing is owed.
            seat = self._idle.pop()
            seat.woken = True
            seat.ready.notify()

    def wait(self, seat: _Seat, timeout: float, *, queued: bool = False) -> _Handed | None:
        """Wait idle until woken (None), handed an action (returned), stopped (None) or
        `timeout` seconds passed (None: poll); a wake-up owed returns None at once.
        `queued`: waiting for the claim in flight to end (see enter), which wakes it."""
        with self._lock:
            if self._stopped or (self._wakeups and not queued):
                self._wakeups = max(0, self._wakeups - 1)
                return None
            seat.woken = False
            seat.queued = queued
            self._idle.append(seat)
            seat.deadline = time.monotonic() + timeout
            while seat.handed is None:
                left = seat.deadline - time.monotonic()
                if not seat.reserved and (seat.woken or self._stopped or left <= 0):
                    break
                # reserved past its deadline: only the claiming thread's hand ends it
                seat.ready.wait(left if left > 0 else None)
            if seat in self._idle:
                self._idle.remove(seat)
            handed, seat.handed = seat.handed, None
            return handed

    def enter(self, seat: _Seat | None) -> list[_Seat] | None:
        """A thread is about to claim: reserve every idle thread for its claim (`hand`
        must follow), or None when `seat` is a pool thread and another pool thread's
        claim is in flight (then wait(seat, queued=True)). A thread outside the pool
        (seat None) always claims."""
        with self._lock:
            if seat is not None:
                if self._claimer is not None:
                    return None
                self._claimer = seat
            reserved, self._idle = self._idle, []
            for idle in reserved:
                idle.reserved = True
            return reserved

    def hand(self, claimer: _Seat | None, seats: list[_Seat], handed: list[_Handed]) -> None:
        """After `claimer`'s claim (enter): give each reserved seat its action
        (len(handed) <= len(seats)); release the others to idle, passing them any
        wake-up owed meanwhile; then wake one thread queued meanwhile to claim next. A
        released thread is not woken unless it must claim (a wake-up, its poll due):
        each wake costs a thread switch and the interpreter lock."""
        with self._lock:
            now = time.monotonic()
            for number, seat in enumerate(seats):
                seat.reserved = False
                seat.queued = False  # the claim it waited for saw what it wanted
                if number < len(handed):
                    seat.handed = handed[number]
                elif self._wakeups:
                    self._wakeups -= 1
                    seat.woken = True
                else:
                    self._idle.append(seat)
                    if now < seat.deadline:
                        continue  # its timed wait goes on
                seat.ready.notify()
            if claimer is not None and self._claimer is claimer:
                self._claimer = None
                queued = next((seat for seat in self._idle if seat.queued), None)
                if queued is not None:
                    self._idle.remove(queued)
                    queued.woken = True
                    queued.ready.notify()

    def stop(self) -> None:
        """Wake every idle thread for good (reserved ones still get their hand-over)."""
        with self._lock:
            self._stopped = True
            for seat in self._seats:
                seat.ready.notify()


class Dispatcher:
    def __init__(
        self,
        source: ConfigSource,
        store: Any,
        *,
        clock: Callable[[], float] = time.time,
        worker_id: str | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self.worker = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._idle = _IdlePool()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._runtime = _Runtime()
        self._interrupt = Interrupt()  # set when the shutdown grace is over
        self._halted = threading.Event()  # heartbeats stop: every action thread is done
        self._shutdown_deadline: float | None = None  # monotonic end of the grace
        self._shutdown_grace = 0.0
        self._recoveries: list[threading.Thread] = []
        #: called after a silence of ours is expired (the journal writer reconciles then)
        self.silence_expired: Callable[[], None] | None = None
        #: retention: when the next pass is due, and the pass under way (if any)
        self._prune_schedule: retention.Schedule | None = None
        self._pruning: prune_journal.Pass | None = None

    # lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        threads = self.source.config.defaults.max_concurrent_actions
        self._idle.size = threads
        targets = [self._work] * threads + [self._housekeeping, self._fleet_work]
        names = {self._housekeeping: "dispatch-housekeeping", self._fleet_work: "dispatch-fleets"}
        for number, target in enumerate(targets):
            name = names.get(target, f"dispatch-{number}")
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("dispatcher %s started with %d threads", self.worker, threads)

    def wake(self, actions: int = 1) -> None:
        """New actions were planned: wake an idle thread, which claims them together
        for itself and the other idle threads (see _IdlePool.wake)."""
        self._idle.wake(actions)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming and wait up to timeout per thread; running actions keep running."""
        self._stop.set()
        self._halted.set()
        self._idle.stop()
        for thread in self._threads:
            thread.join(timeout)

    def shutdown(self, grace: float) -> list[int]:
        """Stop claiming; give running actions `grace` seconds to end (verification
        included); then interrupt them (executors that can, kill what they run) and wait
        up to KILL_WAIT more for their outcomes to be journaled. Heartbeats go on until
        then, so no other process adopts them meanwhile. Returns the ids of the actions
        interrupted (empty when all ended within the grace)."""
        self._shutdown_deadline = time.monotonic() + grace
        self._shutdown_grace = grace
        self._stop.set()
        self._idle.stop()
        workers = [t for t in self._threads if t.name != "dispatch-housekeeping"]
        for thread in workers + list(self._recoveries):
            thread.join(max(self._shutdown_deadline - time.monotonic(), 0.0))
        with self._lock:
            interrupted = sorted(self._running)
        if interrupted:
            log.warning(
                "shutdown grace of %s over: stopping actions %s", seconds(grace), interrupted
            )
            self._interrupt.set(f"killed at shutdown after {seconds(grace)} grace")
            end = time.monotonic() + KILL_WAIT
            for thread in workers + list(self._recoveries):
                thread.join(max(end - time.monotonic(), 0.0))
        self._halted.set()
        for thread in self._threads:
            thread.join(KILL_WAIT)
        return interrupted

    # main loop ----------------------------------------------------------------
    def _work(self) -> None:
        """A pool thread: claim (for itself and the idle threads), carry out, and look
        again while the last claim may have left due actions behind; else wait to be
        woken, or handed an action another thread claimed for it."""
        seat = self._idle.seat()
        # a thread's first look finds what was planned before it started
        turn = _Turn(did_work=False, again=True)
        while True:
            if not turn.again:
                handed = self._idle.wait(seat, IDLE_POLL, queued=turn.queued)
                if handed is not None:  # claimed for it: carried out even when stopping
                    turn = self._guarded(lambda h=handed: self._carry_handed(h))
                    continue
            if self._stop.is_set():
                return
            turn = self._guarded(lambda: self._turn(seat))

    def _guarded(self, step: Callable[[], _Turn]) -> _Turn:
        """Run one step of a pool thread; an error is logged and the thread goes on."""
        try:
            return step()
        except StoreUnavailable as exc:
            log.error("journal unavailable, dispatcher waiting: %s", exc)
        except Exception:
            log.exception("dispatcher thread error; continuing")
        return _Turn(did_work=False, again=False)

    def _carry_handed(self, handed: _Handed) -> _Turn:
        self._carry_out(handed.config, handed.row)
        return _Turn(did_work=True, again=handed.more)

    def run_once(self) -> bool:
        """Claim and carry out one action (the others the claim took, one per idle pool
        thread, are handed to those threads at once); False when there was nothing to
        do."""
        return self._turn(None).did_work

    def _turn(self, seat: _Seat | None) -> _Turn:
        """One claim transaction for this thread and every idle one (reserved until it
        commits, so each action claimed starts right after it: its `started_at` is
        when it starts), then this thread's own action carried out. `seat`: this
        thread's, None outside the pool."""
        config = self.source.config
        skipped: list[int] = []
        planned = runs.Planned()
        handed: list[_Handed] = []
        seats = self._idle.enter(seat)
        if seats is None:
            return _Turn(did_work=False, again=False, queued=True)
        try:  # from here on, hand() must follow whatever happens
            claimed = self.store.claim_due(
                self.worker,
                self.clock,
                lambda now: self._judge(config, skipped, now, planned),
                self._follow(config, planned),
                limit=1 + len(seats),
            )
            handed = [_Handed(config, row, claimed.more) for row, _ in claimed.actions[1:]]
        finally:
            self._idle.hand(seat, seats, handed)
        self._after(planned)
        if not claimed.actions:
            # skips or delays journaled (each moved its action out of the way): more
            # planned actions may be due behind them, past the claim's scan limit
            return _Turn(did_work=bool(skipped), again=bool(skipped))
        self._carry_out(config, claimed.actions[0][0])
        return _Turn(did_work=True, again=claimed.more)

    def _follow(
        self, config: Config, planned: runs.Planned, *, interrupted: bool = False
    ) -> Callable[[Any, ActionRow], None]:
        """What the claim or outcome transaction does after an action ended: move its
        runbook on (runs.follow), adding what that planned to `planned`. `interrupted`:
        the action was cut short by this process's shutdown."""

        def follow(tx: Any, row: ActionRow) -> None:
            now = self.clock()
            planned.add(runs.follow(tx, config, row.id, now, interrupted=interrupted, row=row))
            strategy = _named(config, row.strategy)
            if row.fleet is not None and strategy is not None and strategy.fleet is not None:
                if _dry_outside_fleet(tx, strategy, row):
                    return  # a dry run never passes the fleet: planning it would open a wave
                # its end may free a slot, end a stage or halt the wave: plan the fleet now
                done = fleetrun.tick(
                    tx, strategy, row.fleet, now, self._skip_follow(config, planned)
                )
                planned.add(runs.Planned(actions=done.admitted, escalations=done.escalations))

        return follow

    def _skip_follow(self, config: Config, planned: runs.Planned) -> fleetrun.Follow:
        """What a fleet's plan does after ending an action skipped (a halted wave): move
        its runbook on, which ends the run (the fleet's escalation covers it)."""

        def follow(tx: Any, action_id: int) -> None:
            planned.add(runs.follow(tx, config, action_id, self.clock()))

        return follow

    def _after(self, planned: runs.Planned) -> None:
        """After a transaction that moved runbooks on commits: wake threads for the steps
        it planned; deliver the escalations it owed."""
        if planned.actions:
            self.wake(planned.actions)
        if planned.escalations:
            self.send_escalations()

    def _judge(
        self, config: Config, skipped: list[int], now: float, planned: runs.Planned
    ) -> Callable[[ActionRow, GateReader], gates.Verdict]:
        """The gate check run inside the claim, for the row's runbook step: its fleet's
        plan first (fleetrun.tick, once per fleet and claim), then the gates."""
        strategies = {s.name: s for s in config.strategies}
        ticks: dict[str, fleetrun.Tick] = {}

        def judge(row: ActionRow, reader: GateReader) -> gates.Verdict:
            strategy = _step_of(strategies.get(row.strategy), row)
            if strategy is None:
                skipped.append(row.id)
                return gates.Verdict(gates.SKIP, "config", "strategy or step no longer configured")
            if strategy.approval is not None and not strategy.dry_run:
                held = _approval_gate(strategy, row, reader, now, config.server)
                if held is not None:
                    skipped.append(row.id)
                    if held.outcome == gates.SKIP:
                        log.info(held.reason, extra={"action_id": row.id})
                    return held
            top = strategies[row.strategy]
            if top.fleet is not None and row.fleet is not None and not strategy.dry_run:
                held = self._fleet_gate(top, row, reader, ticks, now, config, planned)
                if held is not None:
                    skipped.append(row.id)
                    return held
            budget_since = now - strategy.budget.window if strategy.budget else now
            inputs = reader.inputs(row, budget_since)
            cap = config.defaults.max_concurrent_actions
            verdict = gates.evaluate(strategy, row.target, inputs, cap, now)
            if verdict.outcome == gates.RUN and not reader.take_slot(row.id, cap):
                # every slot is held by a claim at another replica, not committed yet
                verdict = gates.evaluate(
                    strategy, row.target, replace(inputs, running_total=cap), cap, now
                )
            if verdict.outcome == gates.SKIP:
                skipped.append(row.id)
                log.info(
                    verdict.reason, extra={"action_id": row.id, "incident_id": row.incident_id}
                )
            elif verdict.outcome == gates.DELAY:
                # not logged: the journal says it once per gate (store/dispatch.py _wait);
                # its not_before is in the future, so the next claim looks further on
                skipped.append(row.id)
            return verdict

        return judge

    def _fleet_gate(
        self,
        strategy: Strategy,
        row: ActionRow,
        reader: GateReader,
        ticks: dict[str, fleetrun.Tick],
        now: float,
        config: Config,
        planned: runs.Planned,
    ) -> gates.Verdict | None:
        """None when the row's fleet admits it; else the verdict that holds it back."""
        assert row.fleet is not None
        done = ticks.get(row.fleet)
        if done is None and fleetrun.in_flight(reader.tx, strategy, row.fleet, row.target):
            return None  # admitted earlier (a step of its run, or admitted with others)
        if done is None:
            follow = self._skip_follow(config, planned)
            done = fleetrun.tick(reader.tx, strategy, row.fleet, now, follow, exclude=row.id)
            ticks[row.fleet] = done
            planned.add(runs.Planned(actions=done.admitted, escalations=done.escalations))
            admission = done.admissions.get(row.id)
        else:  # planned by this claim's tick already, and journaled by it
            admission = done.admissions.get(row.id)
            if admission is not None and admission.kind != fleetrun.ADMITTED:
                return gates.Verdict(gates.HANDLED, fleetrun.FLEET_GATE, admission.reason)
        if admission is None or admission.kind == fleetrun.ADMITTED:
            return None
        if admission.kind == fleetrun.SKIP:
            return gates.Verdict(gates.SKIP, runbooks.HALTED, admission.reason)
        return gates.Verdict(
            gates.DELAY, fleetrun.FLEET_GATE, admission.reason, None, admission.not_before
        )

    # carrying out ---------------------------------------------------------------
    def _carry_out(self, config: Config, row: ActionRow, *, adopted: bool = False) -> None:
        strategy = _step_of(_named(config, row.strategy), row)
        with self._lock:
            self._running.add(row.id)
        try:
            try:
                outcome = (
                    self._outcome(config, strategy, row)
                    if strategy
                    else Outcome("failed", "strategy or step no longer configured", counts=False)
                )
            except StoreUnavailable:
                raise  # the heartbeat stops; the crash rule resolves the action later
            except Exception as exc:  # an executor bug must not leave the action running
                log.exception("action crashed", extra={"action_id": row.id})
                outcome = Outcome("failed", f"internal error: {exc}")
            if adopted:
                outcome = replace(
                    outcome, reason=f"after a crash: {outcome.reason}", interrupted=False
                )
            # still ours while its outcome is journaled: heart-beating through a retry
            self._finish(config, strategy, row, outcome)
        finally:
            with self._lock:
                self._running.discard(row.id)

    def _outcome(self, config: Config, strategy: Strategy, row: ActionRow) -> Outcome:
        runtime = self._executors(config)
        unusable = runtime.unusable(strategy.executor)
        if unusable:
            log.error("action of %s: %s", strategy.name, unusable, extra={"action_id": row.id})
            return Outcome("failed", unusable)
        unmet = self._unmet_when(config, row)
        if unmet:
            return Outcome("skipped", f"when: {unmet}", counts=False)
        if row.params.get("when_query"):
            self.store.note(row.id, self.clock(), f"when: {row.params['when_query']!r} is true")
        failed = self._failed_precondition(config, row)
        if failed:
            return Outcome("skipped", f"precondition: {failed}", counts=False)
        silence = self._silence(config, strategy, row, runtime)
        try:
            result = self._execute(config, strategy, row, runtime)
            if not result.ok:
                return failure(result)
            executed = (self.clock(), f"executed: {result.detail}")
            if strategy.verify is None and silence is None:
                # nothing runs between this step and the end (no verification, no silence
                # to expire): journal both in the finish transaction, one commit instead
                # of two; the step is still an event of its own, before the outcome
                return Outcome("succeeded", result.detail, result.output, steps=(executed,))
            self.store.note(row.id, *executed)
            verified = self._verify(config, strategy, row)
            if verified is not None:
                cut = verified.startswith(CUT_BY_SHUTDOWN)
                reason = f"{result.detail}; {verified}"
                return Outcome("failed", reason, result.output, not cut, interrupted=cut)
            return Outcome("succeeded", result.detail, result.output)
        finally:
            self._expire(runtime, silence, row)

    def _execute(
        self, config: Config, strategy: Strategy, row: ActionRow, runtime: _Runtime
    ) -> ExecutionResult:
        executor = runtime.executors[strategy.executor]
        decision = None
        if strategy.action == "scale":
            decision = self._scale_decision(config, strategy, row, executor)
            if isinstance(decision, ExecutionResult):
                return decision
            if not decision.changed:
                return ExecutionResult(True, f"no change at {decision.current}: {decision.reason}")
        request = ActionRequest(
            action_id=row.id,
            action=strategy.action,
            target=row.target,
            rendered=row.params,
            labels=row.labels,
            annotations=row.annotations,
            timeout=strategy.timeout,
            replicas=decision.desired if decision else None,
            reason=f"strategy {strategy.name}",
            strategy=strategy.name,
            interrupt=self._interrupt,
            on_process=lambda identity: self._record_process(row, identity),
        )
        if not executor.logs_each_action:
            log.info("executing %s on %s", strategy.action, row.target, extra={"action_id": row.id})
        result = executor.execute(request)
        if decision is not None and result.ok and not executor.records_only:
            self._record_scale(strategy, row, executor, decision)
        return result

    def _record_process(self, row: ActionRow, identity: processes.ProcessIdentity) -> None:
        reason = f"command started: process group {identity.pgid} on {identity.host}"
        self._retrying(
            row,
            lambda: self.store.record_process(row.id, identity.to_dict(), self.clock(), reason),
            RECORD_RETRY,
        )

    def _retrying(self, row: ActionRow, write: Callable[[], T], within: float) -> T:
        """`write` (one of this action's journal writes), tried again every
        JOURNAL_RETRY_POLL seconds while the journal is unavailable, for up to `within`
        seconds, as long as the action is still running under this dispatcher. Raises
        StoreUnavailable once the time is up (the crash rule resolves the action later),
        NoLongerOurs when it is not running here any more (an attempt whose commit was
        not acknowledged did commit, or another process adopted it): never twice."""
        deadline = time.monotonic() + within
        while True:
            try:
                return write()
            except StoreUnavailable as exc:
                if time.monotonic() + JOURNAL_RETRY_POLL > deadline:
                    raise
                log.error(
                    "journal unavailable for action %s; trying again: %s",
                    row.id,
                    exc,
                    extra={"action_id": row.id},
                )
            time.sleep(JOURNAL_RETRY_POLL)
            if not self._still_ours(row):
                raise NoLongerOurs(f"action {row.id} is no longer running under {self.worker}")

    def _still_ours(self, row: ActionRow) -> bool:
        """True when the action is running under this dispatcher, or the journal cannot
        tell yet (still unavailable: the next attempt fails again)."""

        def read(tx: Any) -> Any:
            sql = "SELECT status, claimed_by FROM actions WHERE id = ?"
            return tx.execute(sql, (row.id,)).fetchone()

        try:
            found = self.store.look(read)
        except StoreUnavailable:
            return True
        return found is not None and tuple(found) == ("running", self.worker)

    # scale --------------------------------------------------------------------
    def _scale_decision(
        self, config: Config, strategy: Strategy, row: ActionRow, executor: Executor
    ) -> scaling.ScaleDecision | ExecutionResult:
        spec = strategy.scale
        assert spec is not None
        try:
            current = executor.replicas(row.target)
            value = self._scale_value(config, strategy, row)
        except (ExecutorError, PrometheusError, ValueError) as exc:
            return ExecutionResult(False, f"cannot decide replicas: {exc}")
        policy = spec.policy
        saved = self.store.load_scale_history(executor.name, row.target)
        history = scaling.ScaleHistory.from_dict(saved) if saved else scaling.ScaleHistory()
        decision = scaling.decide(current, value, policy, history, self.clock())
        self.store.note(
            row.id,
            self.clock(),
            f"scale: value {value:g} vs target {policy.target_value:g}, "
            f"{current} -> {decision.desired} ({decision.reason})",
        )
        replicas = (current, decision.desired, policy.min_replicas, policy.max_replicas)
        self.store.save_target(
            executor.name, row.target, replicas, decision.history.to_dict(), self.clock()
        )
        return decision

    def _scale_value(self, config: Config, strategy: Strategy, row: ActionRow) -> float:
        spec = strategy.scale
        assert spec is not None
        if spec.annotation:
            raw = row.annotations.get(spec.annotation, row.labels.get(spec.annotation))
            if raw is None:
                raise ValueError(f"alert has no annotation {spec.annotation!r}")
            return float(raw)
        return self._prometheus(config).scalar(row.params["scale_query"])

    def _record_scale(
        self,
        strategy: Strategy,
        row: ActionRow,
        executor: Executor,
        decision: scaling.ScaleDecision,
    ) -> None:
        spec = strategy.scale
        assert spec is not None
        now = self.clock()
        history = scaling.record_scale(decision.history, now, decision.current, decision.desired)
        policy = spec.policy
        replicas = (decision.desired, decision.desired, policy.min_replicas, policy.max_replicas)
        self.store.save_target(executor.name, row.target, replicas, history.to_dict(), now)

    # when, preconditions, verification --------------------------------------------
    def _unmet_when(self, config: Config, row: ActionRow) -> str | None:
        """Why the step's `when` does not hold (None: it holds, or the step has none)."""
        query = row.params.get("when_query")
        if not query:
            return None
        try:
            if self._prometheus(config).is_true(query):
                return None
        except PrometheusError as exc:
            return f"{query!r} could not be checked: {exc}"
        return f"{query!r} is not true"

    def _failed_precondition(self, config: Config, row: ActionRow) -> str | None:
        for matcher_strings in row.params.get("precondition_alerts", []):
            matchers = parse_matchers(matcher_strings)
            for labels in self.store.firing_labels():
                if labels != row.labels and all(m.matches(labels) for m in matchers):
                    return f"alert {{{', '.join(matcher_strings)}}} is firing"
        for query in row.params.get("precondition_queries", []):
            try:
                if not self._prometheus(config).is_true(query):
                    return f"query {query!r} is not true"
            except PrometheusError as exc:
                return f"query {query!r} could not be checked: {exc}"
        return None

    def _verify(self, config: Config, strategy: Strategy, row: ActionRow) -> str | None:
        """None when verified (or nothing to verify), else why verification failed."""
        if strategy.verify is None:
            return None
        query = row.params["verify_query"]
        self.store.note(row.id, self.clock(), f"verifying: {query}")
        deadline = time.monotonic() + strategy.verify.timeout
        last_error = ""
        samples = SampleJournal(lambda text: self.store.note(row.id, self.clock(), text))
        while True:
            try:
                values = self._prometheus(config).query(query)
                samples.record(describe_sample(values))
                if truthy(values):
                    return None
            except PrometheusError as exc:
                last_error = f" (last error: {exc})"
                samples.record(f"error: {exc}")
            left = deadline - time.monotonic()
            if left <= 0:  # the last poll was at (or after) the deadline
                break
            wait = min(strategy.verify.interval, left)  # so one poll falls on the deadline
            if self._interrupt.is_set() or self._past_grace(wait):
                grace = seconds(self._shutdown_grace)
                return f"{CUT_BY_SHUTDOWN}: its {grace} grace was over{last_error}"
            time.sleep(wait)
        return (
            f"verification failed: {query!r} not true within "
            f"{strategy.verify.timeout:g}s{last_error}"
        )

    def _past_grace(self, wait: float) -> bool:
        """True when waiting `wait` more seconds would overrun the shutdown grace."""
        end = self._shutdown_deadline
        return end is not None and time.monotonic() + wait > end

    def _prometheus(self, config: Config) -> PrometheusClient:
        if config.prometheus is None:
            raise PrometheusError("no prometheus url configured")
        return PrometheusClient(config.prometheus.url, config.prometheus.timeout)

    # silences, escalation ---------------------------------------------------------
    def _alertmanager(self, config: Config, runtime: _Runtime) -> Executor | None:
        name = config.defaults.escalation_executor
        return runtime.executors.get(name) if name else None

    def _silence(
        self, config: Config, strategy: Strategy, row: ActionRow, runtime: _Runtime
    ) -> str | None:
        am = self._alertmanager(config, runtime)
        if not strategy.silence or not isinstance(am, AlertmanagerExecutor):
            return None
        verify = strategy.verify.timeout if strategy.verify else 0.0
        duration = min(strategy.timeout + verify + 60, am.silence_duration)
        try:
            silence_id = am.silence(row.labels, duration, f"remediator action {row.id}")
        except ExecutorError as exc:
            self.store.note(row.id, self.clock(), f"could not silence the alert: {exc}")
            return None
        self.store.note(row.id, self.clock(), f"silenced the alert while acting ({silence_id})")
        return silence_id

    def _expire(self, runtime: _Runtime, silence_id: str | None, row: ActionRow) -> None:
        if silence_id is None:
            return
        am = self._alertmanager(self.source.config, runtime)
        if isinstance(am, AlertmanagerExecutor):
            try:
                am.expire_silence(silence_id)
            except ExecutorError as exc:
                log.warning(
                    "could not expire silence %s: %s", silence_id, exc, extra={"action_id": row.id}
                )
                return
            if self.silence_expired is not None:  # an alert may have resolved unnotified
                self.silence_expired()

    def send_escalations(self) -> int:
        """Deliver the escalations owed by runbook runs that ended uncured and by fleets
        (leased from the journal, so one process sends each); returns how many were
        tried."""
        config = self.source.config
        lease = self._escalation_lease(config)
        tried = self._send_fleet_escalations(config, lease)
        owed = self.store.claim_escalations(self.clock(), lease)
        for escalation in owed:
            delivered, note = self._deliver(config, escalation)
            self.store.record_escalation(escalation, delivered, note, self.clock())
            # an escalation is a WARNING (README "Levels"), also when the config has no
            # escalation_executor (undeliverable by choice); a delivery that failed and
            # will be retried is an ERROR: nobody has been told yet
            level = logging.WARNING if delivered is not None else logging.ERROR
            log.log(
                level,
                "runbook %s run %d: %s; %s",
                escalation.strategy,
                escalation.run,
                escalation.reason,
                note,
                extra={
                    "incident_id": escalation.incident_id,
                    "action_id": escalation.last_action_id,
                },
            )
        return tried + len(owed)

    def _send_fleet_escalations(self, config: Config, lease: float) -> int:
        """Deliver the ONE escalation each halted (or failing) fleet owes."""
        owed = self.store.change(
            lambda tx: fleet_journal.claim_escalations(tx, self.clock(), lease)
        )
        for escalation in owed:
            delivered, note = self._deliver_fleet(config, escalation)
            self.store.change(
                lambda tx, e=escalation, d=delivered, n=note: fleet_journal.record_escalation(
                    tx, e, d, n
                )
            )
            level = logging.WARNING if delivered is not None else logging.ERROR
            log.log(level, "fleet %s of %s: %s", escalation.fleet, escalation.strategy, note)
        return len(owed)

    def _deliver_fleet(
        self, config: Config, escalation: fleet_journal.FleetEscalation
    ) -> tuple[str | None, str]:
        """Post one fleet escalation, its summary in the annotations (see _post)."""
        summary = escalation.summary
        text = fleetrun.escalation_text(summary)
        details = {
            "fleet": escalation.fleet,
            "fleet_summary": text,
            "fleet_targets": ", ".join(summary.get("targets", [])[: fleets.LISTED_TARGETS]),
        }
        labels = dict(summary.get("labels") or {})
        if summary.get("episode"):  # a new halt or window pages anew; its updates do not
            labels["remediation_episode"] = summary["episode"]
        return self._post(
            config,
            Escalated(
                strategy=escalation.strategy,
                target=fleetrun.breaker_target(escalation.fleet),
                labels=labels,
                annotations={},
                reason=summary.get("why", "remediation failed"),
                details=details,
                text=text,
            ),
        )

    def _post(self, config: Config, escalated: Escalated) -> tuple[str | None, str]:
        """Post an escalation through the escalation executor: (SENT | UNDELIVERABLE,
        note), or (None, note) to try again later (the executor failed or cannot be used
        now). An Alertmanager gets an alert with `details` as annotations; any other
        executor an `escalate` action whose reason carries `text`."""
        runtime = self._executors(config)
        am = self._alertmanager(config, runtime)
        if am is None:
            unusable = runtime.unusable(config.defaults.escalation_executor or "")
            if unusable:
                return None, f"not escalated yet: {unusable}"
            return run_journal.UNDELIVERABLE, "not escalated: no escalation_executor configured"
        if isinstance(am, AlertmanagerExecutor):
            result = am.escalate(
                escalated.labels,
                escalated.annotations,
                escalated.reason,
                escalated.strategy,
                escalated.target,
                details=escalated.details,
            )
        else:
            result = am.execute(
                ActionRequest(
                    escalated.action_id,
                    "escalate",
                    escalated.target,
                    {},
                    escalated.labels,
                    escalated.annotations,
                    config.defaults.timeout,
                    reason=f"{escalated.reason}\n{escalated.text}",
                    strategy=escalated.strategy,
                )
            )
        if result.ok:
            return run_journal.SENT, f"escalated via {am.name}: {result.detail}"
        return None, f"escalation via {am.name} failed, will retry: {result.detail}"

    def send_approval_alerts(self) -> int:
        """Post the RemediationAwaitingApproval alerts owed (store/approvals.py outbox):
        new ones firing, and the end (endsAt now) of those decided, cancelled or timed
        out; a failed post is tried again at the next tick. Returns how many were posted.
        A `log` escalation executor (trials) logs them instead."""
        config = self.source.config
        due = self.store.change(lambda tx: approval_journal.alerts_due(tx, self.clock()))
        if not due:
            return 0
        am = self._alertmanager(config, self._executors(config))
        posted = 0
        for item in due:
            now = self.clock()
            alert = item.alert if item.firing else approvals.ended_alert(item.alert, now)
            what = "posted" if item.firing else "ended"
            if isinstance(am, AlertmanagerExecutor):
                try:
                    changed = am.post_alert(alert)
                except ExecutorError as exc:
                    log.error("%s not %s: %s", approvals.ALERTNAME, what, exc,
                              extra={"action_id": item.action_id})  # fmt: skip
                    continue
                note = f"{approvals.ALERTNAME} {what} to {am.url}{changed}"
            else:
                note = approvals.logged_note(alert, item.firing)
            if not item.repost:
                log.warning(note, extra={"action_id": item.action_id})
            state = approval_journal.FIRING if item.firing else approval_journal.ENDED
            self.store.change(
                lambda tx, i=item.action_id, s=state, n=note, t=now: approval_journal.delivered(
                    tx, i, s, n, t
                )
            )
            posted += 1
        return posted

    # fleets: canary analyses, sizes --------------------------------------------------
    def run_analyses(self) -> int:
        """Judge the fleets' due canary analyses (Prometheus sampled outside any
        transaction), then journal each verdict with its consequences; returns how many."""
        config = self.source.config
        lease = ANALYSIS_LEASE
        due = self.store.change(lambda tx: fleet_journal.claim_analyses(tx, self.clock(), lease))
        for analysis in due:
            strategy = _named(config, analysis.strategy)
            if strategy is None or strategy.fleet is None:
                continue  # forget_unconfigured drops it with its wave
            judged = None
            if strategy.fleet.analysis is None:  # reloaded without it: the wave goes on
                judged = ("pass", {}, "analysis no longer configured: the stage goes on")
            self._conclude(config, strategy, analysis, judged)
        return len(due)

    def _conclude(
        self,
        config: Config,
        strategy: Strategy,
        analysis: fleet_journal.Analysis,
        judged: tuple[str, dict[str, Any], str] | None = None,
    ) -> None:
        """Judge one analysis (unless `judged` gives its verdict, judgement and reason)
        and journal the verdict with what the verdict plans."""
        verdict, judgement, reason = judged or self._judge_canary(config, strategy, analysis)
        planned = runs.Planned()
        follow = self._skip_follow(config, planned)
        now = self.clock()

        def record(tx: Any) -> fleetrun.Tick | None:
            return fleetrun.record_verdict(
                tx, strategy, analysis, verdict, judgement, reason, now, follow
            )

        done = self.store.change(record)
        if done is not None:
            planned.add(runs.Planned(actions=done.admitted, escalations=done.escalations))
        log.info(f"fleet {analysis.fleet} of {strategy.name}: analysis {verdict}: {reason}")
        self._after(planned)

    def _judge_canary(
        self, config: Config, strategy: Strategy, analysis: fleet_journal.Analysis
    ) -> tuple[str, dict[str, Any], str]:
        """(verdict, judgement as JSON, reason) of one analysis: its metrics' queries
        rendered per target from the target's incident labels, sampled over the interval."""
        assert strategy.fleet is not None and strategy.fleet.analysis is not None
        spec = strategy.fleet.analysis
        targets = analysis.canary + analysis.baseline
        labels = self.store.look(
            lambda tx: fleet_journal.target_labels(tx, strategy.name, analysis.fleet, targets)
        )
        metrics = fleetrun.analysis_queries(strategy, analysis, labels)
        start = analysis.since
        end = max(start + spec.step, min(self.clock(), start + spec.interval))
        try:
            client = self._prometheus(config)
        except PrometheusError as exc:
            return "inconclusive", {"error": str(exc)}, f"cannot sample: {exc}"
        judged = canary.analyse(
            client,
            spec.settings,
            {name: queries for name, queries, _ in metrics},
            {name: queries for name, _, queries in metrics},
            start,
            end,
            spec.step,
            self.clock(),
        )
        return judged.verdict, judged.to_dict(), judged.judgement.reason

    def refresh_sizes(self) -> int:
        """Measure each fleet's size with its strategy's `size_query` (fleets with work
        only); returns how many were measured."""
        config = self.source.config
        strategies = {s.name: s for s in config.strategies if s.fleet and s.fleet.size_query}
        if not strategies:
            return 0
        rows, _ = self.store.look(lambda tx: fleet_journal.listing(tx, 1000, 0))
        measured = 0
        for row in rows:
            strategy = strategies.get(row["strategy"])
            state = row["state"]
            if strategy is None or not (state.in_flight or state.wave or row["next_at"]):
                continue
            size, note = self._measure_size(config, strategy, row["fleet"], state)
            self.store.change(
                lambda tx, s=strategy.name, f=row["fleet"], n=size, t=note: fleet_journal.save_size(
                    tx, s, f, n, t, self.clock()
                )
            )
            measured += 1
        return measured

    def _measure_size(
        self, config: Config, strategy: Strategy, fleet: str, state: fleets.FleetState
    ) -> tuple[int | None, str]:
        assert strategy.fleet is not None and strategy.fleet.size_query is not None
        known = (*state.in_flight, *(state.wave.members if state.wave else ()))
        labels = self.store.look(
            lambda tx: fleet_journal.target_labels(tx, strategy.name, fleet, known[:1])
        )
        if not labels:
            return None, "no target of the fleet journaled yet"
        context = incident_context(next(iter(labels.values())), {}, "", "", "")
        try:
            query = strategy.fleet.size_query.render(context, strategy.safe_pattern)
            value = self._prometheus(config).scalar(query)
        except (RenderError, UnsafeValueError, PrometheusError) as exc:
            return None, f"size_query failed, sized by the journal meanwhile: {exc}"
        return max(0, int(value)), f"size_query {query!r} = {value:g}"

    def forget_unconfigured(self) -> int:
        """Forget the waves and analyses of fleets whose strategy a reload left without
        `fleet` (their actions no longer wait for them); returns how many."""
        config = self.source.config
        fleeted = {s.name for s in config.strategies if s.fleet is not None}
        rows, _ = self.store.look(lambda tx: fleet_journal.listing(tx, 1000, 0))
        why = "the strategy no longer has a fleet: its wave is forgotten"
        stale = [
            (row["strategy"], row["fleet"])
            for row in rows
            if row["strategy"] not in fleeted and (row["state"].wave or row["state"].in_flight)
        ]
        for strategy, fleet in stale:
            self.store.change(
                lambda tx, s=strategy, f=fleet: fleetrun.forget(tx, s, f, why, self.clock())
            )
        return len(stale)

    def _fleet_work(self) -> None:
        """The fleets' thread: analyses and sizes need Prometheus, which may be slow; here
        they delay neither claims nor the heartbeats."""
        while not self._stop.wait(FLEET_POLL):
            for chore in (self.forget_unconfigured, self.run_analyses, self.refresh_sizes):
                self._chore(chore)

    def _escalation_lease(self, config: Config) -> float:
        """How long one delivery may take, doubled (store/runs.escalation_lease)."""
        am = self._alertmanager(config, self._executors(config))
        timeout = getattr(am, "timeout", None) or config.defaults.timeout
        return run_journal.escalation_lease(float(timeout))

    def _deliver(
        self, config: Config, escalation: run_journal.Escalation
    ) -> tuple[str | None, str]:
        """Post one runbook escalation, its trail in the annotations (see _post)."""
        trail = self._trail_text(config, escalation)
        return self._post(
            config,
            Escalated(
                strategy=escalation.strategy,
                target=escalation.target,
                labels=escalation.labels,
                annotations=escalation.annotations,
                reason=escalation.reason,
                details={"runbook_trail": trail, "runbook_run": str(escalation.run)},
                text=trail,
                action_id=escalation.last_action_id or 0,
            ),
        )

    def _trail_text(self, config: Config, escalation: run_journal.Escalation) -> str:
        """The run's trail as the escalation carries it (runbooks.trail_text)."""
        strategy = _named(config, escalation.strategy)
        settings = strategy.runbook if strategy is not None else None
        needed = max([r.index for r in escalation.trail] + [1])
        if settings is None or len(settings.steps) < needed:
            settings = runbooks.RunbookSettings(
                tuple(runbooks.Step(i) for i in range(1, needed + 1))
            )
        return runbooks.trail_text(escalation.state, settings)

    # outcome ------------------------------------------------------------------------
    def _finish(
        self, config: Config, strategy: Strategy | None, row: ActionRow, outcome: Outcome
    ) -> None:
        now = self.clock()
        update = None
        if strategy is not None:
            settings = strategy.breaker
            if outcome.counts:
                ok = outcome.status == "succeeded"
                update = lambda state: breaker.record(state, settings, now, ok)  # noqa: E731
            else:
                update = release_trial
        planned = runs.Planned()
        follow = self._follow(config, planned, interrupted=outcome.interrupted)
        try:
            before, after = self._retrying(
                row,
                lambda: self.store.finish(
                    row,
                    outcome.status,
                    outcome.reason,
                    outcome.output,
                    now,
                    update,
                    follow,
                    steps=outcome.steps,
                ),
                FINISH_RETRY,
            )
        except NoLongerOurs:
            log.warning(
                "action %s: not journaled again by this process: %s",
                outcome.status,
                outcome.reason,
                extra={"action_id": row.id},
            )
            self._after(planned)
            return
        extra = {"action_id": row.id, "incident_id": row.incident_id}
        log.log(
            outcome_level(strategy, outcome.status),
            "action %s: %s",
            outcome.status,
            outcome.reason,
            extra=extra,
        )
        if after.state == breaker.OPEN and before.state != breaker.OPEN:
            # the person hears of it through the runbook: its next step is skipped by the
            # open breaker, so the run ends uncured and escalates once (runs.py)
            note = f"breaker opened for {row.strategy} on {row.target}: {outcome.reason}"
            self.store.remark(row.id, self.clock(), note)
            log.warning(note, extra=extra)
        self._after(planned)

    def _executors(self, config: Config) -> _Runtime:
        with self._lock:
            if self._runtime.sha256 != config.sha256 or not self._runtime.sha256:
                built = build_each(config)
                for reason in built.errors.values():
                    # check, start and reload refuse such a config, so this is a change
                    # on the host since (a secret file removed): say it loudly, once
                    log.error("unusable %s; only the strategies using it fail", reason)
                self._runtime = _Runtime(config.sha256, built.executors, built.errors)
            return self._runtime

    # heartbeats and crash recovery -----------------------------------------------
    def _housekeeping(self) -> None:
        self._chore(self.recover)
        # Heartbeats go on through a shutdown's grace (until _halted), recovery does not.
        while not self._halted.wait(HEARTBEAT_INTERVAL):
            with self._lock:
                running = list(self._running)
            try:
                self.store.heartbeat(running, self.clock())
            except StoreUnavailable as exc:
                log.error("journal unavailable for heartbeats: %s", exc)
                continue
            if not self._stop.is_set():
                chores = (
                    self.recover,
                    self.repeat_due,
                    self.send_escalations,
                    self.send_approval_alerts,
                    self.prune,
                )
                for chore in chores:
                    self._chore(chore)

    def _chore(self, chore: Callable[[], int]) -> None:
        """Run one housekeeping chore; its error is logged, never raised: this thread
        carries the heartbeats, and without them other processes would adopt (and by the
        crash rule maybe re-run) every action this one is running."""
        try:
            chore()
        except StoreUnavailable as exc:
            log.error("journal unavailable for %s: %s", chore.__name__, exc)
        except Exception:
            log.exception("housekeeping %s failed; continuing", chore.__name__)

    def prune(self) -> int:
        """Retention (receiver/retention.py): start a pass when one is due, then run its
        batches for at most PRUNE_BUDGET seconds per housekeeping tick, so heartbeats
        stay on time; a pass that deleted something logs one line when it ends. Returns
        the rows deleted in this call."""
        config = self.source.config
        settings = config.retention
        now = self.clock()
        if self._prune_schedule is None:
            self._prune_schedule = retention.Schedule.starting(settings, now)
        if self._pruning is None:
            if not settings.enabled or not self._prune_schedule.due(now):
                return 0
            window = retention.longest(retention.read_windows(config)).seconds
            cutoffs = retention.cutoffs(settings, window, now)
            self._pruning = prune_journal.start(self.store, cutoffs, settings.batch_size)
        pruning = self._pruning
        before = pruning.total
        prune_journal.advance(self.store, pruning, budget=PRUNE_BUDGET)
        if pruning.done:
            self._pruning = None
            self._prune_schedule.passed(settings, self.clock())
            if pruning.total:
                log.info("journal pruned: %s in %d batches", pruning.summary(), pruning.batches)
        return pruning.total - before

    def repeat_due(self) -> int:
        """Start the next run of each cured runbook whose cure did not last (repeat_after
        passed while its incident fires); returns how many repeats were due."""
        config = self.source.config
        planned = runs.Planned()
        now = self.clock()

        def start(tx: Any, run: run_journal.RunRow) -> None:
            planned.add(runs.repeat_due(tx, config, run, now))

        due = self.store.repeat_due(now, start)
        self._after(planned)
        return due

    def recover(self) -> int:
        """Adopt actions a dead process left running; each is resolved by the rule in the
        module doc in a thread of its own, heart-beating as one of ours meanwhile."""
        now = self.clock()
        stale_before = now - ORPHAN_AFTER
        resolved = 0
        self._recoveries = [t for t in self._recoveries if t.is_alive()]
        for row in self.store.orphans(stale_before):
            if row.id in self._running or not self.store.adopt(
                row.id, self.worker, stale_before, now
            ):
                continue
            resolved += 1
            with self._lock:
                self._running.add(row.id)
            thread = threading.Thread(
                target=self._recover_one, args=(row,), name=f"recover-{row.id}", daemon=True
            )
            self._recoveries.append(thread)
            thread.start()
        return resolved

    def _recover_one(self, row: ActionRow) -> None:
        try:
            self._resolve_orphan(self.source.config, row)
        except StoreUnavailable as exc:  # heartbeat stops; adopted again later
            log.error("journal unavailable resolving an orphan: %s", exc)
        except Exception:
            log.exception("orphan resolution failed", extra={"action_id": row.id})
        finally:
            with self._lock:
                self._running.discard(row.id)

    def _resolve_orphan(self, config: Config, row: ActionRow) -> None:
        strategy = _step_of(_named(config, row.strategy), row)
        left = self._settle_orphan_process(config, strategy, row)
        if left is None:
            return  # shutdown came first: left running for the next process
        found, killed = left
        verifies = strategy is not None and strategy.verify is not None
        if verifies and self._verify(config, strategy, row) is None:
            passed = Outcome(
                "succeeded", "interrupted by a crash; verification passed, not re-run" + found
            )
            self._finish(config, strategy, row, passed)
            return
        if strategy is not None and row.incident_status == "firing" and is_idempotent(strategy):
            self.store.note(row.id, self.clock(), "interrupted by a crash; re-running (idempotent)")
            with self._lock:
                self._running.discard(row.id)  # _carry_out adds it again
            self._carry_out(config, row, adopted=True)
            return
        why = "alert resolved" if row.incident_status != "firing" else "not idempotent"
        status = "timed_out" if killed else "failed"
        reason = f"interrupted by a crash; not re-run ({why}){found}"
        self._finish(config, strategy, row, Outcome(status, reason))

    def _settle_orphan_process(
        self, config: Config, strategy: Strategy | None, row: ActionRow
    ) -> tuple[str, bool] | None:
        """Step 0 of the crash rule: make sure the orphan's command no longer runs.

        Returns (what was found, a suffix for the outcome's reason; whether its group had
        to be killed), or None when a shutdown interrupted the wait."""
        identity = processes.ProcessIdentity.from_dict(row.process) if row.process else None
        state = processes.group_state(identity) if identity else processes.GONE
        if identity is None or state == processes.GONE:
            return "", False
        timeout = self._orphan_timeout(config, strategy, row)
        group = f"process group {identity.pgid} on {identity.host}"
        seen = "ran on another host, unseen from here" if state == processes.ELSEWHERE else ""
        found = f"its command ({group}) {seen or 'was still running after the crash'}"
        self.store.note(row.id, self.clock(), f"{found}; waiting up to its {seconds(timeout)}")
        ended = self._wait_for_group(identity, identity.started_at + timeout, bool(seen))
        if ended is None:
            return None
        if ended:
            after = self.clock() - identity.started_at
            found += f"; it ended {after:.0f}s after it started (exit status unknown)"
            killed = False
        elif seen:
            found += f"; its {seconds(timeout)} timeout has passed"
            killed = False
        else:
            processes.kill_identified(identity, KILL_GRACE)
            found += f"; killed at its {seconds(timeout)} timeout"
            killed = True
        self.store.note(row.id, self.clock(), found)
        return f"; {found}", killed

    def _wait_for_group(
        self, identity: processes.ProcessIdentity, end: float, unseen: bool
    ) -> bool | None:
        """True when the group ended by `end` (wall clock), False when it did not (or
        cannot be seen), None when this dispatcher began to stop first (the orphan is
        then left to the next one: a shutdown does not wait for another's command)."""
        while self.clock() < end:
            if self._stop.is_set():
                return None
            if not unseen and processes.group_state(identity) == processes.GONE:
                return True
            time.sleep(ORPHAN_POLL)
        return False

    def _orphan_timeout(self, config: Config, strategy: Strategy | None, row: ActionRow) -> float:
        """The timeout the dead process applied: the strategy's, capped by the executor's."""
        executor = config.executors.get(row.executor)
        cap = executor.settings.get("timeout") if executor is not None else None
        return effective_timeout(strategy.timeout if strategy else config.defaults.timeout, cap)


class NoLongerOurs(StoreUnavailable):
    """An action's journal write was not retried: the action is no longer running under
    this dispatcher (an earlier attempt committed after all, or another process adopted
    it after a long outage)."""


def _approval_gate(
    strategy: Strategy, row: ActionRow, reader: GateReader, now: float, server: ServerConfig
) -> gates.Verdict | None:
    """The approval gate (approvals.py), first after dry-run: None when the action may go
    on to the other gates (approved, or timed out with `on_timeout: run`); else the
    verdict that holds it (a DELAY while awaited) or ends it (denied, timed out). Its
    state is journaled in the claim's transaction; the first look asks for the alert,
    which links to the action under the external URL (`server.public_url`)."""
    assert strategy.approval is not None
    state = approval_journal.load(reader.tx, row.id)
    judgement = approvals.judge(state, strategy.approval, now)
    if judgement.state is not None:
        alert = None
        if state is None:  # requested now: the alert that tells people is owed
            alert = approvals.awaiting_alert(
                row.id, row.strategy, row.action, row.target, row.params, row.labels,
                row.annotations, judgement.state, external_url=server.public_url,
            )  # fmt: skip
        approval_journal.save(reader.tx, row.id, row.strategy, judgement.state, alert)
        if judgement.outcome == approvals.PROCEED:  # timed out, running
            reader.tx.add_event(row.id, now, "planned", judgement.reason)
    if judgement.outcome == approvals.WAIT:
        return gates.Verdict(
            gates.DELAY, approvals.AWAITING, judgement.reason, None, judgement.not_before
        )
    if judgement.outcome == approvals.SKIP:
        return gates.Verdict(gates.SKIP, "approval", judgement.reason)
    return None


def _named(config: Config, name: str) -> Strategy | None:
    return config.strategy_named(name)


def _dry_outside_fleet(tx: Any, strategy: Strategy, row: ActionRow) -> bool:
    """Whether `row` is a dry-run step that never entered its fleet (the fleet gate does
    not apply in dry run, see Gates): its end changes nothing the fleet holds. A dry-run
    step of a run admitted earlier still re-plans the fleet, as its run's end frees the
    target's slot."""
    step = _step_of(strategy, row)
    if step is None or not step.dry_run:
        return False
    assert row.fleet is not None
    return not fleetrun.in_flight(tx, strategy, row.fleet, row.target)


def _step_of(strategy: Strategy | None, row: ActionRow) -> Strategy | None:
    """The strategy of the row's runbook step; None if the config no longer has it."""
    if strategy is None:
        return None
    try:
        return strategy.step(row.step)
    except IndexError:
        return None


def failure(result: ExecutionResult) -> Outcome:
    """The outcome of an execution that did not succeed. Refused by the alert's own data:
    skipped "refused: ...". Interrupted at shutdown: failed. Neither counts against the
    breaker; a timeout or any other failure does."""
    if result.refused:
        return Outcome("skipped", f"refused: {result.detail}", result.output, counts=False)
    if result.interrupted:
        return Outcome("failed", result.detail, result.output, counts=False, interrupted=True)
    status = "timed_out" if result.timed_out else "failed"
    return Outcome(status, result.detail, result.output)


def is_idempotent(strategy: Strategy) -> bool:
    return strategy.idempotent or strategy.action in IDEMPOTENT_ACTIONS


def release_trial(state: breaker.BreakerState) -> breaker.BreakerState:
    """An admitted half-open trial that never ran (precondition) gives its slot back."""
    if state.state != breaker.HALF_OPEN or state.half_open_in_flight == 0:
        return state
    return replace(state, half_open_in_flight=state.half_open_in_flight - 1)
