"""Kill -9 mid-wave (issue 15 on the crash rule): the whole `remediator serve` is SIGKILLed
while a fleet's stage runs, then started again on the same journal. The wave must go on
from the journal: the interrupted actions are resolved by the crash rule (their strategy
verifies, so a true verification makes them succeeded, not re-run), the wave's remaining
targets are acted on, each target once, and never more than `max_in_flight` at once,
counted from the commands' own start and end lines (they outlive the kill).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.journal import all_actions, open_journal, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.receiver import write_config
from tests.support.restartable import restartable_remediator

#: act.sh RUNS TARGET: record its start, take 2 s, record its end
ACT = """#!/bin/sh
echo "start $2 $(date +%s.%N)" >> "$1"
sleep 2
echo "end $2 $(date +%s.%N)" >> "$1"
"""
TARGETS = [f"web-{n}" for n in range(1, 7)]
FINAL = ("succeeded", "failed", "timed_out", "skipped", "cancelled")


def fleet_config(script: Path, runs: Path, prometheus_url: str) -> str:
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: '{prometheus_url}'}}
defaults: {{cooldown: 0s, max_concurrent_actions: 4}}
executors:
  local: {{type: command}}
strategies:
  - name: heal-web
    matchers: ['alertname="CrashWave"']
    target: '{{{{ labels.instance }}}}'
    executor: local
    action: run
    command: ['/bin/sh', '{script}', '{runs}', '{{{{ labels.instance }}}}']
    timeout: 20s
    verify: {{query: 'vector(1)', timeout: 10s, interval: 500ms}}
    fleet:
      max_in_flight: 2
      progressive: {{min_targets: 3, gather: 1s, canary: 1, stages: [50%, 100%], pause: 0s}}
"""


def lines(runs: Path) -> list[tuple[str, str, float]]:
    if not runs.exists():
        return []
    found = []
    for line in runs.read_text().splitlines():
        phase, target, at = line.split()
        found.append((phase, target, float(at)))
    return found


def peak(events: list[tuple[str, str, float]]) -> int:
    running = top = 0
    for phase, _target, _at in sorted(events, key=lambda e: (e[2], e[0] == "start")):
        running += 1 if phase == "start" else -1
        top = max(top, running)
    return top


def test_kill9_mid_wave_goes_on_from_the_journal_each_target_once(
    tmp_path: Path, store_url: str, prometheus_server
) -> None:
    script = tmp_path / "act.sh"
    script.write_text(ACT)
    runs = tmp_path / "runs.log"
    config = write_config(tmp_path, fleet_config(script, runs, prometheus_server.url))
    journal = open_journal(store_url)
    body = notification(
        *[alert("CrashWave", service="web", instance=t) for t in TARGETS],
        group_key='{}:{alertname="CrashWave"}',
    )
    with restartable_remediator(tmp_path, config, store_url) as server:
        assert post_webhook(server.url, body).status_code == 200
        # the canary (web-1) has ended and the first stage runs: kill it then
        wait_for(
            lambda: sum(1 for p, t, _ in lines(runs) if p == "start" and t != "web-1") >= 1,
            60,
            "the first stage to start after the canary",
        )
        server.kill9()
        server.start()
        assert post_webhook(server.url, body).status_code == 200  # Alertmanager re-sends

        def settled() -> list[dict] | None:
            actions = all_actions(journal)
            done = len(actions) >= 6 and all(a["status"] in FINAL for a in actions)
            return actions if done else None

        actions = wait_for(settled, 120, "every action of the wave to end")
        assert server.alive(), server.output()[-3000:]

    events = lines(runs)
    starts = sorted(t for p, t, _ in events if p == "start")
    assert starts == TARGETS, events  # each target acted on once, across the kill
    assert sorted((a["target"], a["status"]) for a in actions) == [
        (t, "succeeded") for t in TARGETS
    ], [(a["target"], a["status"], a["reason"]) for a in actions]
    assert peak(events) <= 2, events
