"""The runbook step machine of issue 14: which step runs next for an incident, and when.

A person with a runbook tries the next step when one fails, stops when the service is
cured, and says so when out of steps. A strategy's ``steps`` are that runbook; a strategy
without steps is a one-step runbook. Everything here is pure: the caller injects ``now``
(seconds since the epoch), evaluates ``when`` conditions and gates, runs the actions, and
journals the returned ``RunbookState`` in the same transaction as the step's outcome, so a
restart loses nothing (runs.py does, for the engine and the dispatcher).

Lifecycle of one run (rules from issue 14 and DESIGN.md "Runbooks", "Gates delay or end")::

    start --> step 1 --(succeeded)------------------------------> cured
                 |  --(failed | timed_out, alert firing)--> next step (not_before = now + wait)
                 |  --(skipped: `when` false)-------------> next step (the reason kept)
                 |  --(skipped: precondition, render, …)--> next step, as a false `when`
                 |  --(skipped: budget | breaker_open)----> uncured: escalate once
                 |  --(interrupted by a shutdown)----------> uncured: escalate once
                 |  --(skipped: dry_run)------------------> dry_run: nothing tried, no page
                 |  --(alert resolved, any other outcome)--> cancelled
                 '--(past the last step)------------------> uncured: escalate once
    cured --(still firing repeat_after later, runs left)--> new run from step 1
    cured --(still firing repeat_after later, no runs left)--> uncured: escalate once

The caller must: plan the decided step with its ``not_before``; cancel what is planned or
waiting when ``cancel`` says so; send one escalation carrying ``trail_text`` when a
decision has ``escalate`` set (only a transition into ``uncured`` sets it, and an ended run
refuses further outcomes, so a run escalates at most once); after a crash, rebuild the state
with ``resume`` from the journaled trail, apply the dispatcher's crash rule to the step it
names as current, and never rerun a finished step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

# Outcomes of one step, as the journal records an action's end.
SUCCEEDED, FAILED, TIMED_OUT, SKIPPED = "succeeded", "failed", "timed_out", "skipped"
OUTCOMES = (SUCCEEDED, FAILED, TIMED_OUT, SKIPPED)
# Skips that end the run without a cure: the remediator may not act (or, interrupted by
# its own shutdown, will not go on blindly), so a person must.
INTERRUPTED = "interrupted"
#: a fleet's halted wave (fleets.py) skipped it: the fleet's one escalation covers it
HALTED = "halted"
ENDING_GATES = ("budget", "breaker_open", INTERRUPTED, HALTED)
WHEN, DRY_RUN = "when", "dry_run"

# Status of a run.
RUNNING, CURED, UNCURED, CANCELLED = "running", "cured", "uncured", "cancelled"
STATUSES = (RUNNING, CURED, UNCURED, CANCELLED, DRY_RUN)

# What a decision asks of the caller.
PLAN, END, CANCEL, WAIT, NOTHING = "plan", "end", "cancel", "wait", "nothing"

TRAIL_LIMIT = 4096  # characters; Alertmanager annotations are shown whole in notifications
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")  # reasons quote alert labels: keep one line a step


def _require(condition: bool, message: str) -> None:
    """Reject a bad runbook at config load rather than at 3 a.m."""
    if not condition:
        raise ValueError(message)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Step:
    """One step of a runbook: ``index`` is 1-based, ``wait`` seconds >= 0 before it runs,
    ``has_when`` whether a ``when`` condition must hold (the caller evaluates it)."""

    index: int
    name: str | None = None
    wait: float = 0.0
    has_when: bool = False

    def __post_init__(self) -> None:
        _require(
            isinstance(self.index, int) and self.index >= 1,
            f"step index must be an int >= 1, got {self.index!r}",
        )
        _require(
            _finite(self.wait) and self.wait >= 0,
            f"step {self.index}: wait must be a finite number of seconds >= 0, got {self.wait!r}",
        )
        _require(
            self.name is None or (isinstance(self.name, str) and self.name.strip() != ""),
            f"step {self.index}: name must be a non-empty string or absent, got {self.name!r}",
        )

    @property
    def label(self) -> str:
        """How journals and annotations name the step: ``step 2 (rollback)`` or ``step 2``."""
        return f"step {self.index} ({self.name})" if self.name else f"step {self.index}"


@dataclass(frozen=True)
class RunbookSettings:
    """A strategy's runbook: ``steps`` in order (indexes 1..n), ``repeat_after`` seconds
    (> 0) after a cured run to start again if the incident still fires, or None."""

    steps: tuple[Step, ...]
    repeat_after: float | None = None

    def __post_init__(self) -> None:
        _require(len(self.steps) >= 1, "a runbook needs at least one step, got none")
        indexes = [step.index for step in self.steps]
        _require(
            indexes == list(range(1, len(self.steps) + 1)),
            f"step indexes must be 1..{len(self.steps)} in order, got {indexes}",
        )
        names = [step.name for step in self.steps if step.name]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        _require(not duplicates, f"step names must be unique, repeated: {duplicates}")
        _require(
            self.repeat_after is None or (_finite(self.repeat_after) and self.repeat_after > 0),
            f"repeat_after must be a finite number of seconds > 0, got {self.repeat_after!r}",
        )

    def step(self, index: int) -> Step:
        """The step at 1-based ``index``; IndexError names the runbook's length."""
        if not 1 <= index <= len(self.steps):
            raise IndexError(f"no step {index} in a runbook of {len(self.steps)} steps")
        return self.steps[index - 1]


def one_step(name: str | None = None, repeat_after: float | None = None) -> RunbookSettings:
    """The runbook of a strategy without ``steps``: its own action, no wait, no ``when``."""
    return RunbookSettings(steps=(Step(index=1, name=name),), repeat_after=repeat_after)


@dataclass(frozen=True)
class StepResult:
    """A finished step as journaled: ``outcome`` one of OUTCOMES, ``gate`` the gate that
    skipped it (``when``, ``budget``, ``breaker_open``, ``dry_run``, …) or None,
    ``reason`` for the operator, ``ended_at`` seconds."""

    index: int
    outcome: str
    reason: str
    ended_at: float
    gate: str | None = None

    def __post_init__(self) -> None:
        # `if`, not _require: the messages are built only when raised (a step result and
        # a run state are built at every action's end, on the dispatcher's hot path)
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if (self.outcome == SKIPPED) != (self.gate is not None):
            raise ValueError(
                f"a gate goes with a skipped outcome and only with it, "
                f"got {self.outcome!r}/{self.gate!r}"
            )
        if not _finite(self.ended_at):
            raise ValueError(f"ended_at must be a finite number, got {self.ended_at!r}")

    def to_dict(self) -> dict:
        """Plain JSON types only, for the journal."""
        return {
            "index": self.index,
            "outcome": self.outcome,
            "reason": self.reason,
            "ended_at": self.ended_at,
            "gate": self.gate,
        }

    @classmethod
    def from_dict(cls, data: dict) -> StepResult:
        """Inverse of ``to_dict``; ValueError on an unknown outcome."""
        return cls(
            index=int(data["index"]),
            outcome=str(data["outcome"]),
            reason=str(data.get("reason", "")),
            ended_at=float(data["ended_at"]),
            gate=data.get("gate"),
        )


@dataclass(frozen=True)
class RunbookState:
    """One run of a runbook for one incident: ``run`` counts the incident's runs (1-based),
    ``current`` is the step planned or running (None once ended), ``trail`` the finished
    steps in order, times in seconds."""

    started_at: float
    run: int = 1
    current: int | None = 1
    trail: tuple[StepResult, ...] = ()
    status: str = RUNNING
    ended_at: float | None = None

    def __post_init__(self) -> None:
        # `if`, not _require: see StepResult
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not self.run >= 1:
            raise ValueError(f"run must be >= 1, got {self.run!r}")
        if not (self.status == RUNNING) == (self.current is not None) == (self.ended_at is None):
            raise ValueError(
                f"a running run has a current step and no end, got {self.status}/{self.current}"
            )

    @property
    def finished(self) -> frozenset[int]:
        """Indexes of the steps that ended in this run; none of them may run again."""
        return frozenset(result.index for result in self.trail)

    def to_dict(self) -> dict:
        """Plain JSON types only, so any store can hold it next to the breaker state."""
        return {
            "started_at": self.started_at,
            "run": self.run,
            "current": self.current,
            "trail": [result.to_dict() for result in self.trail],
            "status": self.status,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunbookState:
        """Inverse of ``to_dict``; ValueError on an inconsistent state."""
        ended_at = data.get("ended_at")
        current = data.get("current")
        return cls(
            started_at=float(data["started_at"]),
            run=int(data.get("run", 1)),
            current=None if current is None else int(current),
            trail=tuple(StepResult.from_dict(r) for r in data.get("trail", ())),
            status=str(data.get("status", RUNNING)),
            ended_at=None if ended_at is None else float(ended_at),
        )


@dataclass(frozen=True)
class StepOutcome:
    """How the current step ended, as the dispatcher saw it: ``outcome`` one of OUTCOMES,
    ``gate`` the gate that skipped it (only with ``skipped``), ``reason`` for the operator."""

    outcome: str
    reason: str = ""
    gate: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the caller does next. ``action``: PLAN ``step`` not before ``not_before``
    seconds; END the run (``status`` cured, uncured or dry_run); CANCEL what is planned or
    waiting; WAIT until ``not_before`` (repeat not due yet); NOTHING. ``escalate`` is set
    only on the transition into uncured. ``reason`` is for the journal, verbatim."""

    action: str
    reason: str
    step: Step | None = None
    not_before: float | None = None
    status: str | None = None
    escalate: bool = False


def start(settings: RunbookSettings, now: float, run: int = 1) -> tuple[Decision, RunbookState]:
    """Begin run ``run`` of an incident at step 1; plan it after its ``wait``."""
    # `if`, not _require: see StepResult (this runs once per incident opened, at ingest)
    if not _finite(now):
        raise ValueError(f"now must be a finite number, got {now!r}")
    state = RunbookState(started_at=now, run=run)
    return _plan(settings.step(1), now, f"run {run}: starting"), state


def advance(
    state: RunbookState,
    settings: RunbookSettings,
    outcome: StepOutcome,
    alert_firing: bool,
    now: float,
) -> tuple[Decision, RunbookState]:
    """Fold the current step's outcome into the run and decide what follows (see diagram).

    Raises ValueError if the run already ended (an ended run never escalates twice), if the
    outcome is malformed, or if a ``when`` skip names a step that has no ``when``.
    """
    # `if`, not _require: see StepResult
    if not _finite(now):
        raise ValueError(f"now must be a finite number, got {now!r}")
    if state.status != RUNNING:
        raise ValueError(f"run {state.run} already ended ({state.status})")
    step = settings.step(state.current)
    result = StepResult(state.current, outcome.outcome, _clean(outcome.reason), now, outcome.gate)
    if outcome.gate == WHEN and not step.has_when:
        raise ValueError(f"{step.label} has no `when`, so it cannot be skipped by one")
    # built directly, not with dataclasses.replace: this runs once per finished action
    # (the dispatcher's hot path), and replace() costs several times the construction
    state = RunbookState(state.started_at, state.run, state.current, (*state.trail, result))
    said = f"{step.label} {_describe(result)}"
    if outcome.outcome == SUCCEEDED:
        return _end(state, now, CURED, f"cured: {said}")
    if not alert_firing:
        return _cancel(state, now, f"cancelled: alert resolved after {said}")
    if outcome.gate == HALTED:
        # the halted wave's ONE escalation covers this run: saying "escalating" here
        # would promise a page per target that never comes
        reason = f"ended uncured: {said}; covered by the fleet's escalation"
        return _end(state, now, UNCURED, reason)
    if outcome.gate in ENDING_GATES:
        return _end(state, now, UNCURED, f"ended uncured: {said}; escalating")
    if outcome.gate == DRY_RUN:
        return _end(state, now, DRY_RUN, f"dry run: {said}; no further step")
    if step.index == len(settings.steps):
        reason = f"ended uncured: out of steps after {said}; escalating"
        return _end(state, now, UNCURED, reason)
    following = settings.step(step.index + 1)
    state = RunbookState(state.started_at, state.run, following.index, state.trail)
    return _plan(following, now, f"{said}; next {following.label}"), state


def cancel(
    state: RunbookState, settings: RunbookSettings, now: float, reason: str = "alert resolved"
) -> tuple[Decision, RunbookState]:
    """The alert resolved while a step was planned or waiting: cancel it, end the run.

    An ended run is left as it is (NOTHING): the resolution came after the decision.
    """
    if state.status != RUNNING:
        return Decision(NOTHING, f"run {state.run} already ended ({state.status})"), state
    return _cancel(
        state, now, f"cancelled: {_clean(reason)}; {settings.step(state.current).label} not run"
    )


def repeat(
    state: RunbookState,
    settings: RunbookSettings,
    alert_firing: bool,
    now: float,
    max_runs: int,
) -> tuple[Decision, RunbookState]:
    """After a cured run: start run ``run + 1`` from step 1 if the incident still fires
    ``repeat_after`` seconds after the cure, within ``max_runs`` (from the budget, >= 1).

    Out of runs while still firing, the cure did not last and nothing may be tried:
    the run becomes uncured and escalates once. Raises ValueError if ``max_runs`` < 1.
    """
    _require(
        isinstance(max_runs, int) and max_runs >= 1, f"max_runs must be >= 1, got {max_runs!r}"
    )
    if state.status != CURED or settings.repeat_after is None:
        return Decision(NOTHING, f"run {state.run} is {state.status}; no repeat"), state
    if not alert_firing:
        return Decision(NOTHING, f"run {state.run} cured and the alert resolved"), state
    due = state.ended_at + settings.repeat_after
    if now < due:
        reason = (
            f"run {state.run} cured; repeat due if still firing {settings.repeat_after:g}s after"
        )
        return Decision(WAIT, reason, not_before=due), state
    lasted = f"still firing {now - state.ended_at:g}s after run {state.run} was cured"
    if state.run >= max_runs:
        state = replace(state, status=UNCURED, ended_at=now)
        reason = f"ended uncured: {lasted}, and {max_runs} runs allowed; escalating"
        return Decision(END, reason, status=UNCURED, escalate=True), state
    fresh = RunbookState(started_at=now, run=state.run + 1)
    decision = _plan(settings.step(1), now, f"{lasted}; run {fresh.run} from step 1")
    return decision, fresh


def resume(
    settings: RunbookSettings,
    run: int,
    started_at: float,
    trail: Sequence[StepResult],
    alert_firing: bool,
    now: float,
) -> tuple[Decision, RunbookState]:
    """Rebuild a run after a crash from its journaled trail (finished steps, in order).

    A running run resumes at the step after the last finished one: the decision is PLAN
    that step with ``not_before`` None, for the caller to resolve by the dispatcher's crash
    rule if it was running. If the alert resolved meanwhile, the run is cancelled at
    ``now`` instead (the interrupted action row itself still goes through the crash rule,
    which does not rerun it). An ended run returns its END without ``escalate``: its
    consequences (next step, escalation) were journaled with its last outcome, in the same
    transaction. Raises ValueError on a trail that skips or repeats steps, or continues
    past an end.
    """
    state = RunbookState(started_at=started_at, run=run)
    decision = Decision(PLAN, "", step=settings.step(1))
    for position, result in enumerate(trail):
        _require(state.status == RUNNING, f"trail continues after the run ended at {position}")
        _require(
            result.index == state.current,
            f"trail out of order: step {result.index} finished where step {state.current} was due",
        )
        outcome = StepOutcome(result.outcome, result.reason, result.gate)
        # A recorded failure planned the next step, so the alert was firing when it ended.
        decision, state = advance(state, settings, outcome, True, result.ended_at)
        state = replace(state, trail=(*state.trail[:-1], result))
    if state.status != RUNNING:
        return replace(decision, escalate=False, reason=f"already {decision.reason}"), state
    if not alert_firing:
        return cancel(state, settings, now, "alert resolved during the crash")
    step = settings.step(state.current)
    reason = f"resuming run {run} at {step.label}; finished steps not run again"
    return Decision(PLAN, reason, step=step), state


def trail_text(state: RunbookState, settings: RunbookSettings, limit: int = TRAIL_LIMIT) -> str:
    """The run's trail for an escalation annotation: one line per step, outcome, reason.

    At most ``limit`` characters (>= 80): lines that do not fit are replaced by a marker
    saying how many were left out. Times are UTC.
    """
    _require(limit >= 80, f"limit must be >= 80 characters, got {limit!r}")
    head = f"runbook run {state.run}, started {_utc(state.started_at)}: {state.status}"
    lines = [head] + [
        f"{settings.step(r.index).label} at {_utc(r.ended_at)}: {_describe(r)}" for r in state.trail
    ]
    if state.current is not None:
        lines.append(f"{settings.step(state.current).label}: not finished")
    return _bounded(lines, limit)


def _bounded(lines: list[str], limit: int) -> str:
    """Keep whole lines from the top while they and the marker fit in ``limit``."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0  # characters of the kept lines, each with its newline
    # The whole text does not fit, so this loop always stops before the last line.
    while used + len(lines[len(kept)]) + 1 + len(_marker(lines, kept, limit)) <= limit:
        used += len(lines[len(kept)]) + 1
        kept.append(lines[len(kept)])
    marker = _marker(lines, kept, limit)
    if not kept:  # even the head is too long for the limit: keep its start
        kept.append(lines[0][: limit - len(marker) - 2] + "…")
    return "\n".join([*kept, marker])


def _marker(lines: list[str], kept: list[str], limit: int) -> str:
    return f"[… {len(lines) - len(kept)} more lines cut: trail longer than {limit} characters]"


def _describe(result: StepResult) -> str:
    outcome = f"skipped ({result.gate})" if result.gate else result.outcome
    return f"{outcome}: {result.reason}" if result.reason else outcome


def _clean(reason: str) -> str:
    return _CONTROL.sub(" ", reason).strip()


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _plan(step: Step, now: float, reason: str) -> Decision:
    not_before = now + step.wait
    if step.wait:
        reason = f"{reason}, after its wait of {step.wait:g}s"
    return Decision(PLAN, reason, step=step, not_before=not_before)


def _end(
    state: RunbookState, now: float, status: str, reason: str
) -> tuple[Decision, RunbookState]:
    state = RunbookState(state.started_at, state.run, None, state.trail, status, now)
    return Decision(END, reason, status=status, escalate=status == UNCURED), state


def _cancel(state: RunbookState, now: float, reason: str) -> tuple[Decision, RunbookState]:
    state = RunbookState(state.started_at, state.run, None, state.trail, CANCELLED, now)
    return Decision(CANCEL, reason, status=CANCELLED), state
