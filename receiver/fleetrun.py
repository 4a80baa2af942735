"""Fleets carried out in the journal: the wave planner (fleets.py) applied to action rows,
inside the caller's transaction.

`tick` is the whole of it: it folds what the journal says happened to the fleet's targets
in flight (their runbook runs' ends) into the fleet's state, plans the fleet with
`fleets.plan_wave`, and writes the plan back onto the fleet's planned actions: admitted
ones become claimable, waiting ones wait (`fleet` gate, journaled once), skipped ones end
`halted: <why>` and their runs with them. It runs where something may change the plan:
in a claim that meets an action of the fleet not yet admitted (dispatcher `_judge`), in
the transaction that journals an outcome of the fleet (dispatcher `_follow`), and in the
one that journals an analysis verdict (`record_verdict`). So the state, the actions and
the escalation owed are always written together.

A target is in flight from its admission until its runbook run ends: a runbook's later
steps on an admitted target pass the fleet gate, and the run's end (cured -> succeeded,
uncured -> failed) is the outcome the wave counts. A halt opens the fleet's breaker
(breakers row `fleet:<fleet>` of the strategy) for the strategy's breaker
`recovery_timeout`; once it would admit again, the halt is cleared and the next incidents
gather a new wave.

One escalation per fleet (`cover_failure`): a run of a fleet strategy that ends uncured
escalates for the fleet when the fleet has not escalated within `escalation_window`;
otherwise the fleet's escalation covers it (added to its summary while still pending).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from receiver import breaker, fleets, runbooks
from receiver.config import UNDO_STEP, Strategy
from receiver.plans import incident_context, render_plan
from receiver.store import dispatch, totals
from receiver.store import fleets as journal
from receiver.store.base import NewAction, Page
from receiver.store.listing import PageBounds, PageFill
from receiver.store.sql import iso
from receiver.templates import RenderError, UnsafeValueError

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

log = logging.getLogger(__name__)

#: `waiting` of a planned action held back by its fleet (and the gate's name)
FLEET_GATE = "fleet"
#: Seconds before a waiting action of a fleet is looked at again when nothing else is
#: due: outcomes and verdicts re-plan the fleet at once, this only catches the rest
#: (an incident resolved meanwhile, a fleet size that changed).
RECHECK = 5.0
#: Prefix of the breakers row of a fleet (per strategy).
BREAKER_PREFIX = "fleet:"
#: Outcome of a wave member, by how its runbook run ended.
RUN_OUTCOMES = {
    "cured": fleets.SUCCEEDED,
    "uncured": fleets.FAILED,
    "cancelled": fleets.CANCELLED,
    "dry_run": fleets.SKIPPED,
}
ADMITTED, WAIT, SKIP = "admitted", "wait", "skip"

#: Folds a just-skipped action into its runbook run (runs.follow); returns its Planned.
Follow = Callable[["SqlTransaction", int], Any]


@dataclass(frozen=True)
class Admission:
    """The fleet gate's verdict on one planned action: ADMITTED, WAIT (until `not_before`,
    seconds) or SKIP (a halted wave), with the reason the journal shows."""

    kind: str
    reason: str
    not_before: float | None = None


@dataclass
class Tick:
    """What one tick decided: per action id its Admission, how many actions it admitted
    (threads to wake) and escalations it owed (to deliver)."""

    admissions: dict[int, Admission] = field(default_factory=dict)
    admitted: int = 0
    escalations: int = 0
    reason: str = ""


def fleet_of(strategy: Strategy, labels: dict[str, str], target: str) -> str | None:
    """The fleet key of a target of `strategy` (None: the strategy has no `fleet`)."""
    if strategy.fleet is None:
        return None
    return fleets.fleet_key(labels, strategy.fleet.settings.group_by, target)


def in_flight(tx: SqlTransaction, strategy: Strategy, fleet: str, target: str) -> bool:
    """Whether `target` is admitted in its fleet (its run not ended): a claim passes its
    action without planning the fleet again."""
    return target in journal.load(tx, strategy.name, fleet).state.in_flight


def breaker_target(fleet: str) -> str:
    """The `target` of the fleet's row in the breakers table."""
    return BREAKER_PREFIX + fleet


def tick(
    tx: SqlTransaction,
    strategy: Strategy,
    fleet: str,
    now: float,
    follow: Follow,
    *,
    exclude: int | None = None,
) -> Tick:
    """Plan `fleet` of `strategy` (which has `fleet`) at `now` and write the plan onto its
    planned actions, except `exclude` (the action a claim is judging: the claim writes its
    verdict); every action's Admission is returned."""
    assert strategy.fleet is not None
    row = journal.load(tx, strategy.name, fleet)
    state = _fold_run_ends(tx, strategy, row.state, now)
    state = _clear_halt(tx, strategy, state, now)
    rows = journal.waiting(tx, strategy.name, fleet)
    in_flight = set(state.in_flight)
    waiting = [fleets.Waiting(w.target, w.since) for w in rows if w.target not in in_flight]
    size = _size(tx, strategy, row, now)
    result = Tick()
    plan, state, started = _plan(tx, strategy, state, waiting, size, now)
    if plan.escalation is not None:
        result.escalations += _halted(tx, strategy, fleet, plan.escalation, now)
    _apply(tx, rows, plan, started | set(state.in_flight), now, follow, exclude, result)
    journal.save(tx, strategy.name, state, plan.next_at, plan.reason, now)
    result.reason = plan.reason
    return result


def _plan(
    tx: SqlTransaction,
    strategy: Strategy,
    state: fleets.FleetState,
    waiting: list[fleets.Waiting],
    size: int,
    now: float,
) -> tuple[fleets.WavePlan, fleets.FleetState, set[str]]:
    """plan_wave, with the analysis it asks for journaled (due `interval` seconds after
    the stage's last end) or, without `analysis`, passed at once so the next stage is
    planned in the same call. Returns the plan, the state and every target it started."""
    assert strategy.fleet is not None
    settings = strategy.fleet.settings
    plan, state = fleets.plan_wave(state, settings, waiting, size, now)
    started = set(plan.start)
    stages = len(settings.progressive.stages) + 1 if settings.progressive else 0
    for _ in range(stages):  # bounded: each pass moves the wave one stage on
        if plan.analyse is None:
            break
        if strategy.fleet.analysis is not None:
            due = max(now, plan.analyse.since + strategy.fleet.analysis.interval)
            journal.ask_analysis(tx, strategy.name, state.fleet, plan.analyse, due, now)
            break
        state = fleets.record_verdict(
            state, settings, fleets.PASS, "no analysis configured: stages go on", now
        )
        waiting = [w for w in waiting if w.target not in state.in_flight]
        plan, state = fleets.plan_wave(state, settings, waiting, size, now)
        started.update(plan.start)
    return plan, state, started


def _fold_run_ends(
    tx: SqlTransaction, strategy: Strategy, state: fleets.FleetState, now: float
) -> fleets.FleetState:
    """Targets in flight whose run ended leave flight with their run's outcome."""
    assert strategy.fleet is not None
    ends = journal.run_ends(tx, strategy.name, state.fleet, state.in_flight)
    for target in state.in_flight:
        status, reason, ended_at = ends.get(target, ("cancelled", "no run found", None))
        if status == "running":
            continue
        outcome = RUN_OUTCOMES.get(status, fleets.CANCELLED)
        state = fleets.record_outcome(
            state, strategy.fleet.settings, target, outcome, reason, ended_at or now
        )
    return state


def _clear_halt(
    tx: SqlTransaction, strategy: Strategy, state: fleets.FleetState, now: float
) -> fleets.FleetState:
    """A halted wave is forgotten once the fleet's breaker, opened when the halt was
    acted on (its escalation owed), would admit again."""
    wave = state.wave
    if wave is None or wave.phase != fleets.HALTED or not wave.escalated:
        return state
    target = breaker_target(state.fleet)
    held = dispatch.load_breaker(tx, strategy.name, target)
    if breaker.current(held, strategy.breaker, now).state == breaker.OPEN:
        return state
    dispatch.save_breaker(tx, strategy.name, target, breaker.reset(), now)
    return fleets.clear_halt(state)


def _size(tx: SqlTransaction, strategy: Strategy, row: journal.FleetRow, now: float) -> int:
    """The fleet's size: `size_query`'s last answer, else the journal's distinct targets."""
    assert strategy.fleet is not None
    if strategy.fleet.size_query is not None and row.size is not None:
        return row.size
    since = now - strategy.fleet.size_window
    return journal.distinct_targets(tx, strategy.name, row.fleet, since)


def _halted(
    tx: SqlTransaction,
    strategy: Strategy,
    fleet: str,
    escalation: fleets.FleetEscalation,
    now: float,
) -> int:
    """A wave halted: open the fleet's breaker, drop analyses, owe the ONE escalation."""
    target = breaker_target(fleet)
    held = dispatch.load_breaker(tx, strategy.name, target)
    dispatch.save_breaker(tx, strategy.name, target, breaker.trip(held, now), now)
    journal.drop_analyses(tx, strategy.name, fleet, escalation.why, now)
    summary = escalation.to_dict()
    summary["labels"] = _group_labels(tx, strategy, fleet, escalation.targets[:1])
    summary["episode"] = iso(now)
    journal.owe_escalation(tx, strategy.name, fleet, summary, now)
    log.warning("fleet %s of %s %s", fleet, strategy.name, escalation.why)
    return 1


def _group_labels(
    tx: SqlTransaction, strategy: Strategy, fleet: str, targets: tuple[str, ...]
) -> dict[str, str]:
    """The labels an escalation of the fleet carries: alertname and the group_by labels."""
    assert strategy.fleet is not None
    found = journal.target_labels(tx, strategy.name, fleet, targets)
    labels = next(iter(found.values()), {})
    keep = ("alertname", *strategy.fleet.settings.group_by)
    return {name: labels[name] for name in keep if labels.get(name)}


def _apply(
    tx: SqlTransaction,
    rows: list[journal.Waiting],
    plan: fleets.WavePlan,
    admitted: set[str],
    now: float,
    follow: Follow,
    exclude: int | None,
    result: Tick,
) -> None:
    """Write the plan onto the fleet's planned actions (all but `exclude`)."""
    skips = dict(plan.skip)
    waits = dict(plan.wait)
    not_before = plan.next_at if plan.next_at is not None else now + RECHECK
    not_before = max(not_before, now)
    for row in rows:
        if row.target in skips:
            admission = Admission(SKIP, skips[row.target])
        elif row.target in admitted:
            admission = Admission(ADMITTED, f"fleet: admitted ({plan.reason})")
        else:
            why = waits.get(row.target, f"fleet: waiting ({plan.reason})")
            admission = Admission(WAIT, why, not_before)
        result.admissions[row.action_id] = admission
        if row.action_id == exclude:
            continue
        if admission.kind == SKIP:
            dispatch.set_status(tx, row.action_id, "skipped", admission.reason, now, finished=True)
            follow(tx, row.action_id)
        elif admission.kind == ADMITTED:
            if row.waiting == FLEET_GATE:  # it waited for the fleet: claimable now
                tx.execute(
                    "UPDATE actions SET not_before = NULL, waiting = NULL, updated_at = ? "
                    "WHERE id = ?",
                    (now, row.action_id),
                )
                tx.add_event(row.action_id, now, "planned", admission.reason)
            result.admitted += 1
        else:
            hold(tx, row, admission, now)


def hold(tx: SqlTransaction, row: journal.Waiting, admission: Admission, now: float) -> None:
    """Keep a planned action waiting for its fleet: journaled when it starts to, then
    its reason and time to look again kept current (written only when they change)."""
    reason = f"waiting: {admission.reason}"
    if row.waiting == FLEET_GATE:
        if (row.not_before, row.reason) != (admission.not_before, reason):
            tx.execute(
                "UPDATE actions SET not_before = ?, reason = ? WHERE id = ?",
                (admission.not_before, reason, row.action_id),
            )
        return
    tx.execute(
        "UPDATE actions SET not_before = ?, waiting = ?, reason = ?, updated_at = ? WHERE id = ?",
        (admission.not_before, FLEET_GATE, reason, now, row.action_id),
    )
    tx.add_event(row.action_id, now, "planned", reason)


# verdicts and escalations -------------------------------------------------------------


def record_verdict(
    tx: SqlTransaction,
    strategy: Strategy,
    analysis: journal.Analysis,
    verdict: str,
    judgement: dict[str, Any],
    reason: str,
    now: float,
    follow: Follow,
) -> Tick | None:
    """Journal an analysis's judgement and fold its verdict into the wave, then re-plan the
    fleet; None when the analysis was already finished (by another process) or the wave
    no longer awaits it."""
    if not journal.finish_analysis(tx, analysis.id, verdict, judgement, now):
        return None
    totals.count_canary_verdict(tx, strategy.name, verdict)
    assert strategy.fleet is not None
    row = journal.load(tx, strategy.name, analysis.fleet)
    wave = row.state.wave
    if wave is None or wave.phase not in (fleets.ANALYSING, fleets.HALTED):
        return None
    if wave.stage != analysis.stage:
        return None
    state = fleets.record_verdict(row.state, strategy.fleet.settings, verdict, reason, now)
    journal.save(tx, strategy.name, state, row.next_at, row_reason(state), now)
    done = tick(tx, strategy, analysis.fleet, now, follow)
    if verdict == fleets.FAIL and strategy.undo is not None:
        done.admitted += plan_undo(tx, strategy, analysis, reason, now)
    return done


def plan_undo(
    tx: SqlTransaction, strategy: Strategy, analysis: journal.Analysis, reason: str, now: float
) -> int:
    """Plan the strategy's `undo` on each canary the analysis found worse than the
    baseline, for the canary's latest incident, outside its (ended) runbook run: step
    UNDO_STEP, no run, no fleet (the halted wave must not hold it back). The usual gates
    apply. Returns how many were planned (a refused rendering is journaled skipped)."""
    assert strategy.undo is not None
    planned = 0
    found = journal.latest_incidents(tx, strategy.name, analysis.fleet, analysis.canary)
    for target in analysis.canary:
        if target not in found:
            continue
        incident_id, columns = found[target]
        context = incident_context(
            columns["labels"],
            columns["annotations"],
            columns["fingerprint"],
            columns["starts_at"],
            columns["generator_url"],
        )
        plan = render_plan(strategy.undo, context)
        why = f"undo: the analysis after the canary found it worse than the baseline ({reason})"
        tx.insert_action(
            NewAction(
                incident_id=incident_id,
                strategy=strategy.name,
                action=strategy.undo.action,
                executor=strategy.undo.executor,
                target=plan.target,
                params=plan.params,
                status="skipped" if plan.refused else "planned",
                reason=plan.refused or why,
                dry_run=strategy.undo.dry_run,
                created_at=now,
                step=UNDO_STEP,
            )
        )
        planned += 0 if plan.refused else 1
    return planned


def analysis_queries(
    strategy: Strategy, analysis: journal.Analysis, labels: dict[str, dict[str, str]]
) -> list[tuple[str, list[str], list[str]]]:
    """Per analysis metric: (name, its query for each canary target, for each baseline
    target), rendered from each target's incident labels as any PromQL template is; a
    target whose labels make its query unsafe is left out (and logged)."""
    assert strategy.fleet is not None and strategy.fleet.analysis is not None
    spec = strategy.fleet.analysis
    found = []
    for metric, template in zip(spec.settings.metrics, spec.queries, strict=True):
        sides: list[list[str]] = []
        for side in (analysis.canary, analysis.baseline):
            rendered = []
            for target in side:
                context = {
                    **incident_context(labels.get(target, {}), {}, "", "", ""),
                    "target": target,
                }
                try:
                    rendered.append(template.render(context, strategy.safe_pattern))
                except (RenderError, UnsafeValueError) as exc:
                    log.warning("analysis query %s for %s refused: %s", metric.name, target, exc)
            sides.append(rendered)
        found.append((metric.name, sides[0], sides[1]))
    return found


def forget(tx: SqlTransaction, strategy: str, fleet: str, why: str, now: float) -> None:
    """The strategy no longer has a fleet (a reload): drop the fleet's analyses and
    forget its wave and targets in flight, so that nothing shows or waits for them."""
    journal.drop_analyses(tx, strategy, fleet, why, now)
    row = journal.load(tx, strategy, fleet)
    state = replace(row.state, in_flight=(), loose=(), wave=None)
    journal.save(tx, strategy, state, None, f"fleet {fleet}: {why}", now)


def row_reason(state: fleets.FleetState) -> str:
    wave = state.wave
    if wave is None:
        return f"fleet {state.fleet}: no wave"
    return f"fleet {state.fleet}: wave {wave.phase} at its {wave.stage_label}"


def cover_failure(
    tx: SqlTransaction, strategy: Strategy, run_id: int, reason: str, now: float
) -> int:
    """A run of a fleet strategy ended uncured: escalate for the fleet unless the fleet
    escalated within `escalation_window`, whose escalation then counts it (and is posted
    again, as an update of the same alert); a run skipped by a halted wave is covered by
    the halt's escalation as it is. Returns the deliveries owed (0 or 1), or -1 when the
    run's actions name no fleet (journaled before it had one: the caller escalates it
    alone). The run's escalation column says `fleet` otherwise."""
    assert strategy.fleet is not None
    last = tx.execute(
        "SELECT target, fleet, status, reason FROM actions WHERE run_id = ? "
        "ORDER BY id DESC LIMIT 1",
        (run_id,),
    ).fetchone()
    if last is None or last[1] is None:
        return -1
    target, fleet, status, last_reason = last
    owed = 0
    if status == "skipped" and last_reason.startswith(f"{runbooks.HALTED}:"):
        why = "covered by the escalation of the fleet's halted wave"
        wave = journal.load(tx, strategy.name, fleet).state.wave
        if wave is not None and target not in wave.members:  # it fired after the halt
            owed = int(journal.cover(tx, strategy.name, fleet, target, reason, journal.HELD_SINCE))
    else:
        owed, why = _escalate_or_cover(tx, strategy, fleet, target, reason, now)
    tx.execute(
        "UPDATE runbook_runs SET escalation = ?, escalation_reason = ?, escalation_note = ? "
        "WHERE id = ?",
        (journal.COVERED, reason, f"fleet {fleet}: {why}", run_id),
    )
    return owed


def _escalate_or_cover(
    tx: SqlTransaction, strategy: Strategy, fleet: str, target: str, reason: str, now: float
) -> tuple[int, str]:
    """(deliveries owed, why) for a failed run of the fleet: a new escalation, or the
    fleet's escalation within the window counting it too."""
    assert strategy.fleet is not None
    row = journal.load(tx, strategy.name, fleet)
    window = strategy.fleet.settings.escalation_window
    escalates, why = fleets.failure_escalates(row.state.escalated_at, window, now)
    if not escalates:
        owed = journal.cover(tx, strategy.name, fleet, target, reason)
        return int(owed), why + ("" if owed else " (it could not be delivered)")
    state = replace(row.state, escalated_at=now)
    journal.save(tx, strategy.name, state, row.next_at, row_reason(state), now)
    summary = {
        "fleet": fleet,
        "why": f"{target}: {reason}",
        "failed_targets": [target],
        "targets": [target],
        "labels": _group_labels(tx, strategy, fleet, (target,)),
        "summary": f"fleet {fleet}: remediation failed on {target}: {reason}",
        "episode": iso(now),
    }
    journal.owe_escalation(tx, strategy.name, fleet, summary, now)
    return 1, why


def escalation_text(summary: dict[str, Any]) -> str:
    """The escalation's text: the halt's summary, and the failed runs it covers."""
    text = summary.get("summary") or summary.get("why", "")
    covered = summary.get(journal.FAILED_SINCE, 0)
    if covered:
        listed = ", ".join(summary.get(f"{journal.FAILED_SINCE}_targets", []))
        text += f"\nalso failed since: {covered} ({listed})"
    held = summary.get(journal.HELD_SINCE, 0)
    if held:
        listed = ", ".join(summary.get(f"{journal.HELD_SINCE}_targets", []))
        text += f"\nfired since and held back by the halt, not acted on: {held} ({listed})"
    return text


def page(
    tx: SqlTransaction,
    strategies: dict[str, Strategy],
    bounds: PageBounds,
    offset: int,
    now: float,
) -> Page:
    """A page of GET /api/v1/fleets: each fleet's view with its latest analyses and its
    breaker, by strategy and fleet, at most `bounds.rows` fleets and, as every listing,
    stopping before the fleet that would take the JSON past `bounds.page_bytes` (the
    first always shows). A fleet's `size` is the one its gate plans with at `now`
    (seconds): `size_query`'s last answer, else the journal's distinct targets."""
    rows, total = journal.listing(tx, bounds.rows, offset)
    for row in rows:
        row["size"], row["size_source"] = _listed_size(
            tx, strategies.get(row["strategy"]), row, now
        )
    fill = PageFill(bounds)
    for view in fleet_views(rows, strategies):
        analyses = journal.analyses(tx, view["strategy"], view["fleet"], limit=5)
        view["analyses"] = [_analysis_times(a) for a in analyses]
        held = dispatch.load_breaker(tx, view["strategy"], breaker_target(view["fleet"]))
        view["breaker"] = {"target": breaker_target(view["fleet"]), **held.to_dict()}
        _view_times(view)
        if not fill.add(view):
            break
    return Page(fill.items, total, bounds.rows, offset)


def _view_times(view: dict[str, Any]) -> None:
    """The fleet's own times as ISO 8601, as the other listings show times (the breaker
    keeps its state's Unix seconds, as GET /api/v1/breakers shows it)."""
    view["escalated_at"] = iso(view["escalated_at"])
    wave = view.get("wave")
    if wave is not None:
        wave["next_stage_at"] = iso(wave["next_stage_at"])
        wave["verdicts"] = [{**v, "at": iso(v["at"])} for v in wave["verdicts"]]


def _analysis_times(found: dict[str, Any]) -> dict[str, Any]:
    shown = {**found, **{k: iso(found[k]) for k in ("due_at", "created_at", "finished_at")}}
    shown["request"] = {**found["request"], "since": iso(found["request"]["since"])}
    judgement = found.get("judgement")
    if judgement and isinstance(judgement.get("judged_at"), int | float):
        shown["judgement"] = {**judgement, "judged_at": iso(judgement["judged_at"])}
    return shown


def _listed_size(
    tx: SqlTransaction, strategy: Strategy | None, row: dict[str, Any], now: float
) -> tuple[int | None, str]:
    """(size, where it comes from) as `_size` finds it for the fleet gate; a fleet whose
    strategy no longer has `fleet` shows the size last measured."""
    if strategy is None or strategy.fleet is None:
        return row["size"], "size_query" if row["size"] is not None else "journal"
    if strategy.fleet.size_query is not None and row["size"] is not None:
        return row["size"], "size_query"
    since = now - strategy.fleet.size_window
    return journal.distinct_targets(tx, strategy.name, row["fleet"], since), "journal"


def fleet_views(rows: list[dict[str, Any]], strategies: dict[str, Strategy]) -> list[dict]:
    """What GET /api/v1/fleets shows of each journaled fleet (see fleets.fleet_view);
    each row as `journal.listing` gives it, with `size` and `size_source` as `page`
    measured them."""
    views = []
    for row in rows:
        strategy = strategies.get(row["strategy"])
        state: fleets.FleetState = row["state"]
        settings = (
            strategy.fleet.settings
            if strategy is not None and strategy.fleet is not None
            else fleets.FleetSettings()
        )
        view = fleets.fleet_view(state, settings, row["size"] or 0)
        view.update(
            strategy=row["strategy"],
            configured=strategy is not None and strategy.fleet is not None,
            size_source=row["size_source"],
            size_note=row["size_note"],
            reason=row["reason"],
            next_at=iso(row["next_at"]),
            updated_at=iso(row["updated_at"]),
            escalation={
                "status": row["escalation"],
                "summary": row["escalation_summary"],
                "note": row["escalation_note"],
            },
        )
        views.append(view)
    return views
