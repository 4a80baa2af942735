"""explain.py: the console form's label lines, the imaginary alert, the explanation's
text and JSON for one alert, and a strategy described as configured."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from receiver import explain
from receiver.alerts import fingerprint_of
from receiver.config import parse_config
from receiver.matchers import MatcherError

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CONFIG = """
defaults: {escalation_executor: logger}
executors:
  logger: {type: log}
  local: {type: command}
strategies:
  - name: careful-restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    cooldown: 7m
    budget: {max_actions: 3, window: 1h}
    breaker: {failure_threshold: 2, recovery_timeout: 20m, failure_rate_threshold: 0.5}
    approval: {timeout: 10m}
  - name: fix-disk
    matchers: ['alertname="DiskFull"']
    target: '{{ labels.instance }}'
    repeat_after: 30m
    budget: {max_actions: 2, window: 2h}
    steps:
      - name: clean
        action: run
        executor: local
        command: ['/bin/clean', '{{ labels.instance }}']
      - {action: escalate, executor: logger, wait: 1m}
"""


@pytest.fixture(scope="module")
def config():
    return parse_config(CONFIG)


# ---------------------------------------------------------------- label lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alertname=ServiceDown\nservice=web", {"alertname": "ServiceDown", "service": "web"}),
        ("alertname=A\r\nservice=web\r\n", {"alertname": "A", "service": "web"}),
        ("\n  \nservice=web\n\n", {"service": "web"}),
        ("  service = web  ", {"service": "web"}),
        ("service=web\nservice=api", {"service": "api"}),  # a later line wins
        ("url=http://x/?a=b", {"url": "http://x/?a=b"}),  # the first = splits
        ("k8s.pod.name=cart-1", {"k8s.pod.name": "cart-1"}),  # UTF-8 names
        ("empty=", {"empty": ""}),
        ("", {}),
    ],
)
def test_label_lines_are_name_value_pairs(text, expected):
    assert explain.parse_label_lines(text) == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [("service=web\nno equals", 2), ("=value", 1), ("a=1\n\n  = x", 3)],
)
def test_a_bad_line_is_named_by_its_number(text, line):
    with pytest.raises(MatcherError, match=f"^line {line}: expected NAME=VALUE"):
        explain.parse_label_lines(text)


def test_the_error_names_what_the_lines_are():
    with pytest.raises(MatcherError, match="annotation name"):
        explain.parse_label_lines("oops", "annotation")


def test_too_many_lines_or_characters_are_refused():
    lines = "\n".join(f"l{n}=v" for n in range(explain.MAX_LINES + 1))
    with pytest.raises(MatcherError, match=f"at most {explain.MAX_LINES}"):
        explain.parse_label_lines(lines)
    blank_padded = "\n" * (explain.MAX_LINES * 2) + "a=b"
    assert explain.parse_label_lines(blank_padded) == {"a": "b"}  # blank lines do not count
    with pytest.raises(MatcherError, match=f"at most {explain.MAX_CHARS} characters"):
        explain.parse_label_lines("a=" + "x" * explain.MAX_CHARS)


# ---------------------------------------------------------------- explanation


def test_the_alert_fires_since_now_with_alertmanagers_fingerprint():
    labels = {"alertname": "ServiceDown", "service": "web"}
    alert = explain.firing_alert(labels, {"summary": "down"}, NOW)
    assert alert.status == "firing" and alert.starts_at == NOW and alert.ends_at is None
    assert alert.fingerprint == fingerprint_of(labels)
    assert alert.annotations == {"summary": "down"}


def test_the_text_names_each_match_its_target_and_gates(config):
    labels = {"alertname": "ServiceDown", "service": "web"}
    text = explain.explain(config, labels, {}, NOW).text()
    lines = text.splitlines()
    assert lines[0] == "alert: alertname='ServiceDown' service='web'"
    assert lines[1] == "service: web"
    assert "match 1: strategy 'careful-restart'" in lines
    assert "  target:   web" in lines
    assert "    - cooldown: 7m per (careful-restart, web)" in lines
    assert "    - budget: 3 per 1h" in lines
    assert any(line.startswith("    - approval: waits up to 10m for a person") for line in lines)


def test_an_unmatched_alert_says_so(config):
    text = explain.explain(config, {"alertname": "Other"}, {}, NOW).text()
    assert text.splitlines()[-1].startswith("no strategy matches")


def test_the_json_has_one_object_per_match_with_each_step_rendered(config):
    found = explain.explain(config, {"alertname": "DiskFull", "instance": "db-1"}, {}, NOW)
    (plan,) = found.as_json()
    assert plan["strategy"] == "fix-disk" and plan["target"] == "db-1"
    assert [step["index"] for step in plan["steps"]] == [1, 2]
    assert plan["steps"][0]["rendered"]["command"] == ["/bin/clean", "db-1"]
    assert plan["steps"][1]["wait_seconds"] == 60.0
    assert plan["repeat_after"] == 30 * 60.0
    json.dumps(found.as_json())  # plain JSON types only


def test_the_gates_breaker_line_is_breaker_text(config):
    strategy = config.strategies[0]
    (line,) = [g for g in explain.gates(config, strategy, "web") if g.startswith("breaker:")]
    assert line == f"breaker: {explain.breaker_text(strategy.breaker)}"
    assert explain.breaker_text(strategy.breaker) == (
        "opens after 2 consecutive failures or failure rate >= 50% over 10m (min 5 calls); "
        "half-open after 20m, 1 trial(s), closes after 1 success(es)"
    )


# ---------------------------------------------------------------- as configured


def test_a_strategy_without_steps_is_its_own_one_step(config):
    facts = explain.strategy_facts(config, config.strategies[0])
    assert facts.matchers == ('alertname="ServiceDown"',)
    (step,) = facts.steps
    assert (step.index, step.name, step.action) == (1, None, "restart")
    assert step.executor == "logger (log)"
    assert step.target == "{{ labels.service }}"
    assert facts.cooldown == "7m per (strategy, target)"
    assert facts.budget == "3 per 1h per target"
    assert facts.approval == "waits up to 10m for a person, then skipped"
    assert facts.verify.startswith("none")
    assert facts.fleet.startswith("none")


def test_a_runbook_lists_its_steps_as_configured(config):
    facts = explain.strategy_facts(config, config.strategies[1])
    first, second = facts.steps
    assert (first.index, first.name, first.what) == (
        1,
        "clean",
        '["/bin/clean", "{{ labels.instance }}"]',
    )
    assert first.executor == "local (command)" and first.wait is None
    assert (second.index, second.action, second.wait) == (2, "escalate", "1m")
    assert facts.repeat_after.startswith("30m")
    assert facts.approval == "not required"
