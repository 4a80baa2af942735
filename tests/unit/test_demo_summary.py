"""The demo's summary and narration helpers (receiver/demo.py), on plain values: what a
runbook of several steps looks like in the table a person reads at the end."""

from __future__ import annotations

from typing import Any

from receiver.demo import FAULTS, Result, _brief, summary

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
