"""The meta-monitoring alerting rules (rules/*.yml) with the real promtool.

`promtool check rules` validates them, `promtool test rules` runs their unit tests
(rules/tests/*.test.yml); the YAML checks keep every rule fit to page a person and tied
to the metric contract, and every rule covered by firing, not-firing and resolved cases.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.durations import parse_duration
from tests.support.dashboard import contract_problems
from tests.support.processes import REPO, binary
from tests.support.promtool_cases import coverage, threshold_comments

pytestmark = pytest.mark.integration

RULES = REPO / "rules"
RULE_FILES = [RULES / "remediator.rules.yml"]
TEST_FILES = [RULES / "tests" / "remediator.test.yml"]
EXPECTED_ALERTS = {
    "RemediatorDown",
    "RemediatorWebhookErrors",
    "RemediatorBreakerOpenTooLong",
    "RemediatorLowSuccessRate",
    "RemediatorActionsSkippedByBudget",
    "RemediatorServiceCritical",
}
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def alerting_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def rule_tests() -> list[dict[str, Any]]:
    groups = []
    for path in TEST_FILES:
        groups += yaml.safe_load(path.read_text())["tests"]
    return groups


def test_there_are_rule_files_and_tests():
    assert RULES / "remediator.rules.yml" in RULE_FILES
    assert TEST_FILES, "no rules/tests/*.test.yml"


def test_promtool_check_rules():
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules():
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_meta_group_has_every_expected_alert():
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    meta = [group for group in groups if group["name"] == "remediator-meta"]
    assert len(meta) == 1
    names = [rule["alert"] for rule in meta[0]["rules"] if "alert" in rule]
    assert len(names) == len(set(names)), names
    assert set(names) == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_rule_is_fit_for_a_person(rule):
    assert parse_duration(rule["for"]) > 0, "a `for` avoids paging on one bad scrape"
    labels = rule.get("labels", {})
    assert labels.get("severity") in SEVERITIES
    assert "remediation" not in labels, "meta alerts go to people, never back to Remediator"
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip()
    assert len(annotations.get("description", "")) > 40
    # the annotations say which thing is wrong, or how much
    assert "{{" in annotations["summary"] + annotations["description"]


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_rule_uses_contract_metrics_labels_and_values(rule):
    assert not contract_problems(rule["expr"]), contract_problems(rule["expr"])


def test_every_threshold_is_documented_in_a_comment():
    for path in RULE_FILES:
        documented = threshold_comments(path.read_text())
        assert documented, f"{path.name}: no alerting rules found"
        undocumented = [name for name, ok in documented.items() if not ok]
        assert undocumented == [], f"{path.name}: no '# Threshold: ...' comment above them"


def test_every_rule_has_firing_not_firing_and_resolved_cases():
    """Per alert: a case where it fires, one before where it does not, one after it resolved."""
    missing, expected = coverage(rule_tests(), EXPECTED_ALERTS)
    for name, alert in expected:
        assert alert["exp_labels"].get("severity") in SEVERITIES, name
        assert {"summary", "description"} <= set(alert["exp_annotations"]), name
    assert not missing, missing


def test_rules_are_loaded_by_a_real_prometheus_config_check(tmp_path: Path):
    """A prometheus.yml referencing the rules passes `promtool check config`."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(path) for path in RULE_FILES],
                "scrape_configs": [
                    {"job_name": "remediator", "static_configs": [{"targets": ["127.0.0.1:9095"]}]}
                ],
            }
        )
    )
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
