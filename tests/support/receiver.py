"""A small receiver config shared by the integration tests: bearer auth, log executor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from tests.support.payloads import alert, notification

PROMETHEUS_CONFIG = "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
AM_CONFIG = """route: {receiver: nobody, group_wait: 1s, group_interval: 1s}
receivers: [{name: nobody}]
"""

TOKEN = "s3cret-token"
MAX_BODY = 64 * 1024

#: The webhook's bearer token, read from `token` next to the config (see write_config).
AUTH_SERVER = "server:\n  auth: {bearer_token_file: token}\n"
#: The smallest config tail that plans an action: `ServiceDown` restarts its service
#: through a `log` executor. Tests put the sections they exercise in front of it.
LOG_RESTART = """executors:
  logger: {type: log}
strategies:
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""

CONFIG = f"""
server:
  auth: {{bearer_token_file: token}}
  max_body_bytes: {MAX_BODY}
defaults:
  max_concurrent_actions: 1
limits:
  shutdown_grace: 1s  # the hold command is killed as the server stops, not waited for
executors:
  logger: {{type: log}}
  local: {{type: command}}
strategies:
  - name: hold-the-only-slot
    matchers: ['alertname="Hold"']
    action: run
    executor: local
    target: hold
    command: ['sleep', '600']
    timeout: 15m
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
  - name: note-everything
    matchers: ['severity="page"']
    action: escalate
    executor: logger
    target: '{{{{ labels.alertname }}}}'
"""


def write_config(workdir: Path, text: str = CONFIG) -> Path:
    (workdir / "token").write_text(TOKEN + "\n")
    path = workdir / "remediation.yml"
    path.write_text(text)
    return path


def hold_dispatcher(server_url: str) -> None:
    """Occupy the dispatcher's single slot with a long real command, so that the actions
    of later alerts stay `planned` and the journal's planning can be observed."""
    body = notification(alert("Hold", starts_at="2020-01-01T00:00:00Z"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    requests.post(f"{server_url}/webhook", json=body, headers=headers, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = requests.get(
            f"{server_url}/api/v1/actions", params={"status": "running"}, timeout=5
        ).json()
        if running["total"]:
            return
        time.sleep(0.1)
    raise AssertionError("the hold action did not start")


def settle(journal: Any, timeout: float = 30.0) -> list[dict]:
    """Wait until no action is planned or running; return all actions, oldest first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        actions = journal.list_actions(limit=1000).items
        if actions and all(a["status"] not in ("planned", "running") for a in actions):
            return sorted(actions, key=lambda a: a["id"])
        time.sleep(0.2)
    raise AssertionError(f"actions did not settle: {journal.list_actions().items}")


def fire(server, name: str, service: str, starts_at: str) -> dict:
    body = notification(alert(name, service=service, starts_at=starts_at))
    response = requests.post(
        f"{server.url}/webhook",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()
