"""Human approvals in the real server: `remediator serve` (gunicorn) on SQLite and on
PostgreSQL, a real Alertmanager that receives the `RemediationAwaitingApproval` alert
(read back from its API v2), and a real command as the remediation, whose side effect
(a line in a file) shows whether it ran.
"""

from __future__ import annotations

import time

import requests

from tests.support.approvals import (
    EXTERNAL_URL,
    action,
    am_alert,
    awaiting,
    decide,
    ended,
    fire,
    ran,
    resolve,
)
from tests.support.journal import wait_for
from tests.support.processes import remediator


def test_approve_runs_the_action_and_ends_the_awaiting_alert(approvals):
    workdir, config, store_url, am, record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        posted = wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        assert posted["labels"]["original_alertname"] == "careful"
        assert posted["labels"]["service"] == "web"
        assert posted["labels"]["remediation_strategy"] == "careful"
        assert posted["labels"]["remediation_target"] == "web"
        # links to the console page under server.external_url (its trailing / dropped)
        page = f"{EXTERNAL_URL}/actions/{held['id']}"
        assert posted["annotations"]["action_url"] == page
        assert posted["generatorURL"] == page
        assert posted["annotations"]["api_url"] == f"{EXTERNAL_URL}/api/v1/actions/{held['id']}"
        assert '"careful", "web"]' in posted["annotations"]["would_run"]
        time.sleep(2.5)  # housekeeping ticks pass: still held, nothing ran
        assert action(server, held["id"])["status"] == "planned"
        assert ran(record) == []

        answer = decide(server, held["id"], "approve", by="alice", comment="go ahead")
        assert answer.status_code == 200, answer.text
        assert (answer.json()["decision"], answer.json()["decided_by"]) == ("approved", "alice")
        done = ended(server, held["id"])
        assert done["status"] == "succeeded", done
        assert ran(record) == ["careful web"]
        reasons = [e["reason"] for e in done["events"]]
        assert any(r.startswith("waiting: awaiting_approval") for r in reasons), reasons
        assert "approved by alice: go ahead" in reasons
        assert done["approval"]["decided_by"] == "alice"
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")
        # decided once: a second decision is a conflict
        assert decide(server, held["id"], "deny").status_code == 409


def test_deny_skips_the_action_and_it_never_runs(approvals):
    """Started with --web.external-url, which wins over server.external_url."""
    workdir, config, store_url, am, record = approvals
    flag = "http://console.example.test:8080"
    with remediator(workdir, config, store_url, "--web.external-url", flag) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        posted = wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        assert posted["annotations"]["action_url"] == f"{flag}/actions/{held['id']}"
        assert decide(server, held["id"], "deny", by="bob", comment="not now").status_code == 200
        done = ended(server, held["id"])
        assert (done["status"], done["reason"]) == ("skipped", "denied by bob: not now")
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")
        time.sleep(1.5)
        assert ran(record) == []
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_actions_skipped_total{reason="denied",strategy="careful"} 1.0' in text


def test_unknown_action_is_404_and_an_action_not_awaiting_is_409(approvals):
    workdir, config, store_url, _am, _record = approvals
    with remediator(workdir, config, store_url) as server:
        assert decide(server, 999, "approve").status_code == 404
        fire(server, "careful")
        (held,) = awaiting(server)
        url = f"{server.url}/api/v1/actions/{held['id']}/approve"
        assert requests.post(url, timeout=5).status_code == 401  # the API's credentials
        assert decide(server, held["id"], "deny").status_code == 200
        ended(server, held["id"])
        assert decide(server, held["id"], "approve").status_code == 409


def test_timeout_skips_with_on_timeout_skip(approvals):
    workdir, config, store_url, am, record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "impatient-skip")
        (held,) = awaiting(server)
        done = ended(server, held["id"])
        assert (done["status"], done["reason"]) == ("skipped", "approval timed out after 2s")
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        skipped = 'remediator_actions_skipped_total{reason="approval_timeout",'
        assert f'{skipped}strategy="impatient-skip"}} 1.0' in text
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")
        assert ran(record) == []


def test_timeout_runs_with_on_timeout_run(approvals):
    workdir, config, store_url, am, record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "impatient-run")
        (held,) = awaiting(server)
        done = ended(server, held["id"])
        assert done["status"] == "succeeded", done
        assert "approval timed out: running" in [e["reason"] for e in done["events"]]
        assert ran(record) == ["impatient-run web"]
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")


def test_resolved_alert_cancels_a_pending_approval_and_ends_its_alert(approvals):
    workdir, config, store_url, am, record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        resolve(server, "careful")
        done = ended(server, held["id"])
        assert done["status"] == "cancelled", done
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")
        assert decide(server, held["id"], "approve").status_code == 409
        assert ran(record) == []


def test_gates_still_apply_after_approval(approvals):
    """The first approved run fails and opens the breaker (failure_threshold 1); the
    second incident's action, approved too, is skipped by the open breaker."""
    workdir, config, store_url, _am, record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "fragile", starts_at="2026-06-01T00:00:00Z")
        (first,) = awaiting(server)
        assert decide(server, first["id"], "approve").status_code == 200
        assert ended(server, first["id"])["status"] == "failed"
        fire(server, "fragile", starts_at="2026-06-01T00:05:00Z")
        second = next(a for a in awaiting(server) if a["id"] != first["id"])
        assert decide(server, second["id"], "approve").status_code == 200
        done = ended(server, second["id"])
        assert done["status"] == "skipped"
        assert done["reason"].startswith("breaker_open"), done
        assert ran(record) == ["fragile web"]  # the first only


def test_metrics_count_actions_awaiting_approval(approvals):
    workdir, config, store_url, _am, _record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        fire(server, "careful", service="db")
        awaiting(server, count=2)
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_actions_awaiting_approval{strategy="careful"} 2.0' in text
        assert 'remediator_actions_awaiting_approval{strategy="impatient-run"} 0.0' in text
        assert 'remediator_actions_waiting{reason="awaiting_approval"} 2.0' in text
