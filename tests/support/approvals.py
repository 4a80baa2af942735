"""Approvals in the real server (tests/integration/test_approvals.py and
tests/reliability/test_approval_crash.py): a config with strategies that wait for a
person, a real Alertmanager, and helpers that read the actions and the
`RemediationAwaitingApproval` alert back."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.journal import wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import alertmanager
from tests.support.receiver import AM_CONFIG, TOKEN
from tests.support.stores import journal_url

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
STARTS = "2026-06-01T00:00:00Z"
#: server.external_url of the config: the awaiting alert links under it.
EXTERNAL_URL = "https://remediator.example.test/ops"


def config_text(am_url: str, record: Path) -> str:
    script = (
        "import sys, pathlib; "
        f"pathlib.Path({str(record)!r}).open('a').write(' '.join(sys.argv[1:]) + chr(10)); "
        "sys.exit(1 if sys.argv[1] == 'fragile' else 0)"
    )
    command = f"[{sys.executable!r}, '-c', {script!r}, '{{{{ labels.alertname }}}}', "
    command += "'{{ labels.service }}']"
    return f"""
server: {{auth: {{bearer_token_file: token}}, external_url: {EXTERNAL_URL}/}}
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


@contextmanager
def approval_stack(backend: str, tmp_path: Path) -> Iterator[tuple]:
    """(workdir, config path, store URL, the Alertmanager, the file each run writes to):
    a journal on `backend` and a real Alertmanager, the config of config_text."""
    (tmp_path / "token").write_text(TOKEN)
    record = tmp_path / "ran.log"
    with (
        journal_url(backend, tmp_path) as store_url,
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
