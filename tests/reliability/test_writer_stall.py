"""Issue 11, item 2: a regex matcher cannot hang the journal writer, and a writer that
stops making progress is seen by `/-/healthy`, killed and replaced.

Real `remediator serve` (gunicorn, journal writer child, SQLite). The stall is made by
SIGSTOP on the writer: it then holds every request sent to it without answering.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import requests

from tests.support.journal import all_actions, all_incidents, open_journal, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.pids import alive, worker_of, writer_of, writers_of
from tests.support.processes import remediator
from tests.support.receiver import write_config

STRATEGIES = """
executors:
  logger: {type: log}
strategies:
  - name: catastrophic-regex
    matchers: ['service=~"(a+)+b"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
AUTH = "server:\n  auth: {bearer_token_file: token}\n"
STALL_TIMEOUT_S = 2


def fire(url: str, service: str, starts_at: str, timeout: float = 10.0) -> requests.Response:
    body = notification(alert("ServiceDown", service=service, starts_at=starts_at))
    return post_webhook(url, body, timeout=timeout)


def test_the_backtracking_matcher_of_the_issue_is_answered_in_seconds(tmp_path: Path) -> None:
    """`service=~"(a+)+b"` against 50 times `a` pinned the writer; now 200 within seconds,
    the next webhook too, and /-/ready stays 200."""
    config = write_config(tmp_path, AUTH + STRATEGIES)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        started = time.monotonic()
        first = fire(server.url, "a" * 50, "2026-11-21T10:00:00Z")
        assert first.status_code == 200, first.text
        assert time.monotonic() - started < 5
        started = time.monotonic()
        matching = fire(server.url, "a" * 50 + "b", "2026-11-21T10:01:00Z")
        assert matching.status_code == 200, matching.text
        assert time.monotonic() - started < 5
        assert requests.get(f"{server.url}/-/ready", timeout=5).status_code == 200

    journal = open_journal(store)
    try:
        strategies = {a["target"]: a["strategy"] for a in all_actions(journal)}
    finally:
        journal.close()
    # fifty a's do not match (a+)+b and fall through; with the b it matches.
    assert strategies == {"a" * 50: "restart-web", "a" * 50 + "b": "catastrophic-regex"}


def _status(url: str, path: str) -> tuple[int, str]:
    response = requests.get(f"{url}{path}", timeout=5)
    return response.status_code, response.text


def test_a_stalled_writer_fails_healthy_is_killed_and_replaced(tmp_path: Path) -> None:
    limits = f"limits:\n  writer_stall_timeout: {STALL_TIMEOUT_S}s\n"
    config = write_config(tmp_path, AUTH + limits + STRATEGIES)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        master = server.process.pid
        worker = worker_of(master)
        stalled = writer_of(worker)
        assert fire(server.url, "before", "2026-11-21T10:00:00Z").status_code == 200
        assert _status(server.url, "/-/healthy")[0] == 200

        os.kill(stalled, signal.SIGSTOP)
        try:
            answers: dict[str, requests.Response] = {}
            sender = threading.Thread(
                target=lambda: answers.update(
                    held=fire(server.url, "held", "2026-11-21T10:01:00Z", timeout=60)
                )
            )
            sender.start()

            def unhealthy() -> str | None:
                code, text = _status(server.url, "/-/healthy")
                return text if code == 503 else None

            said = wait_for(unhealthy, timeout=20, what="/-/healthy to answer 503")
            assert f"(limits.writer_stall_timeout {STALL_TIMEOUT_S}s)" in said
            assert f"journal writer (pid {stalled})" in said

            sender.join(60)
            assert answers["held"].status_code == 503, answers["held"].text

            replaced = wait_for(
                lambda: [p for p in writers_of(worker) if p != stalled],
                timeout=30,
                what="a new journal writer",
            )
            wait_for(lambda: _status(server.url, "/-/healthy")[0] == 200, 30, "healthy again")
            wait_for(lambda: _status(server.url, "/-/ready")[0] == 200, 30, "ready again")
            assert not alive(stalled)
            assert worker_of(master) == worker  # only the writer was restarted
            assert writers_of(worker) == replaced

            after = fire(server.url, "after", "2026-11-21T10:02:00Z")
            assert after.status_code == 200, after.text
        finally:
            if alive(stalled):
                os.kill(stalled, signal.SIGKILL)

    journal = open_journal(store)
    try:
        services = sorted(i["labels"]["service"] for i in all_incidents(journal))
    finally:
        journal.close()
    # The held notification was answered 503 and never journaled: Alertmanager resends it.
    assert services == ["after", "before"]
