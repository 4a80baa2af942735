"""The whole loop, as `remediator demo` runs it: real supervisord running the demo
service, real Prometheus evaluating the health rules, real Alertmanager routing with the
shipped alertmanager.yml, and `remediator serve` acting through supervisord."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.demo import FAULTS, Narrator, Result, Stack


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("closed-loop"), say=lambda line: None)
    try:
        stack.start()
        narrator = Narrator(stack, say=lambda line: None)
        pids_before = {p["name"]: p["pid"] for p in stack.supervisor().getAllProcessInfo()}
        results = [narrator.run(fault) for fault in FAULTS]
        yield stack, results, pids_before
    finally:
        stack.stop()


def by_name(results: list[Result], name: str) -> Result:
    return next(r for r in results if r.fault.name == name)


@pytest.mark.parametrize("fault", [f for f in FAULTS if f.expect == "recovered"], ids=str)
def test_fault_is_detected_remediated_verified_and_resolved(loop, fault):
    _stack, results, _pids = loop
    result = by_name(results, fault.name)
    assert result.firing_at is not None, "the alert never fired"
    assert result.action is not None, "no action was taken"
    assert result.action["strategy"] == fault.strategy
    expected_target = fault.process if fault.strategy == "restart-process" else "demo"
    assert result.action["target"] == expected_target
    assert result.action["status"] == "succeeded", result.action["reason"]
    assert result.incident is not None and result.incident["status"] == "resolved"
    assert result.resolved_seen_at is not None


def test_restarts_hit_the_right_processes(loop):
    stack, _results, before = loop
    after = {p["name"]: p["pid"] for p in stack.supervisor().getAllProcessInfo()}
    assert after["demo_00"] != before["demo_00"]  # wedged, then restarted
    assert after["demo_01"] != before["demo_01"]  # error burst, then restarted


def test_mttr_in_journal_and_metrics_agrees_with_what_the_test_measured(loop):
    stack, results, _pids = loop
    journal_total = 0.0
    for result in results:
        measured = result.resolved_seen_at - result.firing_at
        journaled = result.incident["duration_seconds"]
        assert journaled == pytest.approx(measured, abs=1.0), result.fault.name
        journal_total += journaled
    text = requests.get(f"{stack.urls['receiver']}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    key = ("remediator_incident_duration_seconds_sum", (("service", "demo"),))
    count = ("remediator_incident_duration_seconds_count", (("service", "demo"),))
    resolved = requests.get(
        f"{stack.urls['receiver']}/api/v1/incidents",
        params={"service": "demo", "status": "resolved", "limit": 1000},
        timeout=10,
    ).json()["data"]
    assert samples[count] == len(resolved)
    assert samples[key] == pytest.approx(sum(i["duration_seconds"] for i in resolved))
    assert samples[key] >= journal_total - 1e-6


def test_a_fault_remediation_cannot_help_opens_the_breaker_and_escalates(loop):
    stack, results, _pids = loop
    result = by_name(results, "broken dependency")
    assert result.action["status"] == "failed"
    assert "verification failed" in result.action["reason"]
    assert result.breaker == "open"
    alerts = requests.get(f"{stack.urls['alertmanager']}/api/v2/alerts", timeout=5).json()
    escalations = [a for a in alerts if a["labels"].get("alertname") == "RemediationFailed"]
    assert [a["labels"]["remediation_target"] for a in escalations] == ["demo:demo_02"]
    assert escalations[0]["labels"]["original_alertname"] == "HighErrorRatio"
    assert "remediation" not in escalations[0]["labels"]
    # the operator repaired it afterwards, and the alert resolved
    assert result.incident["status"] == "resolved"
