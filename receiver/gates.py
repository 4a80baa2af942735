"""The gates an action passes before it runs, in a fixed order (pure).

Order matters and is part of the contract: dry-run, per-target lock, per-(strategy,
target) cooldown, per-target budget, global concurrency cap, circuit breaker. (The
last gates, a step's `when` and preconditions, need Prometheus and are checked by the
dispatcher after these pass.) Every input is read from the journal inside the claim
transaction, so the verdict is the same whichever process makes it.

Gates delay or end (DESIGN.md): `locked` and `cooldown` DELAY an action (it stays
planned, not claimed before the verdict's `not_before`), `concurrency` DEFERs it (the
claim stops; it is tried again at the next claim); `dry_run`, `budget` and
`breaker_open` SKIP it, which ends its runbook (runbooks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from receiver import breaker
from receiver.config import Strategy
from receiver.durations import format_duration

RUN, SKIP, DEFER, DELAY = "run", "skip", "defer", "delay"
#: The action's fleet plan (fleetrun.tick) already journaled what happens to it.
HANDLED = "handled"
#: Seconds before a locked action is looked at again: the lock's end is not known.
LOCK_RECHECK = 1.0


@dataclass(frozen=True)
class GateInputs:
    """What the journal says right now about this action's target and strategy."""

    running_on_target: int | None  # id of an action running on the same target
    # latest start of this (strategy, target) for another incident: a runbook's own
    # steps and repeats are paced by its `wait` and `repeat_after`, not by the cooldown
    last_started: float | None
    started_in_budget_window: int  # actions started on the target within the budget window
    running_total: int  # actions running anywhere
    breaker_state: breaker.BreakerState


@dataclass(frozen=True)
class Verdict:
    outcome: str  # run | skip | defer | delay
    gate: str  # dry_run | locked | cooldown | budget | concurrency | breaker_open | open | ...
    reason: str
    breaker_state: breaker.BreakerState | None = None  # to persist, when the gate read it
    not_before: float | None = None  # of a delay: when to look again (seconds)


def evaluate(
    strategy: Strategy,
    target: str,
    inputs: GateInputs,
    max_concurrent: int,
    now: float,
) -> Verdict:
    """The verdict for one planned action of `strategy` (a runbook step's strategy) on
    `target` at `now` (seconds): the first gate, in the module's order, that stops it,
    or RUN "all gates passed". A verdict carries the breaker state it read (to persist:
    a half-open admission is counted); a DELAY carries when to look again."""
    state = breaker.current(inputs.breaker_state, strategy.breaker, now)

    def stop(outcome: str, gate: str, reason: str, not_before: float | None = None) -> Verdict:
        return Verdict(outcome, gate, reason, state, not_before)

    if strategy.dry_run:
        return stop(SKIP, "dry_run", f"dry_run: would {strategy.action} {target}")
    if inputs.running_on_target is not None:
        return stop(
            DELAY,
            "locked",
            f"locked: action {inputs.running_on_target} is running on {target}",
            now + LOCK_RECHECK,
        )
    if inputs.last_started is not None and now - inputs.last_started < strategy.cooldown:
        ago = now - inputs.last_started
        return stop(
            DELAY,
            "cooldown",
            f"cooldown: {strategy.name} acted on {target} {format_duration(ago)} ago "
            f"({format_duration(strategy.cooldown - ago)} left)",
            inputs.last_started + strategy.cooldown,
        )
    budget = strategy.budget
    if budget is not None and inputs.started_in_budget_window >= budget.max_actions:
        return stop(
            SKIP,
            "budget",
            f"budget: {inputs.started_in_budget_window} actions on {target} in the last "
            f"{format_duration(budget.window)} (max {budget.max_actions})",
        )
    if inputs.running_total >= max_concurrent:
        return stop(
            DEFER,
            "concurrency",
            f"concurrency: {inputs.running_total} actions running (max {max_concurrent}), "
            f"{target} waits",
        )
    admitted, admitted_state = breaker.admit(state, strategy.breaker, now)
    if not admitted:
        return stop(
            SKIP, "breaker_open", f"breaker_open: {strategy.name} on {target} is {state.state}"
        )
    return Verdict(RUN, "open", "all gates passed", admitted_state)
