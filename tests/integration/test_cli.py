"""The `remediator` console script as a user runs it: check and explain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from receiver import config as config_module
from receiver.yamlsource import load_yaml
from tests.support.processes import REPO

EXAMPLE = REPO / "examples" / "remediation.yml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_check_accepts_the_shipped_example():
    result = cli("check", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK (6 strategies, 6 executors)" in result.stdout


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
        | {"method", "headers", "body", "query", "interval", "alert_not_firing"}
        | {"target_value", "min_replicas", "max_replicas", "tolerance", "scale_up_limit"}
        | {"scale_up_period", "stabilization_window", "max_actions", "window"}
    )
    missing = expected - stripped
    assert not missing, f"examples/remediation.yml lacks: {sorted(missing)}"
    types = {spec["type"] for spec in load_yaml(EXAMPLE.read_text())["executors"].values()}
    assert types == set(config_module.EXECUTOR_TYPES)
    actions = {s["action"] for s in load_yaml(EXAMPLE.read_text())["strategies"]}
    assert actions >= {"restart", "scale", "rollback", "run", "escalate"}


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
