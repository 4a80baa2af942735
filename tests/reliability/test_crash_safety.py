"""Crash safety: SIGKILL the server again and again while Alertmanager-like traffic flows.

A client posts a stream of notifications, retrying each one until it gets a 200, as
Alertmanager does, while the test kills the whole `remediator serve` (gunicorn master,
worker and journal writer) with SIGKILL several times, each time while one of its
actions is running, and starts it again on the same port and journal. The strategies
run a real command that appends "start <action id> <fingerprint>" and "end ..." lines
to a file, so that how often each action really ran is observable. After the last
restart the dispatcher settles and the test checks the contract:

- every notification that got a 200 is in the journal: each of its alerts has exactly
  one incident, in the state the notification left it (firing or resolved);
- no action was lost: each incident has exactly one action, in a final state;
- no action ran twice: a `run` strategy without `idempotent: true` ran its command at
  most once; an idempotent one at most once more per crash-rule re-run; a verifying one
  at most once (the crash rule verifies instead of re-running);
- actions a killed process left `running` were resolved by the documented crash rule
  (verify, else re-run if idempotent and still firing, else failed), and it did happen.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from receiver.engine import CANCELLED_BY_RESOLUTION
from tests.support.journal import (
    all_incidents,
    iso,
    open_journal,
    post_webhook,
    read_runs,
    settle,
    wait_for,
    write_recorder,
)
from tests.support.payloads import alert, notification
from tests.support.receiver import write_config
from tests.support.restartable import RestartableServer, restartable_remediator

KILLS = 4
COMMAND_SECONDS = 0.6
KINDS = ("once", "idem", "verify")
BASE = datetime(2026, 5, 1, tzinfo=UTC)


def crash_config(recorder: Path, runs: Path, prometheus_url: str) -> str:
    fingerprint = "{{ alert.fingerprint }}"
    command = f"['/bin/sh', '{recorder}', '{runs}', '{fingerprint}', '{COMMAND_SECONDS}']"
    common = f"""    action: run
    executor: local
    target: '{{{{ labels.id }}}}'
    command: {command}
    timeout: 20s"""
    return f"""
server:
  auth: {{bearer_token_file: token}}
prometheus: {{url: '{prometheus_url}'}}
defaults:
  max_concurrent_actions: 6
  cooldown: 0s
executors:
  local: {{type: command}}
strategies:
  - name: run-once
    matchers: ['alertname="CrashOnce"']
{common}
  - name: run-idempotent
    matchers: ['alertname="CrashIdem"']
    idempotent: true
{common}
  - name: run-verified
    matchers: ['alertname="CrashVerify"']
{common}
    verify: {{query: 'vector(1)', timeout: 10s, interval: 500ms}}
"""


STRATEGY_OF = {"once": "run-once", "idem": "run-idempotent", "verify": "run-verified"}


def crash_alert(number: int, status: str = "firing") -> dict[str, Any]:
    kind = KINDS[number % len(KINDS)]
    starts = BASE + timedelta(seconds=number)
    ends = iso(starts + timedelta(seconds=30)) if status == "resolved" else None
    body = alert(
        f"Crash{kind.capitalize()}",
        status=status,
        starts_at=iso(starts),
        id=f"a{number}",
        service="crashsvc",
    )
    if ends:
        body["endsAt"] = ends
    return body


class StreamingClient(threading.Thread):
    """Posts notification after notification; retries each until 200 (like Alertmanager)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.acked: list[dict[str, Any]] = []  # bodies that got a 200, in order
        self.attempts = 0
        self.refused: Counter = Counter()  # non-200 answers and connection errors
        self.error: str | None = None

    def notification(self, number: int) -> dict[str, Any]:
        """Alert `number` is new; `number - 1` is re-sent firing (a repeat); every fourth
        notification resolves alert `number - 3`, as a group carries recent resolutions."""
        alerts = [crash_alert(number)]
        if number >= 1:
            alerts.append(crash_alert(number - 1))
        if number >= 3 and number % 4 == 0:
            alerts.append(crash_alert(number - 3, status="resolved"))
        return notification(*alerts, group_key=f'{{}}:{{service="crashsvc",n="{number}"}}')

    def run(self) -> None:
        number = 0
        while not self.stop.is_set() and number < 400:
            body = self.notification(number)
            deadline = time.monotonic() + 60
            while True:
                self.attempts += 1
                try:
                    response = post_webhook(self.url, body, timeout=10)
                    if response.status_code == 200:
                        self.acked.append(body)
                        break
                    self.refused[response.status_code] += 1
                    if response.status_code < 500:
                        self.error = f"notification {number}: {response.text}"
                        return
                except requests.RequestException as exc:
                    self.refused[type(exc).__name__] += 1
                if time.monotonic() > deadline:
                    self.error = f"notification {number} never got a 200 within 60s"
                    return
                time.sleep(0.1)
            number += 1
            time.sleep(0.08)


def live_running(journal: Any, dead_workers: set[str]) -> list[dict[str, Any]]:
    running = journal.list_actions(status="running", limit=1000).items
    return [a for a in running if a["claimed_by"] not in dead_workers]


def kill_while_running(server: RestartableServer, journal: Any, dead: set[str]) -> None:
    """SIGKILL the server while one of its actions runs (or after 8 s if none does)."""
    with suppress(AssertionError):  # none running: still kill, between actions is a case too
        wait_for(lambda: live_running(journal, dead), 8.0, "an action to be running")
    server.kill9()
    dead.update(a["claimed_by"] for a in journal.list_actions(status="running").items)


def test_sigkill_loop_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, store_url: str, prometheus_server
) -> None:
    runs_file = tmp_path / "runs.log"
    config = write_config(
        tmp_path, crash_config(write_recorder(tmp_path), runs_file, prometheus_server.url)
    )
    journal = open_journal(store_url)
    rng = random.Random(20260501)
    dead_workers: set[str] = set()

    with restartable_remediator(tmp_path, config, store_url) as server:
        client = StreamingClient(server.url)
        client.start()
        try:
            for _kill in range(KILLS):
                acked = len(client.acked)
                wait_for(lambda a=acked: len(client.acked) >= a + 3, 30, "traffic to flow")
                time.sleep(rng.uniform(0.0, 0.5))
                kill_while_running(server, journal, dead_workers)
                time.sleep(rng.uniform(0.1, 0.6))  # the client keeps retrying meanwhile
                server.start()
            acked = len(client.acked)
            wait_for(lambda: len(client.acked) >= acked + 5, 30, "traffic after the last crash")
        finally:
            client.stop.set()
            client.join(70)
        assert client.error is None, client.error
        assert not client.is_alive()
        assert server.starts == KILLS + 1

        # the crash rule needs a stale heartbeat (10 s) before it adopts an orphan
        sent = {a["labels"]["id"] for body in client.acked for a in body["alerts"]}
        actions = settle(journal, expected=len(sent), timeout=90)
        assert server.alive(), server.output()[-3000:]

    incidents = all_incidents(journal)
    runs = read_runs(runs_file)

    # -- every 200-acknowledged notification is in the journal, whole -------------
    expected_status: dict[tuple[str, str], str] = {}
    for body in client.acked:
        for item in body["alerts"]:
            key = (item["fingerprint"], item["startsAt"])
            if item["status"] == "resolved" or key not in expected_status:
                expected_status[key] = item["status"]
    keys = Counter((i["fingerprint"], i["starts_at"]) for i in incidents)
    assert set(keys) == set(expected_status), "journal incidents differ from acknowledged alerts"
    assert max(keys.values()) == 1, "an alert got two incidents"
    wrong = {
        (i["fingerprint"], i["starts_at"])
        for i in incidents
        if i["status"] != expected_status[(i["fingerprint"], i["starts_at"])]
    }
    assert not wrong, f"incidents not in the state their notifications left them: {wrong}"
    stored = journal.counts()["notifications"]
    assert len(client.acked) <= stored <= client.attempts  # a 200 lost in a kill is retried

    # -- no action lost: exactly one per incident, every one final ------------------
    per_incident = Counter(a["incident_id"] for a in actions)
    assert set(per_incident) == {i["id"] for i in incidents}
    assert set(per_incident.values()) == {1}, "an incident got more or fewer than one action"
    fingerprint_of = {i["id"]: i["fingerprint"] for i in incidents}

    # -- no action ran twice, and orphans were resolved by the documented rule ---------
    adopted = 0
    for action in actions:
        reasons = [e["reason"] for e in action["events"]]
        crashed = any("after a crash" in r for r in reasons)
        reruns = sum("re-running (idempotent)" in r for r in reasons)
        adopted += crashed
        started = runs.starts[action["id"]]
        where = f"action {action['id']} ({action['strategy']}, {action['status']}): {reasons}"
        if started:
            assert runs.values[action["id"]] == {fingerprint_of[action["incident_id"]]}, where
        if action["status"] == "cancelled":
            assert action["reason"] == CANCELLED_BY_RESOLUTION, where
            assert started == 0, where
            continue
        assert action["status"] in ("succeeded", "failed"), where
        if action["strategy"] == "run-idempotent":
            assert started <= 1 + reruns, where
        else:
            assert reruns == 0, where
            assert started <= 1, where
        if not crashed:
            assert action["status"] == "succeeded", where
            assert (started, runs.ends[action["id"]]) == (1, 1), where
            continue
        # adopted after a crash: resolved exactly as the README's crash rule says
        if action["strategy"] == "run-verified":
            assert action["status"] == "succeeded", where
            assert action["reason"] == "interrupted by a crash; verification passed, not re-run"
        elif action["strategy"] == "run-once":
            assert action["status"] == "failed", where
            assert action["reason"].startswith("interrupted by a crash; not re-run"), where
        elif reruns:
            assert action["reason"].startswith("after a crash: "), where
        else:
            assert action["reason"] == "interrupted by a crash; not re-run (alert resolved)", where
    assert adopted >= 1, "no kill hit a running action: the crash rule was not exercised"
    assert runs.total >= len(actions) // 2  # the commands really ran
