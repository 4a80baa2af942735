"""What a strategy would do for one alert, rendered (pure).

Labels in, rendered plans out: `engine.ingest` plans a runbook's first step with these,
`runs.py` each later step (from the incident as journaled), and `remediator explain`
shows them. Every value rendered into a command argument, URL or resource name is
checked against the strategy's safe pattern (templates.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.alerts import Alert
from receiver.config import Config, Precondition, Strategy
from receiver.matchers import Matcher, route
from receiver.templates import RenderError, Template, UnsafeValueError, check_safe


@dataclass(frozen=True)
class Plan:
    """What a strategy would do for one alert, rendered; `refused` says why it won't."""

    strategy: Strategy
    target: str
    params: dict[str, Any]
    refused: str | None = None


def plan_for(config: Config, alert: Alert) -> list[Plan]:
    """Route an alert to its strategies and render the first step of each one's runbook
    (for a strategy without steps, the strategy itself)."""
    context = alert.template_context()
    return [render_plan(s.step(1), context) for s in route(config.strategies, alert.labels)]


def render_plan(strategy: Strategy, context: dict[str, Any]) -> Plan:
    """The strategy's target and parameters rendered for one alert, or a refused plan
    saying why (a template error, an unsafe value). A refused plan keeps its target
    when the target itself rendered safely, so the journal says where it was refused."""
    safe_target = ""
    try:
        rendered = _render(strategy.target, context, strategy)
        target = (
            rendered  # held to the pattern whole as it rendered: no second check
            if strategy.target.checks_whole
            else check_safe(rendered, strategy.safe_pattern, "target")
        )
        if "\x00" in target:  # even a permissive pattern: the journal's column refuses it
            raise UnsafeValueError(f"target {target[:80]!r} contains a NUL character")
        safe_target = target
        params = _render_params(strategy, {**context, "target": target})
    except (RenderError, UnsafeValueError) as exc:
        reason = f"refused: {exc}".replace("\x00", "\\x00")  # the reason is a column too
        return Plan(strategy, safe_target, {}, refused=reason)
    return Plan(strategy, target, params)


#: the parts (templates.py) of a template that is `{{ target }}` and nothing else
_TARGET_ONLY = (("target",),)


def _render(template: Template, context: dict[str, Any], strategy: Strategy) -> str:
    if template.parts == _TARGET_ONLY and "target" in context:
        # The commonest argument (a parameter's context has the target): the target as
        # rendered, which was held whole to this same safe pattern then; checking it
        # again would cost more than all the rest of rendering it.
        return context["target"]  # type: ignore[no-any-return]
    return template.render(context, strategy.safe_pattern)


def _render_params(strategy: Strategy, context: dict[str, Any]) -> dict[str, Any]:
    """Render everything an executor will need now, while the alert is at hand, so the
    journal shows exactly what will be run and the dispatcher never re-reads labels."""
    params = {name: _render(t, context, strategy) for name, t in strategy.params.items()}
    context = {**context, "params": params}
    rendered: dict[str, Any] = {"params": params}
    if strategy.command:
        rendered["command"] = [_render(arg, context, strategy) for arg in strategy.command]
    if strategy.request:
        request = strategy.request
        rendered["request"] = {
            "method": request.method,
            "url": _render(request.url, context, strategy),
            "headers": {k: _render(v, context, strategy) for k, v in request.headers.items()},
            "body": _render_body(request.body, context, strategy),
        }
    if strategy.when is not None:
        rendered["when_query"] = _render(strategy.when, context, strategy)
    if strategy.verify:
        rendered["verify_query"] = _render(strategy.verify.query, context, strategy)
    if strategy.scale and strategy.scale.query:
        rendered["scale_query"] = _render(strategy.scale.query, context, strategy)
    queries = [_render(p.query, context, strategy) for p in strategy.preconditions if p.query]
    if queries:
        rendered["precondition_queries"] = queries
    silencing = [_render_matchers(p, context, strategy) for p in strategy.preconditions]
    if any(silencing):
        rendered["precondition_alerts"] = [m for m in silencing if m]
    return rendered


def _render_matchers(
    precondition: Precondition, context: dict[str, Any], strategy: Strategy
) -> list[str]:
    """`alert_not_firing` matcher values may name the alert's own labels."""
    return [
        str(Matcher(m.name, m.op, _render(template, context, strategy)))
        for m, template in zip(
            precondition.alert_not_firing, precondition.value_templates, strict=True
        )
    ]


def _render_body(body: Any, context: dict[str, Any], strategy: Strategy) -> Any:
    if isinstance(body, Template):
        return _render(body, context, strategy)
    if isinstance(body, dict):
        return {k: _render_body(v, context, strategy) for k, v in body.items()}
    if isinstance(body, list):
        return [_render_body(v, context, strategy) for v in body]
    return body


def incident_context(
    labels: dict[str, str],
    annotations: dict[str, str],
    fingerprint: str,
    starts_at: str,
    generator_url: str,
) -> dict[str, Any]:
    """The template context of a journaled firing incident: what `Alert.template_context`
    gives for the alert that opened it (a later step renders from this)."""
    return {
        "labels": dict(labels),
        "annotations": dict(annotations),
        "alert": {
            "status": "firing",
            "fingerprint": fingerprint,
            "starts_at": starts_at,
            "generator_url": generator_url,
        },
    }
