"""`remediator explain` on a runbook: every step rendered for the alert, with its wait,
its `when` query, its verification and its gates, and the runbook's repeat_after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, checked_config, explain

RUNBOOK = """
prometheus: {url: 'http://127.0.0.1:9090'}
defaults:
  escalation_executor: logger
  budget: {max_actions: 3, window: 1h}
executors:
  logger: {type: log}
  local: {type: command}
strategies:
  - name: fix-web
    matchers: ['alertname="ServiceDown"']
    target: '{{ labels.service }}'
    repeat_after: 10m
    steps:
      - name: restart
        action: restart
        executor: logger
        verify: {query: 'up{service="{{ labels.service }}"} == 1', timeout: 30s}
      - name: clean
        action: run
        executor: local
        wait: 30s
        cooldown: 7m
        when: 'disk_free{service="{{ labels.service }}"} < 0.1'
        command: ['/usr/local/bin/clean', '--service', '{{ labels.service }}', '{{ labels.disk }}']
      - action: escalate
        executor: logger
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return checked_config(tmp_path / "runbook.yml", RUNBOOK)


def section(text: str, start: str, end: str) -> str:
    """The lines of `text` from the one starting `start` up to the one starting `end`."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i, line in enumerate(lines) if i > first and line.startswith(end))
    return "\n".join(lines[first:last])


def test_explain_shows_each_step_rendered_with_its_gates(config: Path):
    out = explain(config, "alertname=ServiceDown", "service=web", "disk=sda").stdout

    assert "match 1: strategy 'fix-web'" in out
    assert "  runbook:  3 steps" in out
    first = section(out, "  step 1 'restart':", "  step 2")
    assert "action:   restart via executor 'logger' (log)" in first
    assert "wait:     none" in first
    assert "target:   web" in first
    assert 'verify_query: "up{service=\\"web\\"} == 1"' in first
    assert "- verify: PromQL true within 30s" in first
    assert "- cooldown: 5m per (fix-web, web)" in first  # the default
    second = section(out, "  step 2 'clean':", "  step 3")
    assert "action:   run via executor 'local' (command)" in second
    assert "wait:     30s after the step before ends" in second
    assert 'when:     "disk_free{service=\\"web\\"} < 0.1"' in second
    assert 'command:  ["/usr/local/bin/clean", "--service", "web", "sda"]' in second
    assert "- cooldown: 7m per (fix-web, web)" in second  # the step's own
    assert "- budget: 3 per 1h" in second
    assert "verify" not in second
    third = section(out, "  step 3:", "  uncured")
    assert "action:   escalate via executor 'logger' (log)" in third
    assert "one escalation via executor 'logger'" in out
    assert "repeat_after: 10m: a cured run starts again if the incident still fires" in out
    assert "at most 3 runs" in out


def test_explain_refuses_an_unsafe_step_alone(config: Path):
    """A value that is unsafe in one step's command refuses that step; the others show."""
    out = explain(config, "alertname=ServiceDown", "service=web", "disk=$(reboot)").stdout
    assert "REFUSED:  refused: interpolated value '$(reboot)'" in section(
        out, "  step 2 'clean':", "  step 3"
    )
    assert out.count("REFUSED") == 1
    assert out.count("gates (in order)") == 2  # steps 1 and 3


def test_explain_json_lists_the_steps(config: Path):
    [plan] = json.loads(
        explain(config, "--json", "alertname=ServiceDown", "service=web", "disk=sda").stdout
    )

    assert plan["strategy"] == "fix-web"
    assert (plan["action"], plan["target"]) == ("restart", "web")  # step 1, as before
    assert plan["repeat_after"] == 600
    steps = plan["steps"]
    assert [(s["index"], s["name"], s["action"]) for s in steps] == [
        (1, "restart", "restart"),
        (2, "clean", "run"),
        (3, None, "escalate"),
    ]
    assert steps[1]["wait_seconds"] == 30
    assert steps[1]["rendered"]["when_query"] == 'disk_free{service="web"} < 0.1'
    assert steps[1]["rendered"]["command"] == ["/usr/local/bin/clean", "--service", "web", "sda"]
    assert any(g.startswith("cooldown: 7m") for g in steps[1]["gates"])


def test_strategy_without_steps_is_its_own_single_step(tmp_path: Path):
    path = tmp_path / "one.yml"
    path.write_text(
        "executors: {logger: {type: log}}\n"
        "strategies:\n"
        "  - {name: one, matchers: ['alertname=\"A\"'], action: restart, executor: logger,"
        " target: '{{ labels.service }}'}\n"
    )
    text = explain(path, "alertname=A", "service=web").stdout
    assert "step 1" not in text and "runbook:" not in text
    assert "  action:   restart via executor 'logger' (log)" in text
    assert "repeat_after: none" in text
    [plan] = json.loads(explain(path, "--json", "alertname=A", "service=web").stdout)
    assert [s["index"] for s in plan["steps"]] == [1]
    assert plan["steps"][0]["target"] == plan["target"] == "web"
    assert plan["repeat_after"] is None


def test_a_strategy_without_steps_says_where_its_failure_escalates(tmp_path: Path):
    path = tmp_path / "one.yml"
    path.write_text(
        "alertmanager: {url: 'http://127.0.0.1:9093'}\n"
        "defaults: {escalation_executor: am}\n"
        "executors: {logger: {type: log}, am: {type: alertmanager}}\n"
        "strategies:\n"
        "  - {name: one, matchers: ['alertname=\"A\"'], action: restart, executor: logger,"
        " target: '{{ labels.service }}'}\n"
    )
    text = explain(path, "alertname=A", "service=web").stdout
    assert "  failed:   one escalation via executor 'am'" in text


def test_explain_into_a_closed_pipe_ends_quietly(config: Path):
    """`remediator explain ... | head -1`: the reader leaves early; no traceback."""
    labels = ["alertname=ServiceDown", "service=web", "disk=sda"]
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "explain", "--config", str(config), *labels],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before a single line is read
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
