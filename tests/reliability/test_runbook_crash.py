"""Kill -9 mid-runbook (issue 14's crash rule for runbooks): the whole `remediator serve`
(gunicorn master, worker, journal writer and its dispatcher) is SIGKILLed while step 1's
command runs, then started again on the same journal. The run must resume: the
interrupted step is resolved by the dispatcher's crash rule (dispatcher.py), the next step
runs if that rule says step 1 failed, and no step runs twice unless the rule says it is
safe to (an idempotent step is re-run once).

Each step runs a real script that appends "start <action id> <step>" and "end ..." lines
to a file (the command outlives the kill, as in production), so how often each step
really ran is counted from the file, not from the journal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.journal import (
    all_actions,
    open_journal,
    post_webhook,
    read_runs,
    wait_for,
)
from tests.support.payloads import alert, notification
from tests.support.receiver import write_config
from tests.support.restartable import restartable_remediator
from tests.support.runbooks import runs_of, seconds

#: step.sh RUNS STEP SECONDS STATUS: record its start, take SECONDS, record its end, exit
STEP = """#!/bin/sh
echo "start $REMEDIATOR_ACTION_ID $2" >> "$1"
sleep "$3"
echo "end $REMEDIATOR_ACTION_ID $2" >> "$1"
exit "$4"
"""
#: Long enough that the kill surely lands while it runs; it ends before the orphan is
#: adopted (stale heartbeat, 10 s), so the crash rule finds its group gone.
STEP1_SECONDS = 3
STARTS = "2026-08-01T00:00:00Z"


def runbook_config(script: Path, runs: Path, prometheus_url: str, kind: str) -> str:
    """One runbook of two steps; step 1 is `kind`: plain (not idempotent, not verified),
    idempotent (and its command exits 1), or verified (a true query)."""
    step1_status = 1 if kind == "idempotent" else 0
    extra = {
        "plain": "",
        "idempotent": "\n        idempotent: true",
        "verified": "\n        verify: {query: 'vector(1)', timeout: 10s, interval: 500ms}",
    }[kind]
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: '{prometheus_url}'}}
defaults: {{cooldown: 0s}}
executors:
  local: {{type: command}}
strategies:
  - name: two-steps
    matchers: ['alertname="CrashStep"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - name: slow-fix
        action: run
        command: ['/bin/sh', '{script}', '{runs}', '1', '{STEP1_SECONDS}', '{step1_status}']
        timeout: 20s{extra}
      - name: second
        action: run
        command: ['/bin/sh', '{script}', '{runs}', '2', '0', '0']
        timeout: 20s
"""


@pytest.mark.parametrize("kind", ["plain", "idempotent", "verified"])
def test_kill9_while_step_1_runs_resumes_the_run_and_runs_no_step_twice(
    tmp_path: Path, store_url: str, prometheus_server, kind: str
) -> None:
    script = tmp_path / "step.sh"
    script.write_text(STEP)
    runs_file = tmp_path / "runs.log"
    config = write_config(tmp_path, runbook_config(script, runs_file, prometheus_server.url, kind))
    journal = open_journal(store_url)

    with restartable_remediator(tmp_path, config, store_url) as server:
        body = notification(alert("CrashStep", service="crashsvc", starts_at=STARTS))
        assert post_webhook(server.url, body).status_code == 200
        wait_for(lambda: read_runs(runs_file).total >= 1, 20, "step 1's command to start")
        (running,) = all_actions(journal)
        assert running["status"] == "running", running
        server.kill9()  # mid-step: its command keeps running, its row stays `running`
        assert read_runs(runs_file).ends[running["id"]] == 0, "the kill came too late"

        server.start()
        # the alert still fires: Alertmanager re-sends the group; nothing new is planned
        assert post_webhook(server.url, body).status_code == 200

        def ended() -> dict | None:
            (run,) = runs_of(journal, running["incident_id"])
            return run if run["status"] != "running" else None

        run = wait_for(ended, 60, "the runbook run to end after the restart")
        actions = all_actions(journal)
        assert server.alive(), server.output()[-3000:]

    runs = read_runs(runs_file)
    first = actions[0]
    reasons = [e["reason"] for e in first["events"]]
    where = f"{kind}: {[(a['id'], a['status'], a['reason']) for a in actions]} {reasons}"
    assert first["id"] == running["id"], where
    # adopted by the restarted process, never started a second time unless the rule
    # re-runs it (idempotent), and then exactly once more, after the first copy ended
    assert any("after a crash" in r and r.startswith("adopted by") for r in reasons), where
    assert runs.starts[first["id"]] == (2 if kind == "idempotent" else 1), where
    assert runs.values[first["id"]] == {"1"}, where
    # never two copies at once: each start of step 1 is followed by its end
    phases = [
        line.split()[0]
        for line in runs_file.read_text().splitlines()
        if line.split()[1] == str(first["id"])
    ]
    assert phases == ["start", "end"] * runs.starts[first["id"]], phases

    if kind == "verified":
        # verification passed after the crash: cured by step 1, step 2 never planned
        assert first["status"] == "succeeded", where
        assert first["reason"] == "interrupted by a crash; verification passed, not re-run"
        assert len(actions) == 1, where
        assert run["status"] == "cured", run
        return

    if kind == "plain":
        assert first["status"] == "failed", where
        assert first["reason"].startswith("interrupted by a crash; not re-run (not idempotent)")
    else:
        assert first["status"] == "failed", where
        assert first["reason"].startswith("after a crash: "), where
        assert sum("re-running (idempotent)" in r for r in reasons) == 1, where
    # the next step ran, once, in the same run, after step 1 ended
    assert len(actions) == 2, where
    second = actions[1]
    assert (second["status"], second["incident_id"]) == ("succeeded", first["incident_id"])
    assert runs.starts[second["id"]] == 1 and runs.values[second["id"]] == {"2"}, where
    assert second["started_at"] >= first["finished_at"], where
    assert run["status"] == "cured" and run["escalation"] is None, run


# -- waits survive a crash --------------------------------------------------------------------

COOLDOWN_SECONDS = 4.0
STEP_WAIT_SECONDS = 3.0


def waiting_config(script: Path, runs: Path) -> str:
    """A quick command behind a cooldown, and a runbook whose step 2 waits after step 1
    fails; each command records its runs."""
    record = f"['/bin/sh', '{script}', '{runs}', 'x', '0', '{{status}}']"
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
defaults: {{cooldown: 0s}}
executors:
  local: {{type: command}}
strategies:
  - name: cooled
    matchers: ['alertname="Cooled"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    cooldown: {COOLDOWN_SECONDS:g}s
    command: {record.format(status=0)}
  - name: waits
    matchers: ['alertname="Waits"']
    target: '{{{{ labels.service }}}}'
    executor: local
    steps:
      - {{name: first, action: run, command: {record.format(status=1)}}}
      - {{name: later, action: run, command: {record.format(status=0)},
          wait: {STEP_WAIT_SECONDS:g}s}}
"""


def test_cooldown_wait_survives_kill9_and_runs_once_when_it_ends(
    tmp_path: Path, store_url: str
) -> None:
    script = tmp_path / "step.sh"
    script.write_text(STEP)
    runs_file = tmp_path / "runs.log"
    config = write_config(tmp_path, waiting_config(script, runs_file))
    journal = open_journal(store_url)

    def fire(instance: str, starts: str) -> None:
        body = notification(alert("Cooled", service="svc", instance=instance, starts_at=starts))
        assert post_webhook(server.url, body).status_code == 200

    with restartable_remediator(tmp_path, config, store_url) as server:
        fire("a", "2026-08-02T00:00:00Z")
        wait_for(lambda: read_runs(runs_file).total == 1, 20, "the first action to run")
        fire("b", "2026-08-02T00:00:01Z")

        def waiting() -> dict | None:
            actions = all_actions(journal)
            late = actions[-1] if len(actions) == 2 else None
            return late if late and late["reason"].startswith("waiting: cooldown") else None

        delayed = wait_for(waiting, 10, "the second action to wait for the cooldown")
        server.kill9()
        server.start()

        def ran() -> list | None:
            actions = all_actions(journal)
            return actions if actions[-1]["status"] not in ("planned", "running") else None

        first, second = wait_for(ran, 30, "the delayed action to run after the restart")

    runs = read_runs(runs_file)
    assert second["id"] == delayed["id"]
    assert second["status"] == "succeeded", second
    assert (runs.starts[first["id"]], runs.starts[second["id"]]) == (1, 1)
    assert seconds(second["started_at"]) >= seconds(first["started_at"]) + COOLDOWN_SECONDS


def test_step_wait_survives_kill9_and_the_step_runs_once_after_it(
    tmp_path: Path, store_url: str
) -> None:
    script = tmp_path / "step.sh"
    script.write_text(STEP)
    runs_file = tmp_path / "runs.log"
    config = write_config(tmp_path, waiting_config(script, runs_file))
    journal = open_journal(store_url)

    with restartable_remediator(tmp_path, config, store_url) as server:
        body = notification(alert("Waits", service="svc", starts_at="2026-08-03T00:00:00Z"))
        assert post_webhook(server.url, body).status_code == 200

        def step_2_waiting() -> list | None:
            actions = all_actions(journal)
            return actions if len(actions) == 2 and actions[1]["status"] == "planned" else None

        wait_for(step_2_waiting, 20, "step 2 to wait")
        server.kill9()
        server.start()

        def ended() -> dict | None:
            (run,) = runs_of(journal, all_actions(journal)[0]["incident_id"])
            return run if run["status"] != "running" else None

        run = wait_for(ended, 30, "the run to end after the restart")
        first, second = all_actions(journal)

    runs = read_runs(runs_file)
    assert run["status"] == "cured", run
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert (runs.starts[first["id"]], runs.starts[second["id"]]) == (1, 1)
    started, ended_at = seconds(second["started_at"]), seconds(first["finished_at"])
    assert started >= ended_at + STEP_WAIT_SECONDS - 0.001


def test_alert_resolved_during_the_crash_cancels_the_run_without_a_next_step(
    tmp_path: Path, store_url: str, prometheus_server
) -> None:
    script = tmp_path / "step.sh"
    script.write_text(STEP)
    runs_file = tmp_path / "runs.log"
    config = write_config(
        tmp_path, runbook_config(script, runs_file, prometheus_server.url, "plain")
    )
    journal = open_journal(store_url)

    with restartable_remediator(tmp_path, config, store_url) as server:
        firing = alert("CrashStep", service="crashsvc", starts_at=STARTS)
        assert post_webhook(server.url, notification(firing)).status_code == 200
        wait_for(lambda: read_runs(runs_file).total >= 1, 20, "step 1's command to start")
        (running,) = all_actions(journal)
        server.kill9()
        server.start()
        resolved = {**firing, "status": "resolved", "endsAt": "2026-08-01T00:05:00Z"}
        assert post_webhook(server.url, notification(resolved)).status_code == 200

        def ended() -> dict | None:
            (run,) = runs_of(journal, running["incident_id"])
            return run if run["status"] != "running" else None

        run = wait_for(ended, 60, "the runbook run to end after the restart")
        actions = all_actions(journal)

    (only,) = actions  # never act on a resolved alert: no step 2
    assert only["status"] == "failed", only
    assert only["reason"].startswith("interrupted by a crash; not re-run (alert resolved)")
    assert read_runs(runs_file).starts[only["id"]] == 1
    assert run["status"] == "cancelled" and run["escalation"] is None, run


def test_step_1_command_outliving_the_crash_is_waited_for_before_step_2_starts(
    tmp_path: Path, store_url: str, prometheus_server
) -> None:
    """Step 0 of the crash rule: a command still running when its orphan is adopted
    (stale heartbeat, 10 s) is waited for; the next step starts only after it ended."""
    script = tmp_path / "step.sh"
    script.write_text(STEP)
    runs_file = tmp_path / "runs.log"
    text = runbook_config(script, runs_file, prometheus_server.url, "plain")
    text = text.replace(f"'1', '{STEP1_SECONDS}', '0'", "'1', '15', '0'")
    config = write_config(tmp_path, text)
    journal = open_journal(store_url)

    with restartable_remediator(tmp_path, config, store_url) as server:
        body = notification(alert("CrashStep", service="crashsvc", starts_at=STARTS))
        assert post_webhook(server.url, body).status_code == 200
        wait_for(lambda: read_runs(runs_file).total >= 1, 20, "step 1's command to start")
        # the crash must come after the command's process group is journaled (the
        # dispatcher records it just after the spawn): that is the orphan step 0 adopts
        (running,) = wait_for(
            lambda: [
                a
                for a in all_actions(journal)
                if any(e["reason"].startswith("command started") for e in a["events"])
            ],
            20,
            "step 1's process group to be journaled",
        )
        server.kill9()
        server.start()

        def ended() -> dict | None:
            (run,) = runs_of(journal, running["incident_id"])
            return run if run["status"] != "running" else None

        run = wait_for(ended, 60, "the runbook run to end after the restart")
        first, second = all_actions(journal)

    reasons = [e["reason"] for e in first["events"]]
    assert any("was still running after the crash" in r for r in reasons), reasons
    assert first["status"] == "failed", first
    assert "not re-run (not idempotent)" in first["reason"] and "it ended" in first["reason"]
    lines = runs_file.read_text().splitlines()
    assert lines == [
        f"start {first['id']} 1",
        f"end {first['id']} 1",
        f"start {second['id']} 2",
        f"end {second['id']} 2",
    ], lines
    assert second["status"] == "succeeded" and run["status"] == "cured", (second, run)
