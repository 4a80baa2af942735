"""Human approvals in the real server: `remediator serve` (gunicorn) on SQLite and on
PostgreSQL, a real Alertmanager that receives the `RemediationAwaitingApproval` alert
(read back from its API v2), and a real command as the remediation, whose side effect
(a line in a file) shows whether it ran.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.journal import open_journal, wait_for
from tests.support.payloads import alert, notification
from tests.support.pids import alive, dispatcher_of, worker_of, writer_of
from tests.support.processes import alertmanager, remediator
from tests.support.receiver import AM_CONFIG, TOKEN
from tests.support.stores import journal_url

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
STARTS = "2026-06-01T00:00:00Z"


def config_text(am_url: str, record: Path) -> str:
    script = (
        "import sys, pathlib; "
        f"pathlib.Path({str(record)!r}).open('a').write(' '.join(sys.argv[1:]) + chr(10)); "
        "sys.exit(1 if sys.argv[1] == 'fragile' else 0)"
    )
    command = f"[{sys.executable!r}, '-c', {script!r}, '{{{{ labels.alertname }}}}', "
    command += "'{{ labels.service }}']"
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
alertmanager: {{url: {am_url}}}
defaults:
  cooldown: 0s
  escalation_executor: am
  breaker: {{failure_threshold: 1, recovery_timeout: 1h}}
executors:
  local: {{type: command}}
  am: {{type: alertmanager}}
strategies:
  - name: careful
    matchers: ['alertname=~"careful|fragile"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {command}
    approval: {{required: true, timeout: 10m, on_timeout: skip}}
  - name: impatient-skip
    matchers: ['alertname="impatient-skip"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {command}
    approval: {{timeout: 2s, on_timeout: skip}}
  - name: impatient-run
    matchers: ['alertname="impatient-run"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {command}
    approval: {{timeout: 2s, on_timeout: run}}
"""


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN)
    record = tmp_path / "ran.log"
    with (
        journal_url(request.param, tmp_path) as store_url,
        alertmanager(tmp_path / "am", AM_CONFIG) as am,
    ):
        config = tmp_path / "remediation.yml"
        config.write_text(config_text(am.url, record))
        yield tmp_path, config, store_url, am, record


def fire(server, name: str, service: str = "web", starts_at: str = STARTS) -> None:
    body = notification(alert(name, service=service, starts_at=starts_at))
    response = requests.post(f"{server.url}/webhook", json=body, headers=HEADERS, timeout=10)
    assert response.status_code == 200, response.text


def resolve(server, name: str, service: str = "web", starts_at: str = STARTS) -> None:
    ended = alert(
        name, service=service, starts_at=starts_at, status="resolved", ends_at=STARTS[:-1] + ".5Z"
    )
    response = requests.post(
        f"{server.url}/webhook", json=notification(ended), headers=HEADERS, timeout=10
    )
    assert response.status_code == 200, response.text


def action(server, action_id: int) -> dict:
    response = requests.get(f"{server.url}/api/v1/actions/{action_id}", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def awaiting(server, count: int = 1) -> list[dict]:
    """The actions awaiting approval, once `count` of them do (oldest first)."""

    def found() -> list[dict] | None:
        rows = requests.get(f"{server.url}/api/v1/actions", timeout=5).json()["data"]
        held = [a for a in rows if a["waiting"] == "awaiting_approval"]
        return sorted(held, key=lambda a: a["id"]) if len(held) >= count else None

    return wait_for(found, what="an action awaiting approval")


def am_alert(am, action_id: int) -> dict | None:
    """The RemediationAwaitingApproval alert of the action as Alertmanager holds it
    (active), or None."""
    alerts = requests.get(f"{am.url}/api/v2/alerts", timeout=5).json()
    mine = [
        a
        for a in alerts
        if a["labels"].get("alertname") == "RemediationAwaitingApproval"
        and a["labels"].get("remediation_action_id") == str(action_id)
    ]
    return mine[0] if mine else None


def ended(server, action_id: int, timeout: float = 20.0) -> dict:
    def done() -> dict | None:
        found = action(server, action_id)
        return found if found["status"] not in ("planned", "running") else None

    return wait_for(done, timeout=timeout, what=f"action {action_id} to end")


def decide(server, action_id: int, verb: str, **body: str) -> requests.Response:
    url = f"{server.url}/api/v1/actions/{action_id}/{verb}"
    return requests.post(url, json=body or None, headers=HEADERS, timeout=5)


def ran(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def test_approve_runs_the_action_and_ends_the_awaiting_alert(stack):
    workdir, config, store_url, am, record = stack
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        posted = wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        assert posted["labels"]["original_alertname"] == "careful"
        assert posted["labels"]["service"] == "web"
        assert posted["labels"]["remediation_strategy"] == "careful"
        assert posted["labels"]["remediation_target"] == "web"
        assert posted["annotations"]["action_url"] == f"/api/v1/actions/{held['id']}"
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


def test_deny_skips_the_action_and_it_never_runs(stack):
    workdir, config, store_url, am, record = stack
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        assert decide(server, held["id"], "deny", by="bob", comment="not now").status_code == 200
        done = ended(server, held["id"])
        assert (done["status"], done["reason"]) == ("skipped", "denied by bob: not now")
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")
        time.sleep(1.5)
        assert ran(record) == []
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_actions_skipped_total{reason="denied",strategy="careful"} 1.0' in text


def test_unknown_action_is_404_and_an_action_not_awaiting_is_409(stack):
    workdir, config, store_url, _am, _record = stack
    with remediator(workdir, config, store_url) as server:
        assert decide(server, 999, "approve").status_code == 404
        fire(server, "careful")
        (held,) = awaiting(server)
        url = f"{server.url}/api/v1/actions/{held['id']}/approve"
        assert requests.post(url, timeout=5).status_code == 401  # the API's credentials
        assert decide(server, held["id"], "deny").status_code == 200
        ended(server, held["id"])
        assert decide(server, held["id"], "approve").status_code == 409


def test_timeout_skips_with_on_timeout_skip(stack):
    workdir, config, store_url, am, record = stack
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


def test_timeout_runs_with_on_timeout_run(stack):
    workdir, config, store_url, am, record = stack
    with remediator(workdir, config, store_url) as server:
        fire(server, "impatient-run")
        (held,) = awaiting(server)
        done = ended(server, held["id"])
        assert done["status"] == "succeeded", done
        assert "approval timed out: running" in [e["reason"] for e in done["events"]]
        assert ran(record) == ["impatient-run web"]
        wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")


def test_resolved_alert_cancels_a_pending_approval_and_ends_its_alert(stack):
    workdir, config, store_url, am, record = stack
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


def test_gates_still_apply_after_approval(stack):
    """The first approved run fails and opens the breaker (failure_threshold 1); the
    second incident's action, approved too, is skipped by the open breaker."""
    workdir, config, store_url, _am, record = stack
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


def test_metrics_count_actions_awaiting_approval(stack):
    workdir, config, store_url, _am, _record = stack
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        fire(server, "careful", service="db")
        awaiting(server, count=2)
        text = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_actions_awaiting_approval{strategy="careful"} 2.0' in text
        assert 'remediator_actions_awaiting_approval{strategy="impatient-run"} 0.0' in text


def test_an_awaiting_action_survives_kill_9_of_the_server(stack):
    workdir, config, store_url, am, record = stack
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        # the whole server dies at once: master, worker, journal writer, dispatch process
        worker = worker_of(server.process.pid)
        writer = writer_of(worker)
        dispatcher = dispatcher_of(writer)
        for pid in (server.process.pid, worker, writer, dispatcher):
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        gone = (worker, writer, dispatcher)
        wait_for(lambda: not any(alive(pid) for pid in gone), 20, "the server's processes gone")
    journal = open_journal(store_url)
    try:
        (row,) = [a for a in journal.list_actions().items if a["id"] == held["id"]]
        assert (row["status"], row["waiting"]) == ("planned", "awaiting_approval")
    finally:
        journal.close()
    with remediator(workdir, config, store_url, log_name="again.log") as server:
        time.sleep(2.5)  # the new dispatcher looked: still awaiting
        again = action(server, held["id"])
        assert (again["status"], again["waiting"]) == ("planned", "awaiting_approval")
        assert again["approval"]["awaiting"] is True
        assert decide(server, held["id"], "approve", by="carol").status_code == 200
        assert ended(server, held["id"])["status"] == "succeeded"
        assert ran(record) == ["careful web"]
