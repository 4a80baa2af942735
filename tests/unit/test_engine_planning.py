"""Planning: route an alert and render each strategy's target and parameters (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from receiver.alerts import Alert, parse_alert
from receiver.config import parse_config
from receiver.plans import Plan, plan_for, render_plan
from receiver.templates import compile_pattern, compile_template

CONFIG = parse_config(
    """\
prometheus: {url: http://127.0.0.1:9090}
executors:
  local: {type: command}
  web: {type: http}
  procs: {type: supervisor, url: http://127.0.0.1:9001/RPC2}
strategies:
  - name: restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: procs
    target: '{{ labels.service }}'
    verify: {query: 'min(up{service="{{ target }}"}) == 1'}
    continue: true
  - name: notify
    matchers: ['alertname=~"Service.*"']
    action: http
    executor: web
    target: '{{ labels.service }}'
    params: {reason: '{{ labels.alertname }}'}
    request:
      url: 'http://hooks.local/{{ target }}/restart?force=1&by=remediator'
      headers: {X-Alert: '{{ params.reason }}'}
      body: {text: '{{ annotations.summary }}', tries: 2, tags: ['{{ labels.severity }}']}
  - name: clean-disk
    matchers: ['alertname="DiskFilling"']
    action: run
    executor: local
    target: '{{ labels.instance }}'
    command: ['/usr/local/bin/clean-tmp', '--host', '{{ target }}', '/mnt/{{ labels.disk }}']
  - name: scale-web
    matchers: ['alertname="HighLoad"']
    action: scale
    executor: procs
    target: '{{ labels.service }}'
    scale: {target_value: 0.7, query: 'avg(load{service="{{ target }}"})'}
    preconditions:
      - query: 'sum(up{service="{{ target }}"}) > 0'
"""
)


def alert(annotations: dict[str, str] | None = None, **labels: str) -> Alert:
    return parse_alert(
        {
            "status": "firing",
            "labels": labels,
            "annotations": annotations or {},
            "startsAt": "2024-03-01T12:00:00Z",
        },
        0,
    )


def plans(**labels: str) -> list[Plan]:
    return plan_for(CONFIG, alert(**labels))


def test_target_and_verify_query_are_rendered() -> None:
    plan = plans(alertname="ServiceDown", service="web")[0]
    assert plan.strategy.name == "restart"
    assert plan.target == "web"
    assert plan.refused is None
    assert plan.params == {"params": {}, "verify_query": 'min(up{service="web"}) == 1'}


def test_continue_yields_two_plans() -> None:
    found = plan_for(
        CONFIG,
        alert({"summary": "web is down"}, alertname="ServiceDown", service="web", severity="page"),
    )
    assert [p.strategy.name for p in found] == ["restart", "notify"]
    assert [p.target for p in found] == ["web", "web"]
    assert all(p.refused is None for p in found)


def test_request_is_rendered_into_params() -> None:
    labels = {"alertname": "ServiceSlow", "service": "api", "severity": "page"}
    (plan,) = plan_for(CONFIG, alert({"summary": "p99 > 2s; check the DB"}, **labels))
    assert plan.strategy.name == "notify"
    assert plan.params == {
        "params": {"reason": "ServiceSlow"},
        "request": {
            "method": "POST",
            "url": "http://hooks.local/api/restart?force=1&by=remediator",
            "headers": {"X-Alert": "ServiceSlow"},
            # the body is data, not a command: free text is allowed there
            "body": {"text": "p99 > 2s; check the DB", "tries": 2, "tags": ["page"]},
        },
    }


def test_command_is_rendered_into_params() -> None:
    (plan,) = plans(alertname="DiskFilling", instance="db-1:9100", disk="sdb1")
    assert plan.target == "db-1:9100"
    assert plan.params == {
        "params": {},
        "command": ["/usr/local/bin/clean-tmp", "--host", "db-1:9100", "/mnt/sdb1"],
    }


def test_scale_and_precondition_queries_are_rendered() -> None:
    (plan,) = plans(alertname="HighLoad", service="web")
    assert plan.params == {
        "params": {},
        "scale_query": 'avg(load{service="web"})',
        "precondition_queries": ['sum(up{service="web"}) > 0'],
    }


@pytest.mark.parametrize("service", ["web; rm -rf /", "$(id)", "../etc", "web\n", "-rf", ""])
def test_unsafe_target_label_is_refused(service: str) -> None:
    found = plans(alertname="ServiceDown", service=service)
    assert [p.strategy.name for p in found] == ["restart", "notify"]
    for plan in found:
        assert plan.refused is not None
        assert plan.refused.startswith("refused: ")
        assert "does not match the safe pattern" in plan.refused
        assert (plan.target, plan.params) == ("", {})


def test_unsafe_label_in_a_command_argument_is_refused() -> None:
    (plan,) = plans(alertname="DiskFilling", instance="db-1", disk="../../etc")
    assert plan.refused is not None
    assert plan.refused.startswith("refused: interpolated value '../../etc' does not match")
    assert (plan.target, plan.params) == ("db-1", {})  # where it was refused, nothing else


def test_whole_rendered_target_is_checked() -> None:
    """Unlike other params, the target is checked as a whole, literal text included."""
    strategy = replace(CONFIG.strategies[0], target=compile_template("{{ labels.service }} now"))
    plan = render_plan(strategy, {"labels": {"service": "web"}})
    assert plan.refused is not None
    assert plan.refused.startswith("refused: target 'web now' does not match the safe pattern")
    assert plan.target == ""


def test_missing_label_is_refused_not_raised() -> None:
    (plan,) = plans(alertname="DiskFilling", instance="db-1")
    assert plan.refused is not None
    assert plan.refused.startswith("refused: template '/mnt/{{ labels.disk }}'")
    assert "has no attribute 'disk'" in plan.refused


def test_no_matching_strategy_yields_no_plans() -> None:
    assert plans(alertname="Watchdog") == []


def test_render_plan_with_a_custom_context() -> None:
    strategy = CONFIG.strategies[2]
    context: dict[str, Any] = {"labels": {"instance": "host-7", "disk": "nvme0"}}
    plan = render_plan(strategy, context)
    assert plan == Plan(
        strategy,
        "host-7",
        {"params": {}, "command": ["/usr/local/bin/clean-tmp", "--host", "host-7", "/mnt/nvme0"]},
    )


def test_strategy_safe_pattern_applies_to_target_and_arguments() -> None:
    strategy = replace(CONFIG.strategies[2], safe_pattern=compile_pattern(r"[a-z0-9-]+"))
    ok = render_plan(strategy, {"labels": {"instance": "db-1", "disk": "sdb"}})
    assert (ok.target, ok.refused) == ("db-1", None)
    refused = render_plan(strategy, {"labels": {"instance": "db-1:9100", "disk": "sdb"}})
    assert refused.refused is not None and refused.refused.startswith("refused: ")
