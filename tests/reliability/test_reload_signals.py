"""Issue 11, item 5: SIGHUP to master and worker at once (`pkill -HUP remediator`)
deadlocked the reload. Now a burst of signals ends in ONE reload, afterwards, while the
worker keeps answering; gunicorn does not replace it and a running action runs on."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import requests

from tests.support.journal import bearer, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.pids import worker_of, writer_of
from tests.support.processes import remediator
from tests.support.receiver import write_config

CONFIG = """
server:
  auth: {bearer_token_file: token}
executors:
  logger: {type: log}
  local: {type: command}
strategies:
  - name: long-running
    matchers: ['alertname="Hold"']
    action: run
    executor: local
    target: hold
    command: ['sleep', '20']
    timeout: 1m
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
ADDED = """
  - name: added-by-reload
    matchers: ['alertname="OnlyInTheNewConfig"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
SIGNALS = 20


def _actions(url: str, **params: str) -> list[dict]:
    return requests.get(f"{url}/api/v1/actions", params=params, timeout=5).json()["data"]


def test_a_burst_of_sighup_to_master_and_worker_reloads_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        master = server.process.pid
        worker = worker_of(master)
        writer = writer_of(worker)
        hold = notification(alert("Hold", service="hold", starts_at="2026-11-21T09:00:00Z"))
        assert post_webhook(server.url, hold).status_code == 200
        [running] = wait_for(lambda: _actions(server.url, status="running"), 20, "a running")

        new_text = CONFIG + ADDED
        config.write_text(new_text)
        for _ in range(SIGNALS):  # what `pkill -HUP remediator` does, many times over
            os.kill(master, signal.SIGHUP)
            os.kill(worker, signal.SIGHUP)

        # The worker answers throughout: no deadlock, no wait for the reload.
        assert requests.get(f"{server.url}/-/healthy", timeout=2).status_code == 200
        during = notification(alert(service="during", starts_at="2026-11-21T10:00:00Z"))
        assert post_webhook(server.url, during, timeout=2).status_code == 200

        sha256 = hashlib.sha256(new_text.encode()).hexdigest()

        def reloaded() -> bool:
            status = requests.get(f"{server.url}/api/v1/status", headers=bearer(), timeout=5)
            return status.json()["config_sha256"] == sha256

        wait_for(reloaded, 20, "the new config's sha256 in /api/v1/status")
        # The journal writer plans with the new config too: only it has this strategy.
        fresh = notification(
            alert("OnlyInTheNewConfig", service="web", starts_at="2026-11-21T11:00:00Z")
        )
        assert post_webhook(server.url, fresh, timeout=5).status_code == 200
        [added] = _actions(server.url, strategy="added-by-reload")
        assert added["target"] == "web"

        time.sleep(1.0)  # any reload still queued by the burst would have run by now
        assert worker_of(master) == worker  # gunicorn did not replace the worker
        assert writer_of(worker) == writer  # nor did the worker replace its writer
        [still] = _actions(server.url, status="running")
        assert still["id"] == running["id"]  # the action in flight was not interrupted
        assert server.output().count("configuration reloaded from") == 1
