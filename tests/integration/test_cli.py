"""The `remediator` console script as a user runs it: check and explain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from receiver import config as config_module
from receiver.yamlsource import load_yaml
from tests.support.processes import REPO, run_cli

EXAMPLE = REPO / "examples" / "remediation.yml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args)


def test_check_accepts_the_shipped_example():
    result = cli("check", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK (8 strategies, 6 executors)" in result.stdout


def test_check_names_problem_and_line(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text("defaults:\n  cooldown: 5 minutes\nexecutors: {x: {type: log}}\n")
    result = cli("check", "--config", str(bad))
    assert result.returncode == 1
    assert "defaults.cooldown (line 2): invalid duration '5 minutes'" in result.stderr


def test_check_reports_yaml_syntax_line(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text("strategies:\n  - name: a\n    matchers: [unclosed\n")
    result = cli("check", "--config", str(bad))
    assert result.returncode == 1
    assert "invalid YAML" in result.stderr and "line" in result.stderr


def _keys(node: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(f"{prefix}{key}")
            found |= _keys(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for item in node:
            found |= _keys(item, prefix + "[].")
    return found


def test_example_covers_every_config_key():
    keys = _keys(load_yaml(EXAMPLE.read_text()))
    stripped = {k.rsplit(".", 1)[-1] for k in keys}
    expected = (
        config_module._TOP_KEYS
        | config_module._DEFAULT_KEYS
        | config_module._STRATEGY_KEYS
        | set(config_module._BREAKER_KEYS)
        | {key for settings in config_module._EXECUTOR_SETTINGS.values() for key in settings}
        | {"listen", "auth", "max_body_bytes", "threads", "bearer_token_file", "url", "timeout"}
        | {"external_url"}
        | {"method", "headers", "body", "query", "interval", "alert_not_firing"}
        | {"target_value", "min_replicas", "max_replicas", "tolerance", "scale_up_limit"}
        | {"scale_up_period", "stabilization_window", "max_actions", "window"}
        | config_module._STEP_KEYS
        | config_module._FLEET_KEYS
        | config_module._PROGRESSIVE_KEYS
        | config_module._ANALYSIS_KEYS
        | config_module._METRIC_KEYS
    )
    missing = expected - stripped
    assert not missing, f"examples/remediation.yml lacks: {sorted(missing)}"
    types = {spec["type"] for spec in load_yaml(EXAMPLE.read_text())["executors"].values()}
    assert types == set(config_module.EXECUTOR_TYPES)
    strategies = load_yaml(EXAMPLE.read_text())["strategies"]
    actions = {s["action"] for s in strategies if "action" in s}
    assert actions >= {"restart", "scale", "rollback", "run", "escalate"}
    # a runbook, whose steps between them use every key a step may have
    runbooks = [s for s in strategies if "steps" in s]
    assert runbooks and all("action" not in s for s in runbooks)
    step_keys = {key for s in runbooks for step in s["steps"] for key in step}
    assert step_keys == config_module._STEP_KEYS
    assert any("repeat_after" in s for s in runbooks)


def test_explain_shows_strategy_target_params_and_gates():
    result = cli(
        "explain",
        "--config",
        str(EXAMPLE),
        "alertname=ServiceDown",
        "severity=page",
        "service=checkout",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "match 1: strategy 'restart-when-down'" in out
    assert "target:   checkout" in out
    assert 'min(up{service=\\"checkout\\"}) == 1' in out
    assert "cooldown: 2m per (restart-when-down, checkout)" in out
    assert "breaker: opens after 2 consecutive failures" in out


def test_explain_json_and_no_match_and_refusal():
    matched = cli(
        "explain", "--config", str(EXAMPLE), "--json", "alertname=DiskFilling", "instance=db-1"
    )
    plans = json.loads(matched.stdout)
    assert [p["strategy"] for p in plans] == ["clean-tmp", "page-a-person"]
    assert plans[0]["rendered"]["command"] == ["/usr/local/bin/clean-tmp", "--host", "db-1"]

    none = cli("explain", "--config", str(EXAMPLE), "alertname=Unknown")
    assert "no strategy matches" in none.stdout

    hostile = cli(
        "explain",
        "--config",
        str(EXAMPLE),
        "alertname=ServiceDown",
        "severity=page",
        "service=$(reboot)",
    )
    assert "REFUSED:  refused: interpolated value '$(reboot)'" in hostile.stdout

    bad_label = cli("explain", "--config", str(EXAMPLE), "not a label")
    assert bad_label.returncode == 2


# ---------------------------------------------------------------- issue 13: check


def test_check_lists_every_problem_of_the_issue_at_once(tmp_path: Path):
    """A duplicate name next to another error, scale on a command executor: one pass."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "executors: {note: {type: log}, sh: {type: command}}\n"
        "strategies:\n"
        "  - {name: a, matchers: [], action: restart, executor: note, target: t}\n"
        "  - {name: a, matchers: [], action: restart, executor: note, target: t, cooldown: 5}\n"
        "  - {name: s, matchers: [], action: scale, executor: sh, target: t}\n"
    )
    result = cli("check", "--config", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{bad}: invalid configuration:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  strategies[1].cooldown (line 4)",
        "  strategies[1].name (line 4)",
        "  strategies[2].action (line 5)",
        "  strategies[2].scale (line 5)",
    ]
    assert lines[2] == "  strategies[1].name (line 4): duplicate name 'a'"
    assert lines[3] == (
        "  strategies[2].action (line 5): a command executor cannot scale; it supports "
        "restart, rollback, run"
    )
    assert lines[4] == "  strategies[2].scale (line 5): required for action 'scale'"


def test_check_of_an_empty_config_passes_with_warnings_of_what_it_does_not_do(tmp_path: Path):
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    result = cli("check", "--config", str(empty))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{empty}: OK (0 strategies, 0 executors)\n"
    lines = result.stderr.splitlines()
    assert lines[0] == f"{empty}: 2 warning(s):"
    assert lines[1].startswith("  warning: strategies: no strategies: every alert is journaled")
    assert lines[2].startswith(
        "  warning: server.auth: no server.auth is configured and the server listens on "
        "0.0.0.0:9095, not only on loopback"
    )
    assert len(lines) == 3


def test_check_warns_when_an_executor_caps_a_longer_strategy_timeout(tmp_path: Path):
    """The issue's case: 60 s asked (defaults.timeout), 5 s applied by the executor."""
    (tmp_path / "token").write_text("s3cret\n")
    capped = tmp_path / "capped.yml"
    capped.write_text(
        "server: {listen: '127.0.0.1:9095', auth: {bearer_token_file: token}}\n"
        "defaults: {timeout: 60s}\n"
        "executors: {sh: {type: command, timeout: 5s}}\n"
        "strategies:\n"
        "  - {name: clean, matchers: [], action: run, executor: sh, target: t, command: [x]}\n"
    )
    result = cli("check", "--config", str(capped))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{capped}: OK (1 strategies, 1 executors)\n"
    assert result.stderr.splitlines() == [
        f"{capped}: 1 warning(s):",
        "  warning: strategies[0].timeout: strategy 'clean' asks for 1m (its timeout, or "
        "defaults.timeout) but executor 'sh' caps every action at 5s (executors.sh.timeout): "
        "the action is stopped after 5s; lower the strategy's timeout or raise the executor's",
    ]


def test_check_refuses_scale_on_a_log_executor_without_current_replicas(tmp_path: Path):
    text = (
        "executors: {trial: {type: log}}\n"
        "strategies:\n"
        "  - name: grow\n"
        "    matchers: []\n"
        "    action: scale\n"
        "    executor: trial\n"
        "    target: web\n"
        "    scale: {annotation: value, target_value: 1}\n"
    )
    bad = tmp_path / "trial.yml"
    bad.write_text(text)
    result = cli("check", "--config", str(bad))
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [
        "  strategies[0].executor (line 6): log executor 'trial' changes nothing and cannot "
        "read replicas: to trial this scale strategy, add current_replicas: N to "
        "executors.trial (the count the decision starts from)"
    ]
    bad.write_text(text.replace("{type: log}", "{type: log, current_replicas: 2}"))
    assert cli("check", "--config", str(bad)).returncode == 0
