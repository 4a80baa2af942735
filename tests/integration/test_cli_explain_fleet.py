"""`remediator explain` on a strategy with a fleet (issue 15): the alert's fleet key, the
blast radius, the waves, the analysis metrics with their queries rendered for the alert,
the escalation window and the undo step; in text and in `--json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processes import checked_config, explain

FLEET = """
prometheus: {url: 'http://127.0.0.1:9090'}
defaults: {escalation_executor: logger}
executors:
  logger: {type: log, current_replicas: 3}
strategies:
  - name: restart-web
    matchers: ['alertname="HighErrorRatio"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet:
      group_by: [service, zone]
      size_query: 'count(up{service="{{ labels.service }}"})'
      max_in_flight: 10%
      escalation_window: 15m
      progressive:
        min_targets: 4
        gather: 45s
        canary: 2
        stages: [50%, 100%]
        pause: 2m
        max_failures: 20%
      analysis:
        metrics:
          - {name: error_ratio, query: 'err{instance="{{ labels.instance }}"}', tolerance: 0.1}
          - {name: rps, query: 'rps{instance="{{ target }}"}', direction: higher}
        interval: 3m
        step: 20s
        pass_score: 0.5
        on_inconclusive: proceed
    undo:
      action: scale
      target: '{{ labels.service }}'
      scale: {target_value: 1, query: 'sum(load{service="{{ labels.service }}"})'}
  - name: plain
    matchers: ['alertname="Plain"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
  - name: fix-runbook
    matchers: ['alertname="Runbook"']
    target: '{{ labels.instance }}'
    fleet: {max_in_flight: 2, size_window: 30m}
    steps:
      - {name: first, action: restart, executor: logger}
      - {name: second, action: run, executor: logger}
"""
LABELS = ["alertname=HighErrorRatio", "service=web", "zone=eu-1", "instance=web-3:8080"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return checked_config(tmp_path / "fleet.yml", FLEET)


def lines_after(text: str, start: str) -> list[str]:
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    return lines[first:]


def test_explain_shows_the_fleet_of_the_alert_and_its_settings(config: Path):
    out = explain(config, *LABELS).stdout
    fleet = lines_after(out, "  fleet:")

    assert fleet[0] == (
        "  fleet:    'service=web,zone=eu-1' (group_by: service, zone); size: PromQL "
        '"count(up{service=\\"web\\"})"'
    )
    assert fleet[1] == "  max_in_flight: 10% of the fleet size (rounded down, at least 1)"
    assert fleet[2] == (
        "  progressive: a wave when at least 4 incidents of the fleet wait within 45s; "
        "canary 2 first, then stages 50%, 100% of the wave, each 2m after the analysis "
        "passed; 20% failed action(s) halt the wave"
    )
    assert fleet[3] == (
        "  analysis: canaries against the baseline over 3m at 20s steps; passes at score "
        "0.5 (share of metrics passing); inconclusive: proceed"
    )
    assert fleet[4] == (
        '    - error_ratio (lower is better, tolerance 10%): "err{instance=\\"web-3:8080\\"}"'
    )
    assert (
        fleet[5] == '    - rps (higher is better, tolerance 0%): "rps{instance=\\"web-3:8080\\"}"'
    )
    assert fleet[6] == (
        "  escalation_window: 15m (the fleet's failures within it share one escalation)"
    )


def test_explain_shows_the_undo_step_rendered(config: Path):
    out = explain(config, *LABELS).stdout
    undo = lines_after(out, "  undo:")

    assert undo[0] == "  undo:     on the canaries when the analysis finds them worse:"
    assert undo[1] == "    action:   scale via executor 'logger' (log)"
    assert undo[2] == "    target:   web"
    assert 'scale_query: "sum(load{service=\\"web\\"})"' in out
    assert "      - cooldown: 5m per (restart-web, web)" in undo


def test_a_target_whose_labels_name_no_fleet_is_a_fleet_of_its_own(config: Path):
    out = explain(config, "alertname=HighErrorRatio", "instance=db-1").stdout

    assert "  fleet:    'target:db-1' (group_by: service, zone)" in out


def test_an_unsafe_label_refuses_the_analysis_query_it_lands_in(config: Path):
    labels = ["alertname=HighErrorRatio", "service=web", 'instance=x"} or vector(1)']
    out = explain(config, *labels).stdout

    [metric] = [line for line in out.splitlines() if line.startswith("    - error_ratio")]
    shown = json.loads(metric.split(": ", 1)[1])  # the query as explain quotes it
    assert shown.startswith(
        "refused: interpolated value 'x\"} or vector(1)' does not match the safe pattern"
    )


def test_a_strategy_without_fleet_says_so(config: Path):
    out = explain(config, "alertname=Plain", "instance=web-1").stdout

    assert "  fleet:    none (each target is acted on alone)" in out
    assert "progressive" not in out


def test_a_runbook_shows_its_fleet_once_after_its_steps(config: Path):
    out = explain(config, "alertname=Runbook", "service=api", "instance=api-2").stdout
    lines = out.splitlines()

    assert out.count("  fleet:") == 1
    fleet = lines.index(
        "  fleet:    'api' (group_by: service); size: distinct targets of the "
        "fleet journaled within 30m"
    )
    assert fleet > lines.index("  step 2 'second':")
    assert lines[fleet + 1] == "  max_in_flight: 2 of the fleet size (rounded down, at least 1)"
    assert lines[fleet + 2] == "  progressive: none (no waves: each target proceeds alone)"
    assert lines[fleet + 3].startswith("  analysis: none")
    assert "undo:" not in out


def test_explain_json_has_the_fleet(config: Path):
    [plan] = json.loads(explain(config, "--json", *LABELS).stdout)
    fleet = plan["fleet"]

    assert fleet["key"] == "service=web,zone=eu-1"
    assert fleet["group_by"] == ["service", "zone"]
    assert fleet["size_query"] == 'count(up{service="web"})'
    assert fleet["size_window_seconds"] == 3600
    assert fleet["max_in_flight"] == "10%"
    assert fleet["escalation_window_seconds"] == 15 * 60
    assert fleet["progressive"] == {
        "min_targets": 4,
        "gather_seconds": 45,
        "canary": 2,
        "stages": ["50%", "100%"],
        "pause_seconds": 120,
        "max_failures": "20%",
        "on_inconclusive": "proceed",
    }
    assert fleet["analysis"]["queries"] == [
        'err{instance="web-3:8080"}',
        'rps{instance="web-3:8080"}',
    ]
    assert [m["name"] for m in fleet["analysis"]["metrics"]] == ["error_ratio", "rps"]
    assert (fleet["analysis"]["interval_seconds"], fleet["analysis"]["step_seconds"]) == (180, 20)
    assert fleet["analysis"]["pass_score"] == 0.5
    assert (fleet["undo"]["action"], fleet["undo"]["target"]) == ("scale", "web")


def test_explain_json_fleet_is_null_without_one(config: Path):
    [plan] = json.loads(explain(config, "--json", "alertname=Plain", "instance=web-1").stdout)

    assert plan["fleet"] is None
