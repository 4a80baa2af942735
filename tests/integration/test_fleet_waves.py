"""Fleets through the real server (issue 15, "the 30-target case"): 30 instances of one
service fire HighErrorRatio in one notification; the strategy's fleet has
`max_in_flight: 10%` and a progressive wave. A real `remediator serve` runs a real command
per action (it records its start and end), a real Alertmanager receives the escalations.

- A fault the action cures: canary first, then the stages; all 30 acted on, never more
  than 3 (10% of 30) at once, as the journal's start and end times show.
- A shared fault no action can cure (the command fails): the canary's one action, then
  the wave halts: the other 29 are skipped `halted: ...`, the fleet's breaker opens, and
  Alertmanager holds exactly ONE escalation for the fleet.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.journal import open_journal, post_webhook, settle, wait_for
from tests.support.payloads import alert, notification
from tests.support.postgres import postgres_schema
from tests.support.processes import Running, alertmanager, remediator
from tests.support.receiver import AM_CONFIG, write_config

pytestmark = pytest.mark.integration

TARGETS = [f"web-{n:02d}" for n in range(1, 31)]
STARTS = "2026-11-29T10:00:00Z"
#: act.py RECORD TARGET EXIT: one line at its start and one at its end, then exits EXIT
ACT = """import sys, time
record, target, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(record, "a") as out:
    out.write(f"start {target} {time.time()}\\n")
time.sleep(0.3)
with open(record, "a") as out:
    out.write(f"end {target} {time.time()}\\n")
sys.exit(code)
"""


def config_text(workdir: Path, am: Running, code: int, progressive: bool = True) -> str:
    script = workdir / "act.py"
    script.write_text(ACT)
    record = workdir / "record.log"
    command = [sys.executable, str(script), str(record), "{{ labels.instance }}", str(code)]
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
alertmanager: {{url: {am.url}}}
defaults: {{cooldown: 0s, escalation_executor: am, max_concurrent_actions: 8}}
executors:
  local: {{type: command}}
  am: {{type: alertmanager}}
strategies:
  - name: heal-web
    matchers: ['alertname="HighErrorRatio"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: {command!r}
    timeout: 20s
    breaker: {{failure_threshold: 50, recovery_timeout: 10m}}
    fleet:
      max_in_flight: 10%
""" + (PROGRESSIVE if progressive else "")


PROGRESSIVE = """      progressive:
        min_targets: 3
        gather: 1s
        canary: 1
        stages: [25%, 50%, 100%]
        pause: 0s
        max_failures: 2
"""


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Running]:
    with alertmanager(tmp_path / "am", AM_CONFIG) as running:
        yield running


@contextmanager
def serve(
    tmp_path: Path, am: Running, code: int, journal: str = "sqlite", progressive: bool = True
) -> Iterator[tuple[Running, Any]]:
    config = write_config(tmp_path, config_text(tmp_path, am, code, progressive))
    with ExitStack() as stack:
        if journal == "postgresql":
            store = stack.enter_context(postgres_schema())
        else:
            store = f"sqlite:///{tmp_path / 'journal.db'}"
        server = stack.enter_context(remediator(tmp_path, config, store))
        yield server, open_journal(store)


def fire_all(server: Running) -> None:
    alerts = [
        alert("HighErrorRatio", service="web", instance=target, starts_at=STARTS)
        for target in TARGETS
    ]
    body = notification(*alerts, group_key='{}:{alertname="HighErrorRatio"}')
    assert post_webhook(server.url, body).status_code == 200


def peak_in_flight(record: Path) -> int:
    """The most commands running at once, from their own start and end lines."""
    events = []
    for line in record.read_text().splitlines():
        phase, _target, at = line.split()
        events.append((float(at), 1 if phase == "start" else -1))
    peak = running = 0
    for _at, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


def fleet_escalations(am: Running) -> list[dict[str, Any]]:
    alerts = requests.get(f"{am.url}/api/v2/alerts", timeout=5).json()
    return [a for a in alerts if a["labels"].get("remediation_strategy") == "heal-web"]


def test_a_curable_fault_on_30_targets_goes_in_waves_never_more_than_3_at_once(
    tmp_path: Path, am: Running
):
    with serve(tmp_path, am, code=0) as (server, journal):
        fire_all(server)
        actions = settle(journal, 30, timeout=120)
        assert [a["status"] for a in actions] == ["succeeded"] * 30
        record = tmp_path / "record.log"
        assert peak_in_flight(record) == 3  # 10% of 30, and the limit was reached
        first = record.read_text().splitlines()[0].split()[1]
        assert first == "web-01"  # the canary: the wave's first target by name
        fleets = requests.get(f"{server.url}/api/v1/fleets", timeout=5).json()["data"]
        assert [(f["strategy"], f["fleet"]) for f in fleets] == [("heal-web", "web")]
        assert fleets[0]["wave"]["phase"] == "done"
        assert fleets[0]["wave"]["acted_on"] == 30
        assert fleet_escalations(am) == []


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_shared_fault_costs_one_canary_action_and_one_escalation(
    tmp_path: Path, am: Running, store: str
):
    with serve(tmp_path, am, code=1, journal=store) as (server, journal):
        fire_all(server)
        actions = settle(journal, 30, timeout=120)
        executed = [a for a in actions if a["status"] == "failed"]
        assert [a["target"] for a in executed] == ["web-01"]
        skipped = [a for a in actions if a["status"] == "skipped"]
        assert len(skipped) == 29
        assert all(a["reason"].startswith("halted: canary web-01 failed") for a in skipped)
        escalations = wait_for(lambda: fleet_escalations(am), 20, "the fleet's escalation")
        assert len(escalations) == 1
        labels = escalations[0]["labels"]
        assert labels["remediation_target"] == "fleet:web"
        assert labels["service"] == "web"
        assert labels["remediation_episode"]  # when this escalation began: a new one pages
        summary = escalations[0]["annotations"]["fleet_summary"]
        assert "30 targets fired, 1 acted on, 0 succeeded, 1 failed" in summary
        fleet = requests.get(f"{server.url}/api/v1/fleets", timeout=5).json()["data"][0]
        assert fleet["wave"]["phase"] == "halted"
        assert fleet["breaker"]["state"] == "open"
        assert fleet["escalation"]["status"] == "sent"
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_actions_skipped_total{reason="halted",strategy="heal-web"} 29.0' in (
            metrics
        )
        # three more instances fire while the fleet is halted: held back, not acted on,
        # and the fleet's one alert (updated, not a new one) says so
        later = [
            alert("HighErrorRatio", service="web", instance=f"web-{n}", starts_at=STARTS)
            for n in (31, 32, 33)
        ]
        body = notification(*later, group_key='{}:{alertname="HighErrorRatio"}')
        assert post_webhook(server.url, body).status_code == 200
        held = re.compile(r"fired since and held back by the halt, not acted on: 3 \((.*)\)")

        def updated() -> list[dict[str, Any]]:
            found = fleet_escalations(am)
            said = held.search(found[0]["annotations"]["fleet_summary"])
            named = sorted(said.group(1).split(", ")) if said else []
            return found if named == ["web-31", "web-32", "web-33"] else []

        assert len(wait_for(updated, 30, "the fleet's alert counting the held-back three")) == 1
        skipped = [a for a in settle(journal, 33, timeout=30) if a["status"] == "skipped"]
        assert len(skipped) == 32


def test_failures_outside_a_wave_share_the_fleets_one_escalation(tmp_path: Path, am: Running):
    """No waves: every target is acted on, 3 at a time, and all 30 fail; the first failure
    escalates for the fleet and the 29 others, within the escalation window, are counted
    into that one alert (re-posted with the same labels: Alertmanager holds one)."""
    with serve(tmp_path, am, code=1, progressive=False) as (server, journal):
        fire_all(server)
        actions = settle(journal, 30, timeout=120)
        assert [a["status"] for a in actions] == ["failed"] * 30
        assert peak_in_flight(tmp_path / "record.log") == 3

        def counted_all() -> list[dict[str, Any]]:
            found = fleet_escalations(am)
            text = found[0]["annotations"]["fleet_summary"] if found else ""
            return found if "also failed since: 29" in text else []

        [escalation] = wait_for(counted_all, 30, "the fleet's alert counting all 30")
        assert escalation["labels"]["remediation_target"] == "fleet:web"
        fleet = requests.get(f"{server.url}/api/v1/fleets", timeout=5).json()["data"][0]
        assert fleet["escalation"]["summary"]["covered"] == 29
        assert len(fleet["escalation"]["summary"]["covered_targets"]) == 29
