"""Runbooks through the whole dispatcher with real components (issue 14, "How it is
checked"): a real supervisord runs a service whose health Prometheus scrapes, so a
restart really fails verification and a rollback command really cures it; a real
Alertmanager receives the one escalation of a runbook that runs out of steps; cooldown,
lock, `wait` and `when` are exercised with real commands, notifications posted as
Alertmanager posts them.

The service (`app.py`) answers `app_release_good 1` while its release file says `good`
and 0 otherwise; a restart re-reads the same bad release, the rollback script switches
the file back. Each test gets its own receiver and journal; supervisord, Prometheus and
Alertmanager are shared by the module, the release reset to `bad` before each test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver.engine import CANCELLED_BY_RESOLUTION
from receiver.prometheus import PrometheusClient
from receiver.store.totals import ESCALATIONS_METRIC, RUNS_METRIC
from tests.support.journal import open_journal, post_webhook
from tests.support.payloads import alert, notification
from tests.support.processes import Running, alertmanager, free_port, prometheus, remediator
from tests.support.receiver import AM_CONFIG, write_config
from tests.support.runbooks import (
    RELEASE_SERVICE,
    ROLLBACK,
    poll,
    runs_of,
    seconds,
    steps_of,
    total,
)
from tests.support.supervisor import Supervisord, program, supervisord

HEALTHY = 'min(app_release_good{service="{{ labels.service }}"}) == 1'
FAIL = [sys.executable, "-c", "raise SystemExit(3)"]
SUCCEED = [sys.executable, "-c", "pass"]
SLOW_SECONDS = 2.0


@dataclass
class Stack:
    sup: Supervisord
    prom: Running
    am: Running
    release: Path
    rollbacks: Path


@dataclass
class Server:
    url: str
    journal: Any


def config_text(stack: Stack) -> str:
    steps_of_fail = f"[{', '.join(repr(a) for a in FAIL)}]"
    steps_of_ok = f"[{', '.join(repr(a) for a in SUCCEED)}]"
    slow = f"[{sys.executable!r}, '-c', 'import time; time.sleep({SLOW_SECONDS})']"
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {stack.prom.url}}}
alertmanager: {{url: {stack.am.url}}}
defaults: {{cooldown: 0s, escalation_executor: am, max_concurrent_actions: 4}}
executors:
  procs: {{type: supervisor, url: {stack.sup.url}, timeout: 20s}}
  local: {{type: command}}
  logger: {{type: log}}
  am: {{type: alertmanager}}
strategies:
  - name: restart-then-rollback
    matchers: ['alertname="BadRelease"']
    target: '{{{{ labels.service }}}}'
    steps:
      - name: restart
        action: restart
        executor: procs
        verify: {{query: '{HEALTHY}', timeout: 3s, interval: 500ms}}
      - name: rollback
        action: run
        executor: local
        command: ['/bin/sh', '{stack.rollbacks.parent / "rollback.sh"}', '{stack.release}',
                  '{stack.rollbacks}', '{{{{ labels.service }}}}']
        verify: {{query: '{HEALTHY}', timeout: 20s, interval: 500ms}}
  - name: restart-then-give-up
    matchers: ['alertname="StillBad"']
    target: '{{{{ labels.service }}}}'
    steps:
      - name: restart
        action: restart
        executor: procs
        verify: {{query: '{HEALTHY}', timeout: 2s, interval: 500ms}}
      - name: last-resort
        action: run
        executor: local
        command: {steps_of_fail}
  - name: skip-by-when
    matchers: ['alertname="WhenCase"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: try, action: run, command: {steps_of_fail}}}
      - {{name: only-if-deployed, action: run, command: {steps_of_ok},
          when: 'vector(0) == 1 and on() vector(1)'}}
      - {{name: fallback, action: run, command: {steps_of_ok}}}
  - name: wait-before-step-2
    matchers: ['alertname="WaitCase"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: try, action: run, command: {steps_of_fail}}}
      - {{name: later, action: run, command: {steps_of_ok}, wait: 2s}}
  - name: refused-render
    matchers: ['alertname="Hostile"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: echo, action: run, command: ['echo', '{{{{ labels.service }}}}']}}
      - {{name: echo-again, action: run, command: ['echo', '{{{{ labels.service }}}}']}}
  - name: refused-then-fallback
    matchers: ['alertname="HostileOnce"']
    target: fallback-target
    executor: local
    steps:
      - {{name: echo, action: run, command: ['echo', '{{{{ labels.service }}}}']}}
      - {{name: fixed, action: run, command: {steps_of_ok}}}
  - name: wait-long
    matchers: ['alertname="WaitLong"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: try, action: run, command: {steps_of_fail}}}
      - {{name: much-later, action: run, command: {steps_of_ok}, wait: 1h}}
  - name: cool-short
    matchers: ['alertname="CoolShort"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
    cooldown: 3s
  - name: cool-long
    matchers: ['alertname="CoolLong"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
    cooldown: 1h
  - name: slow-command
    matchers: ['alertname="Slow"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {slow}
  - name: last-step-skipped-by-when
    matchers: ['alertname="WhenLast"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: try, action: run, command: {steps_of_fail}}}
      - {{name: only-if-deployed, action: run, command: {steps_of_ok}, when: 'vector(0) == 1'}}
  - name: slow-then-next
    matchers: ['alertname="ResolvesMidStep"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: slow-failure, action: run,
          command: [{sys.executable!r}, '-c', 'import time; time.sleep({SLOW_SECONDS}); exit(1)']}}
      - {{name: never, action: run, command: {steps_of_ok}}}
  - name: breaker-opens
    matchers: ['alertname="Breaks"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {steps_of_fail}
    breaker: {{failure_threshold: 1, recovery_timeout: 1h}}
  - name: over-budget
    matchers: ['alertname="OverBudget"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {steps_of_ok}
    budget: {{max_actions: 1, window: 1h}}
  - name: rehearsal
    matchers: ['alertname="Rehearsal"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: {steps_of_ok}
    dry_run: true
  - name: repeat-when-it-relapses
    matchers: ['alertname="Relapse"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
    repeat_after: 2s
    budget: {{max_actions: 2, window: 1h}}
  - name: quick-restart
    matchers: ['alertname="Quick"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("runbooks")
    app, release, rollbacks = workdir / "app.py", workdir / "release", workdir / "rollbacks.log"
    app.write_text(RELEASE_SERVICE)
    release.write_text("bad\n")
    script = workdir / "rollback.sh"
    script.write_text(ROLLBACK)
    script.chmod(0o755)
    port = free_port()
    prom_config = f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: app
    static_configs: [{{targets: ['127.0.0.1:{port}'], labels: {{service: web}}}}]
"""
    command = f"{sys.executable} {app} {port} {release}"
    with (
        supervisord(workdir / "sup", program("web", numprocs=1, command=command)) as sup,
        prometheus(workdir / "prom", prom_config) as prom,
        alertmanager(workdir / "am", AM_CONFIG) as am,
    ):
        yield Stack(sup, prom, am, release, rollbacks)


@pytest.fixture
def server(stack: Stack, tmp_path: Path) -> Iterator[Server]:
    """A fresh receiver and journal, the service's release bad and Prometheus seeing it."""
    stack.release.write_text("bad\n")
    stack.rollbacks.unlink(missing_ok=True)
    client = PrometheusClient(stack.prom.url, 5.0)
    poll(
        lambda: client.is_true('count(app_release_good{service="web"} == 0)'),
        30,
        "Prometheus to scrape the bad release",
    )
    config = write_config(tmp_path, config_text(stack))
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as running:
        yield Server(running.url, open_journal(store_url))


def fire(server: Server, name: str, service: str, starts_at: str, **labels: str) -> int:
    """Post a firing alert as Alertmanager does; returns its incident's id."""
    body = notification(alert(name, service=service, starts_at=starts_at, **labels))
    response = post_webhook(server.url, body)
    assert response.status_code == 200, response.text
    return incident_id(server, name, service, starts_at, **labels)


def resolve(server: Server, name: str, service: str, starts_at: str, **labels: str) -> None:
    ended = alert(name, status="resolved", service=service, starts_at=starts_at, **labels)
    ended["endsAt"] = "2026-07-01T00:00:00Z"
    response = post_webhook(server.url, notification(ended))
    assert response.status_code == 200, response.text


def incident_id(server: Server, name: str, service: str, starts_at: str, **labels: str) -> int:
    wanted = {"alertname": name, "service": service, **labels}
    incidents = server.journal.list_incidents(limit=1000).items
    (found,) = [i for i in incidents if i["labels"] == wanted and i["starts_at"][:19] in starts_at]
    return found["id"]


def actions_of(server: Server, incident: int) -> list[dict[str, Any]]:
    """The incident's actions through the read API, oldest first, with their events."""
    response = requests.get(
        f"{server.url}/api/v1/actions", params={"incident_id": incident}, timeout=5
    )
    assert response.status_code == 200, response.text
    return sorted(response.json()["data"], key=lambda a: a["id"])


def run_ended(server: Server, incident: int, timeout: float = 60) -> dict[str, Any]:
    """Wait for the incident's (only) run to end; returns it."""

    def ended() -> dict[str, Any] | None:
        runs = runs_of(server.journal, incident)
        return runs[0] if len(runs) == 1 and runs[0]["status"] != "running" else None

    return poll(ended, timeout, f"the runbook run of incident {incident} to end")


# -- restart fails verification, rollback cures --------------------------------------------


def test_restart_fails_verification_then_rollback_cures_in_one_run(stack: Stack, server: Server):
    before = stack.sup.pids("web")
    incident = fire(server, "BadRelease", "web", "2026-06-10T00:00:00Z")
    run = run_ended(server, incident)
    assert run["status"] == "cured", run
    assert run["escalation"] is None  # a cured run owes nobody a page

    restart, rollback = actions_of(server, incident)
    assert (restart["strategy"], restart["action"], restart["status"]) == (
        "restart-then-rollback",
        "restart",
        "failed",
    )
    assert "verification failed" in restart["reason"], restart
    assert HEALTHY.replace("{{ labels.service }}", "web") in restart["reason"]
    assert (rollback["action"], rollback["status"]) == ("run", "succeeded"), rollback
    # the restart really happened (new pid) and the rollback really ran, once
    stack.sup.wait_all_running(("web",))
    assert stack.sup.pids("web")["web:web"] != before["web:web"]
    assert stack.rollbacks.read_text().splitlines() == ["rollback web"]
    assert stack.release.read_text().strip() == "good"

    journaled = steps_of(server.journal, incident)
    assert [(s["id"], s["step"]) for s in journaled] == [(restart["id"], 1), (rollback["id"], 2)]
    assert {s["run_id"] for s in journaled} == {run["id"]}
    # the next step is planned when the first ends, not before
    assert seconds(rollback["created_at"]) >= seconds(restart["finished_at"])


# -- out of steps: one escalation with the trail ---------------------------------------------


def escalations_in_alertmanager(am: Running, original: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{am.url}/api/v2/alerts",
        params={"filter": ['alertname="RemediationFailed"', f'original_alertname="{original}"']},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def test_runbook_out_of_steps_escalates_once_with_its_trail(stack: Stack, server: Server):
    starts = "2026-06-11T00:00:00Z"
    incident = fire(server, "StillBad", "web", starts)
    run = run_ended(server, incident)
    assert run["status"] == "uncured", run
    restart, last = actions_of(server, incident)
    assert restart["status"] == "failed" and "verification failed" in restart["reason"]
    assert last["status"] == "failed", last

    (sent,) = poll(lambda: escalations_in_alertmanager(stack.am, "StillBad"), 30, "the escalation")
    run = runs_of(server.journal, incident)[0]
    assert run["escalation"] == "sent", run
    labels, notes = sent["labels"], sent["annotations"]
    assert labels["remediation_strategy"] == "restart-then-give-up"
    assert (labels["remediation_target"], labels["service"]) == ("web", "web")
    assert notes["runbook_run"] == "1"
    trail = notes["runbook_trail"].splitlines()
    assert trail[0].startswith("runbook run 1, started ") and trail[0].endswith(": uncured")
    assert len(trail) == 3, trail
    for line, (label, action) in zip(
        trail[1:], [("step 1 (restart)", restart), ("step 2 (last-resort)", last)], strict=True
    ):
        assert line.startswith(f"{label} at "), line
        assert line.endswith(f": failed: {action['reason']}"), (line, action["reason"])
    assert notes["reason"], notes

    # Alertmanager re-sends the group: the incident is refreshed, nothing new is owed
    fire(server, "StillBad", "web", starts)
    # Alertmanager holds it a moment before the journal says so: the dispatcher marks it
    # sent after Alertmanager answered
    sent_total = lambda: total(server.journal, ESCALATIONS_METRIC, outcome="sent")  # noqa: E731
    poll(lambda: sent_total() >= 1, 10, "the escalation journaled as sent")
    assert sent_total() == 1
    assert len(actions_of(server, incident)) == 2
    assert len(escalations_in_alertmanager(stack.am, "StillBad")) == 1


def test_last_step_skipped_by_when_ends_uncured_and_escalates_once(stack: Stack, server: Server):
    incident = fire(server, "WhenLast", "web", "2026-06-19T00:00:00Z")
    run = run_ended(server, incident)
    assert run["status"] == "uncured", run
    tried, skipped = actions_of(server, incident)
    assert tried["status"] == "failed"
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("when: "), skipped
    (sent,) = poll(lambda: escalations_in_alertmanager(stack.am, "WhenLast"), 30, "escalation")
    trail = sent["annotations"]["runbook_trail"].splitlines()
    assert trail[1].startswith("step 1 (try) at ") and ": failed: " in trail[1], trail
    assert trail[2].startswith("step 2 (only-if-deployed) at "), trail
    assert trail[2].endswith(f": skipped (when): {skipped['reason']}"), trail
    assert runs_of(server.journal, incident)[0]["escalation"] == "sent"
    # Alertmanager holds it a moment before the journal says so: the dispatcher marks it
    # sent after Alertmanager answered
    sent_total = lambda: total(server.journal, ESCALATIONS_METRIC, outcome="sent")  # noqa: E731
    poll(lambda: sent_total() >= 1, 10, "the escalation journaled as sent")
    assert sent_total() == 1


@pytest.mark.parametrize(
    ("name", "gate", "first_status"),
    [("Breaks", "breaker_open", "uncured"), ("OverBudget", "budget", "cured")],
)
def test_step_ended_by_a_gate_ends_the_run_uncured_and_escalates_it_once(
    stack: Stack, server: Server, name: str, gate: str, first_status: str
):
    first = fire(server, name, "gated", "2026-06-21T00:00:00Z", instance="a")
    assert run_ended(server, first)["status"] == first_status
    second = fire(server, name, "gated", "2026-06-21T00:00:01Z", instance="b")
    run = run_ended(server, second)
    (skipped,) = actions_of(server, second)
    assert (skipped["status"], skipped["reason"].split(":")[0]) == ("skipped", gate), skipped
    assert run["status"] == "uncured", run
    # every incident that ended uncured is escalated, each once
    uncured = 1 + (first_status == "uncured")
    poll(
        lambda: total(server.journal, ESCALATIONS_METRIC, outcome="sent") == uncured,
        30,
        f"{uncured} escalations",
    )
    held = escalations_in_alertmanager(stack.am, name)
    assert sorted(a["labels"]["instance"] for a in held) == ["a", "b"][2 - uncured :]
    (escalation,) = [a for a in held if a["labels"]["instance"] == "b"]
    trail = escalation["annotations"]["runbook_trail"].splitlines()
    assert trail[1].endswith(f": skipped ({gate}): {skipped['reason']}"), trail


def test_dry_run_ends_the_run_without_an_escalation(server: Server):
    incident = fire(server, "Rehearsal", "web", "2026-06-22T00:00:00Z")
    run = run_ended(server, incident)
    (action,) = actions_of(server, incident)
    assert (action["status"], action["reason"]) == ("skipped", "dry_run: would run web")
    assert (run["status"], run["escalation"]) == ("dry_run", None)


def test_runbook_refused_at_every_step_by_unsafe_labels_escalates_once(
    stack: Stack, server: Server
):
    """Alert labels are untrusted: a value that fails the safe pattern refuses each step
    (nothing runs), and the run, out of steps, ends uncured and tells a person once."""
    incident = fire(server, "Hostile", "web;reboot", "2026-06-24T00:00:00Z")
    run = run_ended(server, incident)
    assert run["status"] == "uncured", run
    refused = actions_of(server, incident)
    assert [a["status"] for a in refused] == ["skipped", "skipped"], refused
    assert all(a["reason"].startswith("refused: ") for a in refused), refused
    assert all(a["started_at"] is None for a in refused)
    (sent,) = poll(lambda: escalations_in_alertmanager(stack.am, "Hostile"), 30, "escalation")
    trail = sent["annotations"]["runbook_trail"].splitlines()
    assert [line.split(" at ")[0] for line in trail[1:]] == ["step 1 (echo)", "step 2 (echo-again)"]
    assert all(": skipped (refused): refused: " in line for line in trail[1:]), trail
    # Alertmanager holds it a moment before the journal says so: the dispatcher marks it
    # sent after Alertmanager answered
    sent_total = lambda: total(server.journal, ESCALATIONS_METRIC, outcome="sent")  # noqa: E731
    poll(lambda: sent_total() >= 1, 10, "the escalation journaled as sent")
    assert sent_total() == 1


def test_step_refused_by_an_unsafe_label_is_skipped_and_the_next_step_runs(server: Server):
    incident = fire(server, "HostileOnce", "web;reboot", "2026-06-25T00:00:00Z")
    run = run_ended(server, incident)
    refused, fixed = actions_of(server, incident)
    assert refused["status"] == "skipped" and refused["reason"].startswith("refused: ")
    assert fixed["status"] == "succeeded", fixed
    assert run["status"] == "cured", run


def test_alert_resolved_while_a_step_runs_cancels_the_run_without_a_next_step(server: Server):
    starts = "2026-06-20T00:00:00Z"
    incident = fire(server, "ResolvesMidStep", "web", starts)
    poll(lambda: actions_of(server, incident)[0]["status"] == "running", 20, "step 1 to run")
    resolve(server, "ResolvesMidStep", "web", starts)
    run = run_ended(server, incident)
    (step,) = actions_of(server, incident)  # never act on a resolved alert: no step 2
    assert step["status"] == "failed", step
    assert run["status"] == "cancelled" and run["escalation"] is None, run
    assert total(server.journal, ESCALATIONS_METRIC, outcome="sent") == 0


# -- `when` and `wait` ------------------------------------------------------------------------


def test_false_when_skips_its_step_with_the_reason_and_the_runbook_goes_on(server: Server):
    incident = fire(server, "WhenCase", "web", "2026-06-12T00:00:00Z")
    run = run_ended(server, incident)
    assert run["status"] == "cured", run
    tried, conditional, fallback = actions_of(server, incident)
    assert tried["status"] == "failed"
    assert conditional["status"] == "skipped", conditional
    assert conditional["reason"].startswith("when: "), conditional
    assert "vector(0) == 1" in conditional["reason"] and "is not true" in conditional["reason"]
    assert not any(e["reason"].startswith("executed") for e in conditional["events"])
    assert fallback["status"] == "succeeded", fallback
    journaled = steps_of(server.journal, incident)
    assert [s["step"] for s in journaled] == [1, 2, 3]
    assert {s["run_id"] for s in journaled} == {run["id"]}


def test_wait_delays_the_next_step_by_its_wait(server: Server):
    incident = fire(server, "WaitCase", "web", "2026-06-13T00:00:00Z")

    def waiting_step() -> dict[str, Any] | None:
        rows = [s for s in steps_of(server.journal, incident) if s["step"] == 2]
        return rows[0] if rows else None

    planned = poll(waiting_step, 30, "step 2 to be planned")
    run = run_ended(server, incident)
    assert run["status"] == "cured", run
    tried, later = actions_of(server, incident)
    assert (tried["status"], later["status"]) == ("failed", "succeeded")
    # planned waiting for its own wait, not claimed before the step's `wait` passed
    assert planned["waiting"] == "wait" or planned["status"] != "planned", planned
    assert planned["not_before"] is not None
    assert planned["not_before"] >= seconds(tried["finished_at"]) + 2.0 - 0.001
    assert seconds(later["started_at"]) >= planned["not_before"]
    assert later["events"][0]["reason"].startswith("waiting: "), later["events"]


def test_step_waiting_for_its_wait_is_cancelled_when_the_alert_resolves(server: Server):
    starts = "2026-06-23T00:00:00Z"
    incident = fire(server, "WaitLong", "web", starts)

    def step_2_waiting() -> list[dict[str, Any]] | None:
        steps = steps_of(server.journal, incident)
        return steps if len(steps) == 2 and steps[1]["waiting"] == "wait" else None

    poll(step_2_waiting, 30, "step 2 to wait")
    resolve(server, "WaitLong", "web", starts)
    tried, later = actions_of(server, incident)
    assert tried["status"] == "failed"
    assert (later["status"], later["reason"]) == ("cancelled", CANCELLED_BY_RESOLUTION)
    assert later["started_at"] is None
    (run,) = runs_of(server.journal, incident)
    assert (run["status"], run["escalation"]) == ("cancelled", None), run


# -- gates delay: cooldown and lock --------------------------------------------------------------


def status_of(server: Server, incident: int) -> dict[str, Any]:
    (action,) = actions_of(server, incident)
    return action


def test_cooldown_delayed_action_runs_when_the_cooldown_ends(server: Server):
    first = fire(server, "CoolShort", "svc", "2026-06-14T00:00:00Z", instance="a")
    poll(lambda: status_of(server, first)["status"] == "succeeded", 30, "the first action")
    second = fire(server, "CoolShort", "svc", "2026-06-14T00:00:01Z", instance="b")

    def waiting() -> dict[str, Any] | None:
        (row,) = steps_of(server.journal, second)
        return row if row["waiting"] == "cooldown" else None

    # planned, with why it waits and when it becomes eligible (the cooldown's end)
    row = poll(waiting, 10, "the second action to wait for the cooldown")
    assert row["status"] == "planned" and row["not_before"] is not None, row
    action = poll(
        lambda: (a := status_of(server, second))["status"] == "succeeded" and a,
        30,
        "the delayed action to run",
    )
    earlier = status_of(server, first)
    assert row["not_before"] == pytest.approx(seconds(earlier["started_at"]) + 3.0, abs=0.001)
    assert seconds(action["started_at"]) >= row["not_before"]
    reasons = [e["reason"] for e in action["events"]]
    (waited,) = [r for r in reasons if r.startswith("waiting: cooldown")]  # journaled once
    assert "eligible at " in waited, reasons
    assert runs_of(server.journal, second)[0]["status"] == "cured"


def test_cooldown_delayed_action_is_cancelled_when_the_alert_resolves_first(server: Server):
    first = fire(server, "CoolLong", "svc", "2026-06-15T00:00:00Z", instance="a")
    poll(lambda: status_of(server, first)["status"] == "succeeded", 30, "the first action")
    starts = "2026-06-15T00:00:01Z"
    second = fire(server, "CoolLong", "svc", starts, instance="b")
    poll(
        lambda: status_of(server, second)["reason"].startswith("waiting: cooldown"),
        10,
        "the second action to wait for the cooldown",
    )
    resolve(server, "CoolLong", "svc", starts, instance="b")
    action = status_of(server, second)
    assert (action["status"], action["reason"]) == ("cancelled", CANCELLED_BY_RESOLUTION)
    assert action["started_at"] is None
    (run,) = runs_of(server.journal, second)
    assert run["status"] == "cancelled" and run["escalation"] is None


def test_locked_action_runs_after_the_lock_frees(server: Server):
    slow_incident = fire(server, "Slow", "shared", "2026-06-16T00:00:00Z")
    poll(lambda: status_of(server, slow_incident)["status"] == "running", 20, "the slow command")
    quick_incident = fire(server, "Quick", "shared", "2026-06-16T00:00:01Z")
    poll(
        lambda: status_of(server, quick_incident)["reason"].startswith("waiting: locked"),
        10,
        "the quick action to wait for the lock",
    )
    quick = poll(
        lambda: (a := status_of(server, quick_incident))["status"] == "succeeded" and a,
        30,
        "the locked action to run",
    )
    slow = status_of(server, slow_incident)
    assert slow["status"] == "succeeded", slow
    # never two actions on one target at once: the quick one started after the slow ended
    assert seconds(quick["started_at"]) >= seconds(slow["finished_at"])
    reasons = [e["reason"] for e in quick["events"]]
    assert sum(r.startswith("waiting: locked") for r in reasons) == 1, reasons


# -- repeat_after: a cure that does not last -----------------------------------------------------


def test_cure_that_does_not_last_reruns_the_runbook_then_escalates_out_of_runs(
    stack: Stack, server: Server
):
    incident = fire(server, "Relapse", "web", "2026-06-17T00:00:00Z")

    def second_run_ended() -> list[dict[str, Any]] | None:
        runs = runs_of(server.journal, incident)
        return runs if len(runs) == 2 and runs[1]["escalation"] == "sent" else None

    first, second = poll(second_run_ended, 60, "run 2 to end and escalate")
    assert (first["run"], first["status"]) == (1, "cured"), first
    # run 2 was cured too (its step succeeded): it keeps that status, and owes the one
    # escalation saying the cure did not last and no run is left
    assert (second["run"], second["status"]) == (2, "cured"), second
    assert first["escalation"] is None
    # run 2 started repeat_after (2 s) after run 1's cure, from step 1
    assert second["started_at"] >= first["ended_at"] + 2.0 - 0.001
    one, two = actions_of(server, incident)
    assert (one["status"], two["status"]) == ("succeeded", "succeeded")
    assert [(s["step"], s["run_id"]) for s in steps_of(server.journal, incident)] == [
        (1, first["id"]),
        (1, second["id"]),
    ]
    (sent,) = poll(lambda: escalations_in_alertmanager(stack.am, "Relapse"), 30, "escalation")
    assert sent["annotations"]["runbook_run"] == "2"
    assert sent["annotations"]["runbook_trail"].splitlines()[0].endswith(": cured")
    assert "2 runs allowed" in sent["annotations"]["reason"], sent["annotations"]
    # each run ended once: two cures, no uncured run counted on top
    assert (
        total(server.journal, RUNS_METRIC, strategy="repeat-when-it-relapses", status="cured") == 2
    )
    assert (
        total(server.journal, RUNS_METRIC, strategy="repeat-when-it-relapses", status="uncured")
        == 0
    )


def test_resolved_alert_stops_the_repeat_of_a_cured_run(server: Server):
    starts = "2026-06-18T00:00:00Z"
    incident = fire(server, "Relapse", "web", starts)
    (run,) = poll(
        lambda: [r for r in runs_of(server.journal, incident) if r["status"] == "cured"],
        30,
        "run 1 to be cured",
    )
    assert run["repeat_at"] is not None  # due again if the alert still fires then
    resolve(server, "Relapse", "web", starts)
    (run,) = runs_of(server.journal, incident)
    assert (run["status"], run["repeat_at"]) == ("cured", None), run
