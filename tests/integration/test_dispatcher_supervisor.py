"""Restart and scale through the whole dispatcher against a real supervisord, with the
scale value read from a real Prometheus and a silence held in a real Alertmanager; a
restart held for a person's approval, its RemediationAwaitingApproval alert read back
from that Alertmanager, approved or denied through the API."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from receiver.store.sqlite import SqliteStore
from tests.support.approvals import am_alert, awaiting, decide, ended
from tests.support.journal import wait_for
from tests.support.processes import alertmanager, prometheus, remediator
from tests.support.receiver import AM_CONFIG, PROMETHEUS_CONFIG, TOKEN, fire, settle
from tests.support.supervisor import program, supervisord


def config_text(supervisor_url: str, prom_url: str, am_url: str) -> str:
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {prom_url}}}
alertmanager: {{url: {am_url}}}
defaults: {{cooldown: 0s, escalation_executor: am}}
executors:
  procs: {{type: supervisor, url: {supervisor_url}, timeout: 20s}}
  am: {{type: alertmanager}}
strategies:
  - name: restart-when-down
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: procs
    target: '{{{{ labels.service }}}}'
    silence: true
    verify: {{query: 'vector(1)', timeout: 5s, interval: 500ms}}
  - name: careful-restart
    matchers: ['alertname="CarefulDown"']
    action: restart
    executor: procs
    target: '{{{{ labels.service }}}}'
    approval: {{required: true, timeout: 15m}}
  - name: scale-by-query
    matchers: ['alertname="Idle"']
    action: scale
    executor: procs
    target: '{{{{ labels.service }}}}'
    scale: {{query: 'vector(0.5)', target_value: 1, min_replicas: 1, max_replicas: 4,
             stabilization_window: 0s}}
  - name: scale-by-annotation
    matchers: ['alertname="Busy"']
    action: scale
    executor: procs
    target: '{{{{ labels.service }}}}'
    scale: {{annotation: value, target_value: 1, min_replicas: 1, max_replicas: 4,
             scale_up_limit: 1, scale_up_period: 1m}}
"""


@pytest.fixture
def stack(tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN)
    with (
        supervisord(tmp_path / "sup", program("web", numprocs=4)) as sup,
        prometheus(tmp_path / "prom", PROMETHEUS_CONFIG) as prom,
        alertmanager(tmp_path / "am", AM_CONFIG) as am,
    ):
        config = tmp_path / "remediation.yml"
        config.write_text(config_text(sup.url, prom.url, am.url))
        store_url = f"sqlite:///{tmp_path / 'journal.db'}"
        with remediator(tmp_path, config, store_url) as server:
            yield sup, am, server, SqliteStore(store_url)


def test_restart_changes_pids_verifies_and_lifts_its_silence(stack):
    sup, am, server, journal = stack
    before = sup.pids("web")
    fire(server, "ServiceDown", "web", "2026-06-01T00:00:00Z")
    (action,) = settle(journal, timeout=60)
    assert action["status"] == "succeeded", action
    sup.wait_all_running(("web",))
    after = sup.pids("web")
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before)

    silences = requests.get(f"{am.url}/api/v2/silences", timeout=5).json()
    ours = [s for s in silences if s["createdBy"] == "remediator"]
    assert len(ours) == 1
    assert ours[0]["status"]["state"] == "expired"
    matchers = {(m["name"], m["value"]) for m in ours[0]["matchers"]}
    assert ("service", "web") in matchers and ("alertname", "ServiceDown") in matchers
    reasons = " | ".join(e["reason"] for e in action["events"])
    assert "silenced the alert while acting" in reasons and "verifying: vector(1)" in reasons


def test_scale_down_by_prometheus_value_then_up_by_annotation_with_limit(stack):
    sup, _am, server, journal = stack
    assert len(sup.running("web")) == 4
    fire(server, "Idle", "web", "2026-06-02T00:00:00Z")
    (down,) = settle(journal, timeout=60)
    assert down["status"] == "succeeded", down
    assert len(sup.running("web")) == 2  # ceil(4 * 0.5 / 1)
    targets = requests.get(f"{server.url}/api/v1/targets", timeout=5).json()["data"]
    assert [(t["target"], t["current"], t["desired"], t["min"], t["max"]) for t in targets] == [
        ("web", 2, 2, 1, 4)
    ]

    body_alert = {
        "status": "firing",
        "labels": {"alertname": "Busy", "service": "web"},
        "annotations": {"value": "2"},
        "startsAt": "2026-06-02T00:05:00Z",
    }
    response = requests.post(
        f"{server.url}/webhook",
        json={"version": "4", "status": "firing", "alerts": [body_alert]},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200
    up = settle(journal, timeout=60)[-1]
    assert up["status"] == "succeeded", up
    sup.wait_until(lambda: len(sup.running("web")) == 3, what="3 running")  # 4 wanted, +1 max
    scale_notes = [e["reason"] for e in up["events"] if e["reason"].startswith("scale:")]
    assert scale_notes and "2 -> 3" in scale_notes[0]
    targets = requests.get(f"{server.url}/api/v1/targets", timeout=5).json()["data"]
    assert (targets[0]["current"], targets[0]["desired"]) == (3, 3)


@pytest.mark.parametrize(("verb", "status"), [("approve", "succeeded"), ("deny", "skipped")])
def test_a_restart_awaiting_approval_touches_nothing_until_a_person_decides(stack, verb, status):
    sup, am, server, _journal = stack
    before = sup.pids("web")
    fire(server, "CarefulDown", "web", "2026-06-03T00:00:00Z")
    (held,) = awaiting(server)
    posted = wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
    assert posted["labels"]["remediation_target"] == "web"
    assert posted["annotations"]["action_url"].endswith(f"/actions/{held['id']}")
    assert sup.pids("web") == before  # held: supervisord was not asked to restart
    answer = decide(server, held["id"], verb, comment="checked the dashboard")
    assert answer.status_code == 200, answer.text
    done = ended(server, held["id"], timeout=60)
    assert done["status"] == status, done
    sup.wait_all_running(("web",))
    after = sup.pids("web")
    if verb == "approve":
        assert all(after[name] != before[name] for name in before)
    else:
        assert after == before
    # once decided, Alertmanager is told the awaiting alert ended
    wait_for(lambda: am_alert(am, held["id"]) is None, what="the awaiting alert to end")
