"""The health rules (rules/health.rules.yml) and the shipped Alertmanager routing.

Real promtool checks and unit-tests the rules; the YAML checks keep every rule fit for
Remediator (a `remediation` label naming its strategy, `service`, annotations with the
value) and every rule covered by firing, not-firing and resolved cases; the fast copy the
demo loads must stay the same rules with shorter durations. Real amtool checks
alertmanager/alertmanager.yml and its routing tree, and a real Alertmanager started with
it delivers a remediable alert to a webhook with the bearer token.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from examples.demo_service import fast_rules
from receiver.durations import parse_duration
from tests.support.http_server import scripted_server
from tests.support.processes import REPO, alertmanager, binary
from tests.support.promtool_cases import coverage, threshold_comments

pytestmark = pytest.mark.integration

RULES = REPO / "rules" / "health.rules.yml"
RULE_TESTS = REPO / "rules" / "tests" / "health.test.yml"
ALERTMANAGER = REPO / "alertmanager" / "alertmanager.yml"
#: alert -> the strategy its `remediation` label names
REMEDIATIONS = {
    "ServiceDown": "restart",
    "HighErrorRatio": "restart",
    "HighLatency": "escalate",
    "HighSaturation": "scale",
}
#: per-process alerts keep the `process` label (what a restart or a page is about);
#: HighSaturation is per service because scaling acts on the whole group
PER_PROCESS = {"ServiceDown", "HighErrorRatio", "HighLatency"}
#: alerts whose signal hovers around a threshold get hysteresis
KEEP_FIRING = {"HighErrorRatio", "HighLatency", "HighSaturation"}
SEVERITIES = {"critical", "warning", "info"}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def alerting_rules(text: str | None = None) -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text() if text is None else text)
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


# ---------------------------------------------------------------------------- the rules


def test_promtool_check_rules():
    result = run("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_test_rules():
    result = run("promtool", "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_fails_on_a_wrong_expectation(tmp_path: Path):
    """The unit tests can fail: the same cases against a rule with a changed threshold."""
    rules = tmp_path / "health.rules.yml"
    rules.write_text(RULES.read_text().replace(") > 0.05", ") > 0.5", 1))
    tests = tmp_path / "tests" / "health.test.yml"
    tests.parent.mkdir()
    tests.write_text(RULE_TESTS.read_text())
    result = run("promtool", "test", "rules", str(tests))
    assert result.returncode != 0
    assert "HighErrorRatio" in result.stdout + result.stderr


def test_there_is_one_rule_per_remediation():
    names = [rule["alert"] for rule in alerting_rules()]
    assert sorted(names) == sorted(REMEDIATIONS)


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_rule_is_fit_for_remediator(rule):
    name = rule["alert"]
    assert parse_duration(rule["for"]) >= 60, "ships production-sensible `for` (demo: fast copy)"
    if name in KEEP_FIRING:
        assert parse_duration(rule["keep_firing_for"]) > 0
    else:
        assert "keep_firing_for" not in rule
    labels = rule["labels"]
    assert labels["severity"] in SEVERITIES
    assert labels["service"] == "{{ $labels.service }}"
    assert labels["remediation"] == REMEDIATIONS[name]
    annotations = rule["annotations"]
    assert "{{" in annotations["summary"]
    assert len(annotations["description"]) > 40
    assert annotations["value"] == "{{ $value }}"
    # only targets that carry a service label are judged
    assert 'service!=""' in rule["expr"]
    if name in PER_PROCESS:
        assert not re.search(r"\b(by|without)\s*\([^)]*\bprocess\b", rule["expr"])
        assert "process" in annotations["summary"] + annotations["description"]


def test_every_threshold_is_documented_in_a_comment():
    documented = threshold_comments(RULES.read_text())
    assert sorted(documented) == sorted(REMEDIATIONS)
    assert [name for name, ok in documented.items() if not ok] == [], "no '# Threshold:'"


def test_every_rule_has_firing_not_firing_and_resolved_cases():
    """Per alert: a case where it fires, one where it does not, one after it resolved."""
    missing, expected = coverage(yaml.safe_load(RULE_TESTS.read_text())["tests"], REMEDIATIONS)
    for name, alert in expected:
        labels = alert["exp_labels"]
        assert labels["remediation"] == REMEDIATIONS[name], name
        assert labels["service"], name
        assert ("process" in labels) == (name in PER_PROCESS), name
        assert {"summary", "description", "value"} <= set(alert["exp_annotations"])
    assert not missing, missing


# ---------------------------------------------------------------------------- the fast copy


def test_fast_copy_is_the_same_rules_with_demo_durations(tmp_path: Path):
    text = fast_rules(RULES.read_text(), for_="2s", keep_firing_for="3s", window="10s")
    fast = tmp_path / "health.rules.yml"
    fast.write_text(text)
    result = run("promtool", "check", "rules", str(fast))
    assert result.returncode == 0, result.stdout + result.stderr

    original = {rule["alert"]: rule for rule in alerting_rules()}
    copied = {rule["alert"]: rule for rule in alerting_rules(text)}
    assert copied.keys() == original.keys()
    for name, rule in copied.items():
        assert rule["for"] == "2s"
        assert ("keep_firing_for" in rule) == ("keep_firing_for" in original[name])
        if "keep_firing_for" in rule:
            assert rule["keep_firing_for"] == "3s"
        assert rule["labels"] == original[name]["labels"]
        assert rule["annotations"] == original[name]["annotations"]
        windows = set(re.findall(r"\[([^\]]+)\]", rule["expr"]))
        assert windows <= {"10s"}, windows
        # thresholds and everything but the windows unchanged
        restored = re.sub(r"\[10s\]", "[W]", rule["expr"])
        assert restored == re.sub(r"\[\d+[smh]\]", "[W]", original[name]["expr"])


# ---------------------------------------------------------------------------- Alertmanager


def test_amtool_check_config_accepts_the_shipped_routing():
    """`amtool check-config` on the file as shipped.

    It does not read http_config's credentials_file (only Alertmanager does, when it
    sends), so /etc/alertmanager/remediator-token need not exist on this machine; the
    delivery test below runs a copy pointing at a real token file.
    """
    result = run("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_remediator_receiver_is_wired_as_documented():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    webhook = receivers["remediator"]["webhook_configs"][0]
    assert webhook["url"] == "http://remediator:9095/webhook"
    assert webhook["send_resolved"] is True
    credentials = webhook["http_config"]["authorization"]["credentials_file"]
    assert credentials == "/etc/alertmanager/remediator-token"
    assert config["route"]["receiver"] == "oncall"
    routes = config["route"]["routes"]
    # the approval request first, to people, and it stops there (test_routing_tree)
    assert routes[0]["matchers"] == ['alertname="RemediationAwaitingApproval"']
    assert routes[0]["receiver"] == "oncall" and not routes[0].get("continue", False)
    first = routes[1]
    assert first["receiver"] == "remediator"
    assert first["continue"] is True
    assert set(first["group_by"]) == {"alertname", "service"}


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=ServiceDown", "remediation=restart", "service=demo"], "remediator,oncall"),
        (["alertname=HighSaturation", "remediation=scale", "service=demo"], "remediator,oncall"),
        (["alertname=HighLatency", "remediation=escalate", "service=demo"], "remediator,oncall"),
        # Remediator's escalation drops the remediation label: people only, never a loop
        (["alertname=RemediationFailed", "service=demo"], "oncall"),
        (["alertname=RemediatorDown", "job=remediator"], "oncall"),
        # an action waiting for a person: people at once; it carries the original labels,
        # `remediation` too, yet never goes back to Remediator
        (
            ["alertname=RemediationAwaitingApproval", "remediation=restart", "service=demo"],
            "oncall",
        ),
        (["alertname=RemediationAwaitingApproval", "service=demo"], "oncall"),
    ],
)
def test_routing_tree(labels, receivers):
    result = run("amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_real_alertmanager_delivers_remediable_alerts_with_the_token(tmp_path: Path):
    """The shipped file, with only the two webhook URLs and the token path made local."""
    token = tmp_path / "remediator-token"
    token.write_text("s3cret-demo-token\n")
    with scripted_server() as webhooks:
        text = (
            ALERTMANAGER.read_text()
            .replace("http://remediator:9095/webhook", f"{webhooks.url}/remediator")
            .replace("/etc/alertmanager/remediator-token", str(token))
            .replace("https://oncall.example.com/hooks/alertmanager", f"{webhooks.url}/oncall")
        )
        assert text.count(webhooks.url) == 2 and str(token) in text
        with alertmanager(tmp_path / "am", text) as am:
            now = _iso(datetime.now(UTC))
            alerts = [
                {
                    "labels": {
                        "alertname": "ServiceDown",
                        "remediation": "restart",
                        "service": "demo",
                        "process": "demo:demo_01",
                        "severity": "critical",
                    },
                    "annotations": {"summary": "demo process demo:demo_01 is down"},
                    "startsAt": now,
                },
                {
                    "labels": {"alertname": "RemediationFailed", "service": "demo"},
                    "annotations": {"summary": "remediation failed"},
                    "startsAt": now,
                },
            ]
            response = requests.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5)
            assert response.status_code == 200, response.text

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                paths = {request.path for request in webhooks.received}
                if {"/remediator", "/oncall"} <= paths:
                    break
                time.sleep(0.2)
            received = list(webhooks.received)

    to_remediator = [r for r in received if r.path == "/remediator"]
    to_oncall = [r for r in received if r.path == "/oncall"]
    assert to_remediator, f"nothing delivered to the remediator webhook: {received}"
    assert to_remediator[0].headers["Authorization"] == "Bearer s3cret-demo-token"
    names = {a["labels"]["alertname"] for r in to_remediator for a in r.json()["alerts"]}
    assert names == {"ServiceDown"}
    assert to_remediator[0].json()["groupLabels"] == {"alertname": "ServiceDown", "service": "demo"}
    # people get the escalation at once, and the remediable alert only after 5m (not yet)
    assert to_oncall, f"the escalation did not reach oncall: {received}"
    names = {a["labels"]["alertname"] for r in to_oncall for a in r.json()["alerts"]}
    assert names == {"RemediationFailed"}
