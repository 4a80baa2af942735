"""The dispatcher in the real server: gates, breaker, verification, escalation, crashes.

Real components throughout: `remediator serve` (gunicorn) on SQLite, Prometheus for
verification, Alertmanager for escalations, and real subprocesses as the remediation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

from receiver.store.sqlite import SqliteStore
from tests.support.journal import wait_for
from tests.support.pids import alive, children, dispatcher_of, worker_of, writer_of
from tests.support.processes import alertmanager, prometheus, remediator
from tests.support.receiver import AM_CONFIG, PROMETHEUS_CONFIG, TOKEN, fire, settle


def config_text(prom_url: str, am_url: str, workdir: Path, recovery: str = "4s") -> str:
    record = workdir / "argv.log"
    script = (
        "import sys, pathlib; "
        f"pathlib.Path({str(record)!r}).open('a').write(repr(sys.argv[1:]) + chr(10))"
    )
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {prom_url}}}
alertmanager: {{url: {am_url}}}
defaults:
  cooldown: 0s
  escalation_executor: am
  breaker: {{failure_threshold: 2, recovery_timeout: {recovery}}}
executors:
  local: {{type: command}}
  am: {{type: alertmanager}}
strategies:
  - name: flaky-fix
    matchers: ['alertname="Flapping"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', {script!r}, 'flaky', '{{{{ labels.service }}}}']
    verify: {{query: 'vector(0) == 1', timeout: 2s, interval: 500ms}}
  - name: good-fix
    matchers: ['alertname="Fixable"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', {script!r}, 'good', '{{{{ labels.service }}}}']
    verify: {{query: 'vector(1)', timeout: 5s, interval: 500ms}}
  - name: slow-fix
    matchers: ['alertname="Slow"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', 'import time; time.sleep(30)']
    timeout: 1m
  - name: careful-fix
    matchers: ['alertname="Careful"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', {script!r}, 'careful', '{{{{ labels.service }}}}']
    preconditions:
      - alert_not_firing: ['alertname="Upstream"', 'service="{{{{ labels.service }}}}"']
  - name: query-gated-fix
    matchers: ['alertname="QueryGated"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', {script!r}, 'gated', '{{{{ labels.service }}}}']
    preconditions:
      - query: 'vector(0) == 1'
  - name: slow-restart
    matchers: ['alertname="SlowRestart"']
    action: restart
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', {script!r}, 'restart', '{{{{ labels.service }}}}']
    idempotent: true
"""


@pytest.fixture
def stack(tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN)
    with (
        prometheus(tmp_path / "prom", PROMETHEUS_CONFIG) as prom,
        alertmanager(tmp_path / "am", AM_CONFIG) as am,
    ):
        config = tmp_path / "remediation.yml"
        config.write_text(config_text(prom.url, am.url, tmp_path))
        store_url = f"sqlite:///{tmp_path / 'journal.db'}"
        yield tmp_path, config, store_url, am


def eventually(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def escalations(am) -> list[dict]:
    alerts = requests.get(f"{am.url}/api/v2/alerts", timeout=5).json()
    return [a for a in alerts if a["labels"].get("alertname") == "RemediationFailed"]


def test_verified_success(stack):
    workdir, config, store_url, _am = stack
    with remediator(workdir, config, store_url) as server:
        fire(server, "Fixable", "web", "2026-05-01T00:00:00Z")
        journal = SqliteStore(store_url)
        (action,) = settle(journal)
    assert action["status"] == "succeeded", action
    reasons = [e["reason"] for e in action["events"]]
    assert any(r.startswith("verifying: vector(1)") for r in reasons)
    # the poll that held is journaled with its sample (receiver/verification.py)
    assert "verification sample: 1 (true)" in reasons
    assert (workdir / "argv.log").read_text().splitlines() == ["['good', 'web']"]


def test_flapping_target_opens_breaker_escalates_each_uncured_run_then_half_open_trial(stack):
    workdir, config, store_url, am = stack
    journal = SqliteStore(store_url)
    with remediator(workdir, config, store_url) as server:
        for minute in range(4):
            fire(server, "Flapping", "cart", f"2026-05-02T00:0{minute}:00Z")
            settle(journal)
        actions = settle(journal)
        assert [a["status"] for a in actions] == ["failed", "failed", "skipped", "skipped"]
        assert all("verification failed" in a["reason"] for a in actions[:2])
        # 5 polls of an empty result in 2 s: the sample is journaled once, not per poll
        for failed in actions[:2]:
            samples = [
                e["reason"] for e in failed["events"] if "verification sample" in e["reason"]
            ]
            assert samples == ["verification sample: no series (false)"]
        assert all(a["reason"].startswith("breaker_open") for a in actions[2:])
        # issue 14: escalation no longer follows the breaker opening; each incident's
        # one-step runbook ended uncured (two failed, two skipped by the open breaker),
        # so each run escalated once, journaled on its last (only) action
        eventually(
            lambda: all("escalated via am" in a["events"][-1]["reason"] for a in settle(journal)),
            "every uncured run to be escalated",
        )
        assert "breaker opened" in " ".join(e["reason"] for e in actions[1]["events"])
        breaker = journal.list_breakers()[0]
        assert (breaker["key"], breaker["state"]) == ("flaky-fix/cart", "open")

        # the four escalations carry the same labels: Alertmanager holds them as one alert
        found = escalations(am)
        assert len(found) == 1
        assert found[0]["labels"]["remediation_target"] == "cart"
        assert found[0]["labels"]["original_alertname"] == "Flapping"
        # Alertmanager keeps the latest annotations of the one alert: the open breaker's
        assert "breaker" in found[0]["annotations"]["reason"]
        assert "cart" in found[0]["annotations"]["reason"]
        # the executor ran exactly for the two admitted actions
        assert len((workdir / "argv.log").read_text().splitlines()) == 2

        time.sleep(4.5)  # recovery_timeout passes: one half-open trial is admitted
        fire(server, "Flapping", "cart", "2026-05-02T00:09:00Z")
        trial = settle(journal)[-1]
        assert trial["status"] == "failed"
        assert len((workdir / "argv.log").read_text().splitlines()) == 3
        assert journal.list_breakers()[0]["state"] == "open"  # reopened by the failed trial


def test_breaker_reset_via_api(stack):
    workdir, config, store_url, _am = stack
    journal = SqliteStore(store_url)
    with remediator(workdir, config, store_url) as server:
        for minute in range(2):
            fire(server, "Flapping", "cart", f"2026-05-03T00:0{minute}:00Z")
            settle(journal)
        listed = requests.get(f"{server.url}/api/v1/breakers", timeout=5).json()["data"]
        assert [(b["key"], b["state"]) for b in listed] == [("flaky-fix/cart", "open")]
        url = f"{server.url}/api/v1/breakers/flaky-fix/cart/reset"
        assert requests.post(url, timeout=5).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(url, headers=headers, timeout=5).status_code == 200
        missing = f"{server.url}/api/v1/breakers/flaky-fix/nowhere/reset"
        assert requests.post(missing, headers=headers, timeout=5).status_code == 404
        assert journal.list_breakers()[0]["state"] == "closed"


@pytest.mark.parametrize(
    "hostile",
    ["x; rm -rf /", "$(touch /tmp/pwned)", "../../etc/passwd", "web\n", "a" * 5000, "`id`"],
)
def test_hostile_labels_never_reach_a_process(stack, hostile):
    workdir, config, store_url, _am = stack
    journal = SqliteStore(store_url)
    with remediator(workdir, config, store_url) as server:
        summary = fire(server, "Fixable", hostile, "2026-05-04T00:00:00Z")
        assert (summary["actions_planned"], summary["actions_refused"]) == (0, 1)
        (action,) = journal.list_actions().items
    assert action["status"] == "skipped"
    assert action["reason"].startswith("refused: ")
    assert "safe pattern" in action["reason"]
    assert not (workdir / "argv.log").exists(), "the command must never have run"


def test_kill_9_while_actions_run_resolves_every_action_by_the_crash_rule(stack):
    workdir, config, store_url, _am = stack
    journal = SqliteStore(store_url)
    with remediator(workdir, config, store_url) as server:
        fire(server, "Slow", "db", "2026-05-05T00:00:00Z")  # not idempotent, no verify
        fire(server, "SlowRestart", "api", "2026-05-05T00:00:00Z")  # idempotent
        deadline = time.monotonic() + 10

        def slow_running() -> bool:  # the non-idempotent one must be caught running
            return any(a["target"] == "db" for a in journal.list_actions(status="running").items)

        while not slow_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert slow_running()
        # A crash of the whole container: master, worker, journal writer, its dispatch
        # process and the commands that runs all die at once (a command found still
        # running is tested apart, in tests/reliability/test_command_lifecycle.py).
        # Killing the master alone would let the others leave gracefully and finish it.
        worker = worker_of(server.process.pid)
        writer = writer_of(worker)
        dispatcher = dispatcher_of(writer)
        commands = children(dispatcher)
        for pid in (server.process.pid, worker, writer, dispatcher):
            os.kill(pid, signal.SIGKILL)
        for pid in commands:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # each command leads its own process group
        server.process.wait()
        gone = (worker, writer, dispatcher)
        wait_for(lambda: not any(alive(pid) for pid in gone), 20, "worker and writer gone")
    before = {a["id"]: a["status"] for a in journal.list_actions().items}
    assert "running" in before.values()
    with remediator(workdir, config, store_url, log_name="restarted.log"):
        actions = {a["target"]: a for a in settle(journal, timeout=40)}
    slow = actions["db"]
    assert slow["status"] == "failed"
    assert "interrupted by a crash; not re-run (not idempotent)" in slow["reason"]
    restart = actions["api"]
    assert restart["status"] == "succeeded"
    runs = (workdir / "argv.log").read_text().splitlines()
    assert runs.count("['restart', 'api']") in (1, 2)  # re-run at most once, by the rule
    for action in actions.values():
        statuses = [e["status"] for e in action["events"]]
        assert statuses[0] == "planned" and statuses[-1] == action["status"]
    assert journal.counts()["actions"] == 2  # none lost, none doubled


def test_dry_run_journals_what_would_be_done(stack):
    workdir, config, store_url, _am = stack
    config.write_text(
        config.read_text().replace("  cooldown: 0s", "  cooldown: 0s\n  dry_run: true")
    )
    journal = SqliteStore(store_url)
    with remediator(workdir, config, store_url) as server:
        fire(server, "Fixable", "web", "2026-05-06T00:00:00Z")
        (action,) = settle(journal)
    assert (action["status"], action["reason"]) == ("skipped", "dry_run: would run web")
    assert json.loads(json.dumps(action["params"]))["command"][-2:] == ["good", "web"]
    assert not (workdir / "argv.log").exists()


def test_preconditions_skip_with_the_reason_and_escalate(stack):
    workdir, config, store_url, am = stack
    journal = SqliteStore(store_url)
    with remediator(workdir, config, store_url) as server:
        fire(server, "Upstream", "shop", "2026-05-07T00:00:00Z")  # unmatched, but firing
        fire(server, "Careful", "shop", "2026-05-07T00:00:00Z")
        fire(server, "Careful", "other", "2026-05-07T00:00:00Z")
        fire(server, "QueryGated", "shop", "2026-05-07T00:00:00Z")
        by_key = {(a["strategy"], a["target"]): a for a in settle(journal)}
        # issue 14: a runbook whose last step a precondition skipped ends uncured, and an
        # uncured run escalates once (after its outcome commits, hence the wait)
        eventually(lambda: len(escalations(am)) == 2, "the two uncured runs to reach Alertmanager")
        sent = {
            (a["labels"]["original_alertname"], a["labels"]["remediation_target"])
            for a in escalations(am)
        }
    assert sent == {("Careful", "shop"), ("QueryGated", "shop")}  # not the cured "other"
    blocked = by_key[("careful-fix", "shop")]
    assert blocked["status"] == "skipped"
    assert blocked["reason"].startswith(
        'precondition: alert {alertname="Upstream", service="shop"}'
    )
    assert by_key[("careful-fix", "other")]["status"] == "succeeded"
    gated = by_key[("query-gated-fix", "shop")]
    assert (gated["status"], gated["reason"]) == (
        "skipped",
        "precondition: query 'vector(0) == 1' is not true",
    )
    assert (workdir / "argv.log").read_text().splitlines() == ["['careful', 'other']"]
