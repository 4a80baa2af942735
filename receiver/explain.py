"""What an alert with given labels would get, without acting (pure): the text and JSON
of `remediator explain`, and the console's explain form (receiver/console/strategies.py).

    labels (+ annotations) ──► firing_alert ──► plan_for (plans.py) ──► Explanation
                                                                         ├─ text()    (CLI, console)
                                                                         └─ as_json() (CLI --json)

Per matching strategy: its matchers, the action (or each runbook step) rendered for the
alert with the gates it would pass through in order, what happens when it fails, the
fleet, repeat_after and `continue`. Nothing is journaled or executed; the clock is the
caller's (`now`, the alert's startsAt). The console's form gives labels as lines
(`parse_label_lines`); the CLI as arguments (matchers.parse_label_args).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver import fleets
from receiver.alerts import Alert, fingerprint_of
from receiver.breaker import BreakerSettings
from receiver.config import Config, FleetConfig, Strategy
from receiver.durations import format_duration
from receiver.matchers import MatcherError, is_label_name
from receiver.plans import Plan, plan_for, render_plan
from receiver.templates import RenderError, Template, UnsafeValueError

#: Most lines (labels or annotations) the console's form takes, and most characters.
MAX_LINES, MAX_CHARS = 200, 65536


@dataclass(frozen=True)
class Explanation:
    """The strategies an imaginary firing alert would get: its `labels`, the `plans` of
    the matching strategies (step 1 of each, in match order) and the alert's template
    `context` (later steps and fleet queries are rendered from it)."""

    config: Config
    labels: dict[str, str]
    plans: list[Plan]
    context: dict[str, Any] = field(repr=False)

    def text(self) -> str:
        """What `remediator explain` prints (see explain_text)."""
        return explain_text(self.config, self.labels, self.plans, self.context)

    def as_json(self) -> list[dict[str, Any]]:
        """What `remediator explain --json` prints, before json.dumps: one object per
        matching strategy (see plan_json)."""
        return [plan_json(self.config, plan, self.context) for plan in self.plans]


def firing_alert(labels: dict[str, str], annotations: dict[str, str], now: datetime) -> Alert:
    """The imaginary alert explain plans for: firing since `now` (an aware datetime),
    with these labels and annotations and the fingerprint Alertmanager would give it."""
    return Alert(
        status="firing",
        labels=labels,
        annotations=annotations,
        starts_at=now,
        ends_at=None,
        fingerprint=fingerprint_of(labels),
    )


def explain(
    config: Config, labels: dict[str, str], annotations: dict[str, str], now: datetime
) -> Explanation:
    """Route a firing alert with these labels (and annotations, for templates that use
    them) through `config` and render what each matching strategy would do."""
    alert = firing_alert(labels, annotations, now)
    return Explanation(config, labels, plan_for(config, alert), alert.template_context())


def parse_label_lines(text: str, what: str = "label") -> dict[str, str]:
    """Labels from the console's form: one `name=value` per line (CRLF or LF ends a line).
    Blank lines are skipped; white space around the name and around the value is
    dropped; a later line for the same name wins (as repeated CLI arguments do). The
    name is everything before the first `=` and must be a label name (matchers.py:
    any non-empty UTF-8). `what` names the lines in errors ("label", "annotation").
    Raises MatcherError naming the first bad line (its 1-based number, its text cut at
    80 characters), or when the text has more than MAX_LINES lines or MAX_CHARS
    characters."""
    if len(text) > MAX_CHARS:
        raise MatcherError(f"at most {MAX_CHARS} characters of {what}s, got {len(text)}")
    found: dict[str, str] = {}
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    given = sum(1 for line in lines if line.strip())
    if given > MAX_LINES:
        raise MatcherError(f"at most {MAX_LINES} {what} lines, got {given}")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not is_label_name(name):
            raise MatcherError(
                f"line {number}: expected NAME=VALUE with a non-empty {what} name, "
                f"got {line[:80]!r}"
            )
        found[name] = value.strip()
    return found


def explain_text(
    config: Config, labels: dict[str, str], plans: list[Plan], context: dict[str, Any]
) -> str:
    """What `explain` prints: per matching strategy, its action (or each runbook step)
    rendered for the alert, with the gates that apply. `context` is the alert's template
    context (later steps are rendered from it, as runs.py renders them from the incident)."""
    shown = " ".join(f"{k}={v!r}" for k, v in labels.items())
    lines = [f"alert: {shown}", f"service: {config.service_of(labels) or '(none)'}"]
    if not plans:
        lines.append("no strategy matches: the alert would be journaled as unmatched, no action")
        return "\n".join(lines)
    for number, plan in enumerate(plans, 1):
        strategy = _runbook_of(config, plan)
        lines += [
            "",
            f"match {number}: strategy {strategy.name!r}",
            "  matchers: " + (", ".join(map(str, strategy.matchers)) or "(none: every alert)"),
        ]
        if not strategy.steps:
            lines += _action_lines(config, plan, "  ")
            lines.append(f"  failed:   one escalation via {_escalation_text(config)}")
        else:
            lines.append(
                f"  runbook:  {len(strategy.steps)} steps; a failed step is followed by the "
                "next while the alert fires, a success ends the run (cooldown does not "
                "apply between the steps of one incident: `wait` paces them)"
            )
            for index, step_plan in enumerate(_step_plans(strategy, plan, context), 1):
                lines.append(f"  step {_step_title(strategy, index)}:")
                lines += _action_lines(config, step_plan, "    ", step=index)
            lines.append(
                "  uncured (every step failed, or a step ended by budget or breaker_open): "
                f"one escalation via {_escalation_text(config)}"
            )
        lines += _fleet_lines(config, strategy, plan, context)
        lines.append(_repeat_line(strategy))
        if strategy.continue_matching:
            lines.append("  continue: true, later strategies are tried too")
    return "\n".join(lines)


def _escalation_text(config: Config) -> str:
    name = config.defaults.escalation_executor
    if name:
        return f"executor {name!r}"
    return "no executor (defaults.escalation_executor unset: journaled only)"


def _runbook_of(config: Config, plan: Plan) -> Strategy:
    """The configured strategy a plan was made for (a plan holds its step 1, which for a
    runbook is not the strategy itself). Strategy names are unique (config.py)."""
    return next(s for s in config.strategies if s.name == plan.strategy.name)


def _step_plans(strategy: Strategy, first: Plan, context: dict[str, Any]) -> list[Plan]:
    """Each step of a runbook rendered for the alert (step 1 as already planned)."""
    return [first] + [
        render_plan(strategy.step(index), context) for index in range(2, len(strategy.steps) + 1)
    ]


def _step_title(strategy: Strategy, index: int) -> str:
    name = strategy.step(index).step_name
    return f"{index} {name!r}" if name else str(index)


def _action_lines(config: Config, plan: Plan, indent: str, *, step: int = 0) -> list[str]:
    """One action (a strategy, or `step` (its 1-based index) of its runbook) as explain
    shows it."""
    strategy = plan.strategy
    executor = config.executors[strategy.executor]
    lines = [
        f"{indent}action:   {strategy.action} via executor {executor.name!r} ({executor.type})"
    ]
    if step:
        lines.append(f"{indent}wait:     {_wait_text(strategy.wait, step)}")
    if plan.refused:
        lines.append(f"{indent}REFUSED:  {plan.refused}")
        return lines
    if strategy.when is not None:
        lines.append(
            f"{indent}when:     {json.dumps(plan.params.get('when_query'))} (PromQL; false: "
            "the step is skipped and the next follows)"
        )
    lines.append(f"{indent}target:   {plan.target}")
    for key, value in plan.params.items():
        if value and key != "when_query":
            lines.append(f"{indent}{key + ':':<9} {json.dumps(value)}")
    lines.append(f"{indent}gates (in order):")
    lines += [f"{indent}  - {gate}" for gate in gates(config, strategy, plan.target)]
    return lines


def _wait_text(wait: float, step: int) -> str:
    if not wait:
        return "none"
    after = "the run starts" if step == 1 else "the step before ends"
    return f"{format_duration(wait)} after {after}"


def _repeat_line(strategy: Strategy) -> str:
    if strategy.repeat_after is None:
        return "  repeat_after: none (a cured run is not repeated)"
    budget = strategy.budget
    bound = f"; at most {budget.max_actions} runs" if budget else ""
    return (
        f"  repeat_after: {format_duration(strategy.repeat_after)}: a cured run starts again "
        f"if the incident still fires then{bound}"
    )


def _fleet_lines(
    config: Config, strategy: Strategy, plan: Plan, context: dict[str, Any]
) -> list[str]:
    """The strategy's fleet settings as explain shows them: the alert's fleet, its blast
    radius, its waves, the analysis with each metric's query rendered for the alert (as
    for its own target), the escalation window and the undo step."""
    fleet = strategy.fleet
    if fleet is None:
        return ["  fleet:    none (each target is acted on alone)"]
    settings, queries = fleet.settings, _fleet_queries(fleet, strategy, plan, context)
    lines = [
        f"  fleet:    {_fleet_key(fleet, plan, context)!r} (group_by: "
        f"{', '.join(settings.group_by)}); size: "
        + (
            f"PromQL {json.dumps(queries['size_query'])}"
            if fleet.size_query is not None
            else f"distinct targets of the fleet journaled within "
            f"{format_duration(fleet.size_window)}"
        ),
        "  max_in_flight: "
        + (
            f"{settings.max_in_flight} of the fleet size (rounded down, at least 1)"
            if settings.max_in_flight is not None
            else "none (no limit on the fleet's targets acted on at once)"
        ),
        *_progressive_lines(settings.progressive),
        *_analysis_lines(fleet, queries),
        f"  escalation_window: {format_duration(settings.escalation_window)} (the fleet's "
        "failures within it share one escalation)",
    ]
    if strategy.undo is not None:
        lines.append("  undo:     on the canaries when the analysis finds them worse:")
        lines += _action_lines(config, render_plan(strategy.undo, context), "    ")
    return lines


def _fleet_key(fleet: FleetConfig, plan: Plan, context: dict[str, Any]) -> str:
    return fleets.fleet_key(context["labels"], fleet.settings.group_by, plan.target)


def _progressive_lines(progressive: fleets.ProgressiveSettings | None) -> list[str]:
    if progressive is None:
        return ["  progressive: none (no waves: each target proceeds alone)"]
    stages = ", ".join(str(stage) for stage in progressive.stages)
    return [
        f"  progressive: a wave when at least {progressive.min_targets} incidents of the "
        f"fleet wait within {format_duration(progressive.gather)}; canary "
        f"{progressive.canary} first, then stages {stages} of the wave, each "
        f"{format_duration(progressive.pause)} after the analysis passed; "
        f"{progressive.max_failures} failed action(s) halt the wave"
    ]


def _analysis_lines(fleet: FleetConfig, queries: dict[str, Any]) -> list[str]:
    found = fleet.analysis
    if found is None:
        return ["  analysis: none (a stage follows when the previous one's actions verified)"]
    settings = found.settings
    lines = [
        f"  analysis: canaries against the baseline over {format_duration(found.interval)} "
        f"at {format_duration(found.step)} steps; passes at score {settings.pass_score:g} "
        f"(share of metrics passing); inconclusive: {settings.on_inconclusive}"
    ]
    for metric, query in zip(settings.metrics, queries["analysis"], strict=True):
        lines.append(
            f"    - {metric.name} ({metric.direction} is better, tolerance "
            f"{metric.tolerance * 100:g}%): {json.dumps(query)}"
        )
    return lines


def _fleet_queries(
    fleet: FleetConfig, strategy: Strategy, plan: Plan, context: dict[str, Any]
) -> dict[str, Any]:
    """The fleet's PromQL templates rendered for the alert, with its labels and target as
    a verify query is (plans.py); a template refused for this alert shows why."""
    variables = {**context, "target": plan.target}
    found: dict[str, Any] = {
        "size_query": _rendered(fleet.size_query, variables, strategy),
        "analysis": [],
    }
    if fleet.analysis is not None:
        found["analysis"] = [
            _rendered(query, variables, strategy) for query in fleet.analysis.queries
        ]
    return found


def _rendered(template: Template | None, variables: dict[str, Any], strategy: Strategy) -> Any:
    if template is None:
        return None
    try:
        return template.render(variables, strategy.safe_pattern)
    except (RenderError, UnsafeValueError) as exc:
        return f"refused: {exc}"


def gates(config: Config, strategy: Strategy, target: str) -> list[str]:
    """The safety checks this action would pass through, described for a person."""
    budget = strategy.budget
    described = [
        f"dry-run: {'yes, journal only' if strategy.dry_run else 'no'}",
        *_approval_gate(strategy),
        f"lock: one action at a time on target {target!r}",
        f"cooldown: {format_duration(strategy.cooldown)} per ({strategy.name}, {target})",
        "budget: "
        + (f"{budget.max_actions} per {format_duration(budget.window)}" if budget else "none"),
        f"concurrency: at most {config.defaults.max_concurrent_actions} actions at once",
        f"breaker: {breaker_text(strategy.breaker)}",
    ]
    described += [f"precondition: {p.describe()}" for p in strategy.preconditions]
    if strategy.verify:
        described.append(
            f"verify: PromQL true within {format_duration(strategy.verify.timeout)} "
            f"(polled every {format_duration(strategy.verify.interval)})"
        )
    return described


def breaker_text(breaker: BreakerSettings) -> str:
    """A breaker's settings for a person: `opens after 3 consecutive failures; half-open
    after 10m, 1 trial(s), closes after 1 success(es)` (and the failure-rate rule)."""
    rate = ""
    if breaker.failure_rate_threshold is not None:
        rate = (
            f" or failure rate >= {breaker.failure_rate_threshold:.0%} over "
            f"{format_duration(breaker.window)} (min {breaker.minimum_calls} calls)"
        )
    return (
        f"opens after {breaker.failure_threshold} consecutive failures{rate}; "
        f"half-open after {format_duration(breaker.recovery_timeout)}, "
        f"{breaker.half_open_max_calls} trial(s), closes after "
        f"{breaker.success_threshold} success(es)"
    )


def _approval_gate(strategy: Strategy) -> list[str]:
    if strategy.approval is None:
        return []
    return [
        f"approval: {strategy.approval.describe()}; announced as RemediationAwaitingApproval, "
        "decided by POST /api/v1/actions/<id>/approve or /deny"
    ]


def plan_json(config: Config, plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    """A matching strategy for `explain --json`: step 1's plan in the top-level fields
    (as for a strategy without steps), `steps` (each step rendered, with its index, name,
    wait in seconds and gates; a strategy without steps is its own one step) and
    `repeat_after` (seconds, or null)."""
    strategy = _runbook_of(config, plan)
    steps = [
        {"index": index, "name": step_plan.strategy.step_name, **_action_json(config, step_plan)}
        for index, step_plan in enumerate(_step_plans(strategy, plan, context), 1)
    ]
    return {
        "strategy": strategy.name,
        **_action_json(config, plan),
        "steps": steps,
        "repeat_after": strategy.repeat_after,
        "fleet": _fleet_json(config, strategy, plan, context),
    }


def _fleet_json(
    config: Config, strategy: Strategy, plan: Plan, context: dict[str, Any]
) -> dict[str, Any] | None:
    """The fleet of `explain --json`: null without one; else its key for the alert,
    group_by, max_in_flight (a count or "N%", or null), seconds for windows, the
    progressive settings (or null), the analysis with each metric's rendered query (or
    null) and the undo step rendered (or null)."""
    fleet = strategy.fleet
    if fleet is None:
        return None
    settings, queries = fleet.settings, _fleet_queries(fleet, strategy, plan, context)
    progressive = settings.progressive
    analysis = fleet.analysis
    undo = strategy.undo
    return {
        "key": _fleet_key(fleet, plan, context),
        "group_by": list(settings.group_by),
        "size_query": queries["size_query"],
        "size_window_seconds": fleet.size_window,
        "max_in_flight": _amount_json(settings.max_in_flight),
        "escalation_window_seconds": settings.escalation_window,
        "progressive": None
        if progressive is None
        else {
            "min_targets": progressive.min_targets,
            "gather_seconds": progressive.gather,
            "canary": _amount_json(progressive.canary),
            "stages": [_amount_json(stage) for stage in progressive.stages],
            "pause_seconds": progressive.pause,
            "max_failures": _amount_json(progressive.max_failures),
            "on_inconclusive": progressive.on_inconclusive,
        },
        "analysis": None
        if analysis is None
        else {
            **analysis.settings.to_dict(),
            "queries": queries["analysis"],
            "interval_seconds": analysis.interval,
            "step_seconds": analysis.step,
        },
        "undo": None if undo is None else _action_json(config, render_plan(undo, context)),
    }


def _amount_json(amount: Any) -> int | str | None:
    """A count as a number, a percentage as "N%" (as the config takes them)."""
    if amount is None:
        return None
    return str(amount) if amount.percent else int(amount.value)


def _action_json(config: Config, plan: Plan) -> dict[str, Any]:
    step = plan.strategy
    return {
        "action": step.action,
        "executor": step.executor,
        "target": plan.target,
        "rendered": plan.params,
        "refused": plan.refused,
        "wait_seconds": step.wait,
        "gates": [] if plan.refused else gates(config, step, plan.target),
    }


# ---------------------------------------------------------------- strategies as configured


@dataclass(frozen=True)
class StepFacts:
    """One action of a strategy as configured (templates unrendered): a runbook step
    (`index` 1-based, its `name`), or the strategy itself (index 1, no name). `what`
    is its command, request or parameters as configured; `wait` and `when` None when
    unset; `approval` the approval it waits for, or None."""

    index: int
    name: str | None
    action: str
    executor: str
    target: str
    what: str
    timeout: str
    wait: str | None
    when: str | None
    approval: str | None


@dataclass(frozen=True)
class StrategyFacts:
    """A configured strategy for the console's strategies page, every value a line of
    text for a person: matchers (Alertmanager syntax), `steps` (one for a strategy
    without `steps`), cooldown, breaker, budget, verify, approval, preconditions, fleet,
    repeat_after, the undo step, `continue` and dry-run."""

    name: str
    matchers: tuple[str, ...]
    steps: tuple[StepFacts, ...]
    cooldown: str
    breaker: str
    budget: str
    verify: str
    approval: str
    preconditions: tuple[str, ...]
    fleet: str
    repeat_after: str
    undo: StepFacts | None
    continue_matching: bool
    dry_run: bool


def strategy_facts(config: Config, strategy: Strategy) -> StrategyFacts:
    """What `strategy` does, as configured (the strategies page; explain renders it for
    one alert)."""
    verify = strategy.verify
    budget = strategy.budget
    steps = strategy.steps or (strategy,)
    return StrategyFacts(
        name=strategy.name,
        matchers=tuple(map(str, strategy.matchers)) or ("(none: every alert)",),
        steps=tuple(
            _step_facts(config, step, index if strategy.steps else 1)
            for index, step in enumerate(steps, 1)
        ),
        cooldown=f"{format_duration(strategy.cooldown)} per (strategy, target)",
        breaker=breaker_text(strategy.breaker),
        budget=f"{budget.max_actions} per {format_duration(budget.window)} per target"
        if budget
        else "none",
        verify=(
            f"PromQL {verify.query.source} true within {format_duration(verify.timeout)} "
            f"(polled every {format_duration(verify.interval)})"
            if verify
            else "none (an action that ends without error counts as a success)"
        ),
        approval=strategy.approval.describe() if strategy.approval else "not required",
        preconditions=tuple(p.describe() for p in strategy.preconditions),
        fleet=_fleet_summary(strategy.fleet),
        repeat_after=_repeat_line(strategy).split(": ", 1)[1],
        undo=None if strategy.undo is None else _step_facts(config, strategy.undo, 0),
        continue_matching=strategy.continue_matching,
        dry_run=strategy.dry_run,
    )


def _step_facts(config: Config, step: Strategy, index: int) -> StepFacts:
    executor = config.executors.get(step.executor)
    return StepFacts(
        index=index,
        name=step.step_name,
        action=step.action,
        executor=f"{step.executor} ({executor.type})" if executor else step.executor,
        target=step.target.source,
        what=_configured_what(step),
        timeout=format_duration(step.timeout),
        wait=format_duration(step.wait) if step.wait else None,
        when=step.when.source if step.when is not None else None,
        approval=step.approval.describe() if step.approval else None,
    )


def _configured_what(step: Strategy) -> str:
    """The command, request or parameters of a step as configured (templates as text)."""
    if step.command:
        return json.dumps([part.source for part in step.command])
    if step.request is not None:
        return f"{step.request.method} {step.request.url.source}"
    if step.scale is not None:
        source = step.scale.query.source if step.scale.query else step.scale.annotation
        return f"scale on {source}"
    if step.params:
        return json.dumps({key: value.source for key, value in step.params.items()})
    return f"{step.action} the target"


def _fleet_summary(fleet: FleetConfig | None) -> str:
    if fleet is None:
        return "none (each target is acted on alone)"
    settings = fleet.settings
    parts = [
        f"group_by {', '.join(settings.group_by)}",
        f"max_in_flight {settings.max_in_flight}"
        if settings.max_in_flight is not None
        else "no in-flight limit",
        _progressive_lines(settings.progressive)[0].strip().removeprefix("progressive: "),
    ]
    if fleet.analysis is not None:
        names = ", ".join(metric.name for metric in fleet.analysis.settings.metrics)
        parts.append(f"canary analysis of {names}")
    return "; ".join(parts)
