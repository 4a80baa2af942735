"""The whole loop, as `remediator demo` runs it: real supervisord running the demo
service, real Prometheus evaluating the health rules, real Alertmanager routing with the
shipped alertmanager.yml, and `remediator serve` acting through supervisord and the
rollback script. What the runbooks did is read back from the journal itself (the SQLite
file the server wrote), not only from what the read API says."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.demo import FAULTS, Narrator, Result, Stack, summary
from receiver.store import open_store
from receiver.store import runs as run_journal
from tests.support.html_page import by_testid


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


def journaled(stack: Stack, incident_id: int) -> tuple[list[dict[str, Any]], list[tuple]]:
    """The incident's runbook runs and its actions (id, step, run_id, action, status,
    reason, output), oldest first, as the server journaled them."""
    store = open_store(f"sqlite:///{stack.workdir / 'journal.db'}")
    try:
        with store.transaction(write=False) as tx:
            runs = run_journal.for_incident(tx, incident_id)
            actions = tx.execute(
                "SELECT id, step, run_id, action, status, reason, output FROM actions "
                "WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            ).fetchall()
    finally:
        store.close()
    return runs, [tuple(row) for row in actions]


def escalations(stack: Stack) -> list[dict[str, Any]]:
    alerts = requests.get(f"{stack.urls['alertmanager']}/api/v2/alerts", timeout=5).json()
    return [a for a in alerts if a["labels"].get("alertname") == "RemediationFailed"]


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


def test_a_bad_release_is_rolled_back_after_the_restart_fails_verification(loop):
    stack, results, _pids = loop
    result = by_name(results, "bad release")
    runs, actions = journaled(stack, result.incident["id"])
    # one run of the runbook, cured, in two steps: restart (failed), rollback (succeeded)
    assert [(r["strategy"], r["run"], r["status"]) for r in runs] == [
        ("restart-process", 1, "cured")
    ]
    assert [
        (step, run_id, action, status) for _id, step, run_id, action, status, *_ in actions
    ] == [
        (1, runs[0]["id"], "restart", "failed"),
        (2, runs[0]["id"], "rollback", "succeeded"),
    ]
    restart, rollback = actions
    assert "verification failed" in restart[5]
    assert "rolled back demo:demo_00 from release 1.1.0 to 1.0.0" in rollback[6]
    assert runs[0]["escalation"] is None
    # the summary shows both steps, in order
    assert [(a["action"], a["status"]) for a in result.actions] == [
        ("restart", "failed"),
        ("rollback", "succeeded"),
    ]
    row = next(line for line in summary(results).splitlines() if line.startswith("bad release"))
    assert "restart failed, rollback succeeded" in row
    assert result.escalations == 0
    assert result.incident["status"] == "resolved"


def test_the_console_shows_the_bad_release_incident_from_alert_to_rollback_in_order(loop):
    stack, results, _pids = loop
    result = by_name(results, "bad release")
    page = requests.get(f"{stack.urls['receiver']}/incidents/{result.incident['id']}", timeout=10)
    assert page.status_code == 200
    events = by_testid(page.text, "event")
    times = [float(e.attrs["data-at"]) for e in events]
    assert times == sorted(times)
    kinds = [e.attrs["data-kind"] for e in events]
    # opened by the notification (one moment, journaled together), then the restart's
    # verification failing, the rollback after it; resolved by a later notification
    assert set(kinds[:2]) == {"opened", "notification"}, kinds
    assert "resolved" in kinds and kinds.index("resolved") > kinds.index("executed"), kinds
    texts = [e.text for e in events]
    failed = next(i for i, t in enumerate(texts) if "verification failed" in t)
    rolled = next(i for i, t in enumerate(texts) if "rolled back demo:demo_00" in t)
    assert failed < rolled
    assert "verification sample:" in " ".join(texts)


def test_a_fault_no_step_can_help_ends_the_runbook_uncured_and_escalates_once(loop):
    stack, results, _pids = loop
    result = by_name(results, "broken dependency")
    runs, actions = journaled(stack, result.incident["id"])
    # the restart fails verification; the rollback's `when` finds no recent release, so
    # it is skipped and the run ends uncured, owing one escalation, delivered
    assert [(step, action, status) for _id, step, _run, action, status, *_ in actions] == [
        (1, "restart", "failed"),
        (2, "rollback", "skipped"),
    ]
    assert "verification failed" in actions[0][5]
    assert actions[1][5].startswith("when: ")
    assert [(r["status"], r["escalation"]) for r in runs] == [("uncured", "sent")]
    # one failure of the two that open this breaker: it stays closed; the person is told
    # because the runbook ended uncured, not because a breaker opened
    assert result.breaker == "closed"
    # the runbook strategy's escalations only: on a busy machine an idle fleet process
    # can cross HighLatency, which escalate-to-person rightly sends to a person as well
    sent = [
        a
        for a in escalations(stack)
        if a["labels"].get("remediation_strategy") == "restart-process"
    ]
    assert [a["labels"]["remediation_target"] for a in sent] == ["demo:demo_02"]
    assert sent[0]["labels"]["original_alertname"] == "HighErrorRatio"
    assert "remediation" not in sent[0]["labels"]
    assert sent[0]["annotations"]["runbook_run"] == "1"
    trail = sent[0]["annotations"]["runbook_trail"].splitlines()
    assert trail[0].startswith("runbook run 1, started ") and trail[0].endswith(": uncured")
    assert "step 1 (restart)" in trail[1] and "failed: " in trail[1]
    assert "verification failed" in trail[1]
    assert "step 2 (rollback)" in trail[2] and "skipped" in trail[2] and "when: " in trail[2]
    assert result.steps == "restart failed, rollback skipped"
    # the operator repaired it afterwards, and the alert resolved
    assert result.incident["status"] == "resolved"
