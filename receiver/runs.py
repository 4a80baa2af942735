"""Runbooks carried out in the journal: the step machine (runbooks.py) applied to action
rows, inside the caller's transaction.

`start` plans a run's first step when an incident opens (engine.ingest) or a cure did
not last (`repeat_due`); `follow` folds a step's outcome into its run in the SAME
transaction that journals the outcome (the dispatcher's claim or finish), planning the
next step, ending the run, or owing one escalation. So a crash leaves a run either
before an outcome or after all of its consequences, and the dispatcher's crash rule
(dispatcher.py) applied to the interrupted step is the whole of resuming a runbook:
a finished step is never run again, because its row is final and the run has moved on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from receiver import fleetrun, runbooks
from receiver.config import Config, Strategy
from receiver.plans import Plan, incident_context, render_plan
from receiver.store import runs as journal
from receiver.store.base import NewAction
from receiver.store.sql import iso

if TYPE_CHECKING:
    from receiver.store.dispatch import ActionRow
    from receiver.store.sql import SqlTransaction

log = logging.getLogger(__name__)

#: `waiting` of a planned step whose own `wait` has not passed yet
STEP_WAIT = "wait"


@dataclass(frozen=True)
class Opening:
    """The new incident a run starts with. Its first planned action's log line tells
    both (`incident opened: X; action planned: ...`): one line per matched alert, not
    two saying the same incident twice."""

    alertname: str
    fingerprint: str


@dataclass
class Planned:
    """What a transaction planned: actions to run, refused ones, escalations owed."""

    actions: int = 0
    refused: int = 0
    escalations: int = 0

    def add(self, other: Planned) -> None:
        self.actions += other.actions
        self.refused += other.refused
        self.escalations += other.escalations


def start(
    tx: SqlTransaction,
    strategy: Strategy,
    incident_id: int,
    context: dict[str, Any],
    now: float,
    run: int = 1,
    opening: Opening | None = None,
) -> Planned:
    """Begin run `run` of `strategy`'s runbook for an incident: journal the run and plan
    step 1 (rendered from `context`); a step refused at rendering is skipped and the
    runbook goes on, as for any skip (see runbooks.py). `opening`: the incident opened
    with this run, told in the planned action's log line (engine.py)."""
    decision, state = runbooks.start(strategy.runbook, now, run)
    reason = f"matched strategy {strategy.name}"
    if strategy.steps or run > 1:
        reason += f": run {run}, {decision.step.label}"
    if strategy.step(1).wait:
        reason += f", after its wait of {strategy.step(1).wait:g}s"
    decision = replace(decision, reason=reason)
    run_id = journal.insert(tx, incident_id, strategy.name, run, now, decision.reason)
    return _plan(tx, strategy, run_id, incident_id, state, decision, context, now, True, opening)


def follow(
    tx: SqlTransaction,
    config: Config,
    action_id: int,
    now: float,
    *,
    interrupted: bool = False,
    row: ActionRow | None = None,
) -> Planned:
    """Fold the outcome just journaled for `action_id` into its run; no-op for an action
    of no run (journaled before runbooks) or of a run that already ended.

    `interrupted`: the step was cut short by Remediator's own shutdown, not found to fail:
    the run ends uncured (one escalation) rather than going on to a next step (a rollback
    because Remediator was redeployed would make things worse). `row`: the action as the
    caller read it in this transaction (its run and strategy never change), so it is not
    read again; its incident's status is read anew (it may have resolved since)."""
    if row is None:
        found = tx.execute(
            "SELECT run_id, strategy FROM actions WHERE id = ?", (action_id,)
        ).fetchone()
        if found is None:
            return Planned()
        run_id, name = found
    else:
        run_id, name = row.run_id, row.strategy
    if run_id is None:
        return Planned()
    loaded = journal.load_with_status(tx, run_id)
    if loaded is None or loaded[0].status != runbooks.RUNNING:
        return Planned()
    run, incident_status = loaded
    trail = journal.trail(tx, run_id)
    strategy = _strategy(config, name)
    if strategy is None or not trail or trail[-1].index != run.current_step:
        reason = "cancelled: runbook no longer configured"
        journal.end(tx, run_id, runbooks.CANCELLED, reason, now, strategy=name)
        return Planned()
    last = trail[-1]
    outcome = runbooks.StepOutcome(last.outcome, last.reason, last.gate)
    if interrupted:
        reason = f"Remediator shut down while it ran ({last.reason})"
        outcome = runbooks.StepOutcome(runbooks.SKIPPED, reason, runbooks.INTERRUPTED)
    try:
        # the run as its journaled trail rebuilds it (checked: in order, nothing repeated)
        _, state = runbooks.resume(strategy.runbook, run.run, run.started_at, trail[:-1], True, now)
        if state.current != run.current_step:
            raise ValueError(f"trail ends at step {state.current}, run at {run.current_step}")
        decision, state = runbooks.advance(
            state, strategy.runbook, outcome, incident_status == "firing", now
        )
    except (ValueError, IndexError) as exc:  # the config changed under a running run
        journal.end(tx, run_id, runbooks.CANCELLED, f"cancelled: {exc}", now, strategy=name)
        return Planned()
    # the incident's context is read only if a next step is to be rendered from it
    return _plan(tx, strategy, run_id, run.incident_id, state, decision, None, now)


def repeat_due(tx: SqlTransaction, config: Config, run: journal.RunRow, now: float) -> Planned:
    """A cured run's repeat time came (taken by the caller) while its incident fires:
    start the next run from step 1, or, out of runs, end it uncured with an escalation."""
    strategy = _strategy(config, run.strategy)
    if strategy is None or strategy.repeat_after is None:
        return Planned()
    max_runs = strategy.budget.max_actions if strategy.budget else 1
    decision, state = runbooks.repeat(
        run.state(journal.trail(tx, run.id)), strategy.runbook, True, now, max_runs
    )
    if decision.action == runbooks.END:
        # the run stays as it ended (cured: its step did succeed); the escalation says
        # the cure did not last and no run is left to try
        journal.owe_escalation(tx, run.id, decision.reason)
        return Planned(escalations=1)
    if decision.action != runbooks.PLAN:
        return Planned()
    context = _context(tx, run.incident_id)
    return start(tx, strategy, run.incident_id, context, now, run=state.run)


def _plan(
    tx: SqlTransaction,
    strategy: Strategy,
    run_id: int,
    incident_id: int,
    state: runbooks.RunbookState,
    decision: runbooks.Decision,
    context: dict[str, Any] | None,
    now: float,
    moved: bool = False,
    opening: Opening | None = None,
) -> Planned:
    """Carry out a decision: plan its step (and go on past steps refused at rendering),
    or end the run. `context`: the incident's, to render steps from (None: read it from
    the journal if a step is planned); `moved`: the run row already names the decided
    step (a new run); `opening`: see start."""
    planned = Planned()
    while decision.action == runbooks.PLAN:
        if context is None:
            context = _context(tx, incident_id)
        step = strategy.step(decision.step.index)
        if not moved:
            journal.move_to(tx, run_id, decision.step.index, decision.reason)
        moved = False
        plan = render_plan(step, context)
        fleet = fleetrun.fleet_of(strategy, context["labels"], plan.target)
        action_id = tx.insert_action(
            _new_action(incident_id, run_id, decision, plan, decision.reason, now, fleet)
        )
        if not plan.refused:
            planned.actions += 1
            _log_planned(plan, decision, incident_id, action_id, opening)
            return planned
        planned.refused += 1
        log.warning(
            "action refused: %s",
            plan.refused,
            extra={"incident_id": incident_id, "action_id": action_id},
        )
        outcome = runbooks.StepOutcome("skipped", plan.refused, "refused")
        decision, state = runbooks.advance(state, strategy.runbook, outcome, True, now)
    if decision.action in (runbooks.END, runbooks.CANCEL):
        repeat_at = None
        if decision.status == runbooks.CURED and strategy.repeat_after is not None:
            repeat_at = now + strategy.repeat_after
        for_fleet = decision.escalate and strategy.fleet is not None
        journal.end(
            tx,
            run_id,
            decision.status,
            decision.reason,
            now,
            escalate=decision.escalate and not for_fleet,
            repeat_at=repeat_at,
            strategy=strategy.name,
        )
        owed = (
            _escalate_for_fleet(tx, strategy, run_id, decision, now)
            if for_fleet
            else int(decision.escalate)
        )
        planned.escalations += owed
        # WARNING when it pages someone; a run the fleet's escalation covers (a halted
        # wave's skips) is INFO, as skips are, or a halt of 30 would log 30 warnings.
        # A strategy without steps cured by its one action says nothing the action's
        # own line (`action succeeded: ...`) does not: not logged (the run's end is
        # journaled all the same), one line per action fewer on the hot path.
        if owed or strategy.steps or decision.status != runbooks.CURED or repeat_at:
            log.log(
                logging.WARNING if owed else logging.INFO,
                "runbook %s: %s",
                strategy.name,
                decision.reason,
                extra={"incident_id": incident_id},
            )
    return planned


def _escalate_for_fleet(
    tx: SqlTransaction,
    strategy: Strategy,
    run_id: int,
    decision: runbooks.Decision,
    now: float,
) -> int:
    """An uncured run of a fleet strategy escalates once for its fleet (fleetrun.py); a
    run whose actions name no fleet (journaled before it had one) escalates alone."""
    sent = fleetrun.cover_failure(tx, strategy, run_id, decision.reason, now)
    if sent < 0:
        journal.owe_escalation(tx, run_id, decision.reason)
        return 1
    return sent


def _new_action(
    incident_id: int,
    run_id: int,
    decision: runbooks.Decision,
    plan: Plan,
    reason: str,
    now: float,
    fleet: str | None = None,
) -> NewAction:
    strategy = plan.strategy
    not_before = decision.not_before if decision.not_before and decision.not_before > now else None
    if plan.refused:
        reason = plan.refused
    elif not_before is not None:
        reason = f"waiting: {reason}; eligible at {iso(not_before)}"
    return NewAction(
        incident_id=incident_id,
        strategy=strategy.name,
        action=strategy.action,
        executor=strategy.executor,
        target=plan.target,
        params=plan.params,
        status="skipped" if plan.refused else "planned",
        reason=reason,
        dry_run=strategy.dry_run,
        created_at=now,
        step=decision.step.index,
        run_id=run_id,
        not_before=None if plan.refused else not_before,
        waiting=STEP_WAIT if not_before is not None and not plan.refused else None,
        fleet=fleet,
    )


def _log_planned(
    plan: Plan,
    decision: runbooks.Decision,
    incident_id: int,
    action_id: int,
    opening: Opening | None,
) -> None:
    what = (plan.strategy.name, decision.step.label, plan.strategy.action, plan.target)
    extra: dict[str, Any] = {"incident_id": incident_id, "action_id": action_id}
    if opening is None:
        log.info("action planned: %s %s %s on %s", *what, extra=extra)
        return
    extra["fingerprint"] = opening.fingerprint
    log.info(
        "incident opened: %s; action planned: %s %s %s on %s",
        opening.alertname,
        *what,
        extra=extra,
    )


def _strategy(config: Config, name: str) -> Strategy | None:
    return config.strategy_named(name)


def _context(tx: SqlTransaction, incident_id: int) -> dict[str, Any]:
    labels, annotations, fingerprint, starts_at, generator_url = tx.execute(
        "SELECT labels, annotations, fingerprint, starts_at, generator_url FROM incidents "
        "WHERE id = ?",
        (incident_id,),
    ).fetchone()
    return incident_context(
        json.loads(labels), json.loads(annotations), fingerprint, starts_at, generator_url
    )
