"""The demo's three fleet scenes (issue 15) on the real stack `remediator demo` runs:
supervisord with the six processes of service `catalog`, Prometheus with the health
rules, Alertmanager with the shipped routing, and `remediator serve` with
examples/demo-remediation.yml's `restart-fleet` (max_in_flight 2, canary 1, stages 50%
and 100%, analysis of error ratio and latency). The scenes run once, in order, in a
module fixture (each takes a minute or so); what they did is read back from the journal
the server wrote (SQLite), from supervisord's pids and from Alertmanager's API:

1. errors on all six, which a restart cures: all six restarted and cured, canary first,
   never more than 2 at once, both analyses pass, no escalation;
2. a broken dependency on all six: the canary's restart does not cure it (verification
   fails), the wave halts: one restart, five skipped `halted`, one escalation;
3. errors and a cold start: the canary's restart cures the errors (verified) but it is
   slower than the baseline, the analysis fails on latency and halts the wave: one
   restart, one escalation.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from receiver.demo import (
    FLEET_MAX_IN_FLIGHT,
    FLEET_PROCESSES,
    FLEET_SCENES,
    FLEET_STRATEGY,
    FleetNarrator,
    SceneResult,
    Stack,
    fleet_summary,
)

pytestmark = pytest.mark.integration

CANARY = FLEET_PROCESSES[0]  # the wave's first target by name


@dataclass
class Journaled:
    """One scene as the journal, supervisord and Alertmanager saw it."""

    result: SceneResult
    #: (id, target, status, reason, started_at, finished_at) of the strategy's actions
    actions: list[tuple[Any, ...]]
    restarted: set[str]  # fleet processes whose pid changed during the scene
    escalations: list[dict[str, Any]]  # the strategy's alerts Alertmanager updated in it
    narration: list[str]  # what the narrator told of it, shown when a test of it fails

    def statuses(self) -> list[str]:
        return sorted(a[2] for a in self.actions)

    def shown(self) -> Journaled:
        """Prints the scene as it went and its actions (pytest shows a failed test's
        output), and returns it."""
        print(*self.narration, *self.actions, sep="\n")
        return self


def fleet_pids(stack: Stack) -> dict[str, int]:
    return {
        f"{p['group']}:{p['name']}": p["pid"]
        for p in stack.supervisor().getAllProcessInfo()
        if p["group"] == "fleet"
    }


def journal_actions(stack: Stack, after: int) -> list[tuple[Any, ...]]:
    """The fleet strategy's actions with id > `after`, times as journaled (seconds)."""
    with sqlite3.connect(stack.workdir / "journal.db") as db:
        return db.execute(
            "SELECT id, target, status, reason, started_at, finished_at FROM actions "
            "WHERE strategy = ? AND id > ? ORDER BY id",
            (FLEET_STRATEGY, after),
        ).fetchall()


def escalations_since(stack: Stack, since: float) -> list[dict[str, Any]]:
    """Alerts from the fleet strategy that Alertmanager received (created or updated)
    since `since`: a fleet's escalations, or any per-target one there should not be."""
    from receiver.demo import _epoch

    alerts = requests.get(f"{stack.urls['alertmanager']}/api/v2/alerts", timeout=5).json()
    return [
        a
        for a in alerts
        if a["labels"].get("remediation_strategy") == FLEET_STRATEGY
        and _epoch(a["updatedAt"]) >= since
    ]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Journaled]]:
    stack = Stack(tmp_path_factory.mktemp("fleet-scenes"), say=lambda line: None)
    try:
        stack.start()
        narrator = FleetNarrator(stack, say=lambda line: None)
        found: dict[str, Journaled] = {}
        last_id = 0
        for scene in FLEET_SCENES:
            narration: list[str] = []
            narrator.say = narration.append
            pids = fleet_pids(stack)
            started = time.time()
            result = narrator.run(scene)
            actions = journal_actions(stack, last_id)
            last_id = max([last_id, *(a[0] for a in actions)])
            after = fleet_pids(stack)
            restarted = {name for name, pid in after.items() if pid != pids[name]}
            escalations = escalations_since(stack, started)
            found[scene.name] = Journaled(result, actions, restarted, escalations, narration)
        yield found
    finally:
        stack.stop()


def peak_in_flight(actions: list[tuple[Any, ...]]) -> int:
    """The most actions between their start and their end at once (an end at the same
    moment as a start counts first)."""
    moments = []
    for _id, _target, _status, _reason, started_at, finished_at in actions:
        if started_at is not None:
            moments += [(started_at, 1), (finished_at, -1)]
    peak = running = 0
    for _at, change in sorted(moments):
        running += change
        peak = max(peak, running)
    return peak


def halted(scene: Journaled) -> list[tuple[Any, ...]]:
    return [a for a in scene.actions if a[2] == "skipped" and a[3].startswith("halted: ")]


def test_a_curable_fault_on_the_fleet_goes_canary_then_stages_never_more_than_2_at_once(
    scenes: dict[str, Journaled],
):
    scene = scenes["fleet error burst"].shown()
    assert scene.result.fired == len(FLEET_PROCESSES)
    assert scene.statuses() == ["succeeded"] * len(FLEET_PROCESSES)
    assert sorted(a[1] for a in scene.actions) == sorted(FLEET_PROCESSES)
    assert scene.restarted == set(FLEET_PROCESSES)
    first = min(scene.actions, key=lambda a: a[4])
    assert first[1] == CANARY
    # the canary alone, then the limit reached but never passed
    assert peak_in_flight(scene.actions) == FLEET_MAX_IN_FLIGHT
    # an analysis after the canary and after the first stage; none after the last
    assert scene.result.verdicts == ["pass", "pass"]
    assert scene.result.phase == "done"
    assert scene.escalations == []


def test_a_shared_dependency_costs_one_restart_and_one_escalation(
    scenes: dict[str, Journaled],
):
    scene = scenes["fleet dependency"].shown()
    assert scene.result.fired == len(FLEET_PROCESSES)
    failed = [a for a in scene.actions if a[2] == "failed"]
    assert [a[1] for a in failed] == [CANARY]
    assert "verification" in failed[0][3]
    assert len(halted(scene)) == len(FLEET_PROCESSES) - 1
    assert len(scene.actions) == len(FLEET_PROCESSES)
    assert all(f"canary {CANARY} failed" in a[3] for a in halted(scene))
    assert scene.restarted == {CANARY}
    assert peak_in_flight(scene.actions) == 1
    assert scene.result.verdicts == []  # a failed canary halts at once, no analysis
    assert scene.result.phase == "halted"
    (escalation,) = scene.escalations
    assert escalation["labels"]["remediation_target"] == "fleet:catalog"
    assert escalation["labels"]["service"] == "catalog"
    summary = escalation["annotations"]["fleet_summary"]
    assert "6 targets fired, 1 acted on, 0 succeeded, 1 failed" in summary


def test_a_restart_that_makes_the_canary_slower_is_caught_by_the_analysis(
    scenes: dict[str, Journaled],
):
    scene = scenes["fleet cold start"].shown()
    assert scene.result.fired == len(FLEET_PROCESSES)
    # the restart cured the errors: verified, so the action succeeded
    succeeded = [a for a in scene.actions if a[2] == "succeeded"]
    assert [a[1] for a in succeeded] == [CANARY]
    assert len(halted(scene)) == len(FLEET_PROCESSES) - 1
    assert len(scene.actions) == len(FLEET_PROCESSES)
    assert all("latency" in a[3] for a in halted(scene)), halted(scene)
    assert scene.restarted == {CANARY}
    assert peak_in_flight(scene.actions) == 1
    assert scene.result.verdicts == ["fail"]
    assert scene.result.phase == "halted"
    (escalation,) = scene.escalations
    assert escalation["labels"]["remediation_target"] == "fleet:catalog"
    assert "latency" in escalation["annotations"]["fleet_summary"]


def test_every_scene_ends_with_its_alerts_resolved_and_the_summary_shows_them(
    scenes: dict[str, Journaled],
):
    results = [scene.shown().result for scene in scenes.values()]
    assert all(result.resolved for result in results)
    rows = fleet_summary(results).splitlines()[2:]
    assert [row.split()[-2:] for row in rows] == [["done", "0"], ["halted", "1"], ["halted", "1"]]
