"""The demo's summary and narration helpers (receiver/demo.py), on plain values: what a
runbook of several steps looks like in the table a person reads at the end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.demo import (
    FAULTS,
    FLEET_SCENES,
    Result,
    SceneResult,
    _brief,
    _epoch,
    fleet_summary,
    peak_in_flight,
    summary,
    went_as_told,
)

BAD_RELEASE = next(f for f in FAULTS if f.name == "bad release")


def action(number: int, verb: str, status: str) -> dict[str, Any]:
    return {"id": number, "action": verb, "status": status, "strategy": "restart-process"}


def result_with(*actions: dict[str, Any], escalations: int = 0) -> Result:
    result = Result(BAD_RELEASE, injected_at=100.0, firing_at=104.0, escalations=escalations)
    result.actions = list(actions)
    result.action = actions[-1] if actions else None
    result.incident = {"duration_seconds": 34.0}
    return result


def test_steps_lists_each_step_tried_with_its_outcome_in_order():
    result = result_with(action(5, "restart", "failed"), action(6, "rollback", "succeeded"))
    assert result.steps == "restart failed, rollback succeeded"
    assert result.outcome == "succeeded"


def test_a_runbook_with_a_step_planned_or_running_has_not_finished():
    assert not result_with(
        action(5, "restart", "failed"), action(6, "rollback", "planned")
    ).finished
    assert not result_with(action(5, "restart", "running")).finished
    assert result_with(action(5, "restart", "failed"), action(6, "rollback", "skipped")).finished
    assert result_with().finished, "no action at all: nothing left to wait for"


def test_the_summary_row_shows_both_steps_and_whether_a_person_was_told():
    cured = result_with(action(5, "restart", "failed"), action(6, "rollback", "succeeded"))
    uncured = result_with(
        action(7, "restart", "failed"), action(8, "rollback", "skipped"), escalations=1
    )
    header, _rule, first, second = summary([cured, uncured]).splitlines()
    assert header.split() == [
        "fault", "alert", "detected", "strategy", "steps", "breaker", "escalated", "MTTR"
    ]  # fmt: skip
    assert "restart failed, rollback succeeded" in first and first.split()[-2:] == ["no", "34.0s"]
    assert "restart failed, rollback skipped" in second and second.split()[-2] == "yes"
    assert f" {104.0 - 100.0:.1f}s " in first  # detected: firing - injected


def test_a_cut_reason_keeps_which_step_comes_next():
    reason = "waiting: step 1 (restart) failed: " + "x" * 200 + "; next step 2 (rollback)"
    cut = _brief(reason)
    assert len(cut) <= 110
    assert cut.startswith("waiting: step 1 (restart) failed: xxx")
    assert cut.endswith("…; next step 2 (rollback)")
    assert _brief("claimed: all gates passed") == "claimed: all gates passed"


# ---------------------------------------------------------------------- fleet scenes


def ran(target: str, status: str, start: str | None, end: str | None, reason: str = ""):
    """An action row as GET /api/v1/actions gives it (times as ISO text)."""
    return {
        "target": target,
        "status": status,
        "reason": reason,
        "started_at": None if start is None else f"2026-11-29T10:00:{start}Z",
        "finished_at": None if end is None else f"2026-11-29T10:00:{end}Z",
    }


def test_peak_in_flight_counts_the_actions_between_their_start_and_end_at_once():
    actions = [
        ran("fleet:fleet_00", "succeeded", "01.000", "05.000"),  # the canary alone
        ran("fleet:fleet_01", "succeeded", "10.000", "14.000"),
        ran("fleet:fleet_02", "succeeded", "10.500", "15.000"),  # 2 at once
        ran("fleet:fleet_03", "succeeded", "15.000", "18.000"),  # starts as 02 ends
        ran("fleet:fleet_04", "skipped", None, None, "halted: x"),  # never ran
    ]
    assert peak_in_flight(actions) == 2
    assert peak_in_flight(actions[:1]) == 1
    assert peak_in_flight(actions[4:]) == 0


def test_an_action_still_running_counts_until_it_ends():
    actions = [
        ran("fleet:fleet_00", "running", "01.000", None),
        ran("fleet:fleet_01", "succeeded", "02.000", "03.000"),
    ]
    assert peak_in_flight(actions) == 2


ONE_AFTER_TEN = datetime(2026, 11, 29, 10, 0, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("stamp", "fraction"),
    [
        ("2026-11-29T10:00:01Z", 0.0),
        ("2026-11-29T10:00:01.250Z", 0.25),
        ("2026-11-29T10:00:01.123456789Z", 0.123456),  # Go's nanoseconds cut to micro
        ("2026-11-29T10:00:01.5+00:00", 0.5),
    ],
)
def test_epoch_reads_rfc3339_times_with_any_fraction(stamp, fraction):
    assert _epoch(stamp) == pytest.approx(ONE_AFTER_TEN + fraction, abs=1e-6)


def test_the_fleet_summary_row_counts_actions_by_outcome_and_shows_the_wave():
    dependency = next(s for s in FLEET_SCENES if s.name == "fleet dependency")
    result = SceneResult(dependency, injected_at=0.0, fired=6, phase="halted", escalations=1)
    result.actions = [ran("fleet:fleet_00", "failed", "01.000", "16.000")] + [
        ran(f"fleet:fleet_0{n}", "skipped", None, None, "halted: canary fleet:fleet_00 failed")
        for n in range(1, 6)
    ]
    header, _rule, row = fleet_summary([result]).splitlines()
    assert header.split() == [
        "fleet", "scene", "fault", "fired", "acted", "cured", "failed", "halted", "peak",
        "analyses", "wave", "escalated",
    ]  # fmt: skip
    assert row.split() == [
        "fleet", "dependency", "dependency", "6", "1", "0", "1", "5", "1/2", "-", "halted", "1",
    ]  # fmt: skip


def test_the_demo_went_as_told_when_every_fault_acted_and_every_wave_ended_as_expected():
    scenes = [SceneResult(scene, 0.0, phase=scene.expect, resolved=True) for scene in FLEET_SCENES]
    fault = result_with(action(5, "restart", "succeeded"))
    assert went_as_told([fault, *scenes])
    assert not went_as_told([])
    assert not went_as_told([result_with(), *scenes])  # a fault nothing acted on
    halted_instead = SceneResult(FLEET_SCENES[0], 0.0, phase="halted", resolved=True)
    assert FLEET_SCENES[0].expect == "done"
    assert not went_as_told([fault, halted_instead])
    unresolved = SceneResult(FLEET_SCENES[1], 0.0, phase="halted", resolved=False)
    assert not went_as_told([fault, unresolved])
