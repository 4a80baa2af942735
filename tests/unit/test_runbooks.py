"""Runbook step machine of issue 14, driven by an injected clock (plain floats)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.runbooks import (
    CANCEL,
    CANCELLED,
    CURED,
    DRY_RUN,
    END,
    FAILED,
    HALTED,
    INTERRUPTED,
    NOTHING,
    PLAN,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    TRAIL_LIMIT,
    UNCURED,
    WAIT,
    RunbookSettings,
    RunbookState,
    Step,
    StepOutcome,
    StepResult,
    advance,
    cancel,
    one_step,
    repeat,
    resume,
    start,
    trail_text,
)

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a fixed "now"
FAIL = StepOutcome(FAILED, "verification did not pass: up == 0")
OK = StepOutcome(SUCCEEDED, "verification passed")


def three_steps(repeat_after: float | None = None) -> RunbookSettings:
    """restart, then rollback 120 s later only `when` the release changed, then page."""
    return RunbookSettings(
        steps=(
            Step(1, "restart"),
            Step(2, "rollback", wait=120.0, has_when=True),
            Step(3, "scale", wait=30.0),
        ),
        repeat_after=repeat_after,
    )


def started(settings: RunbookSettings, now: float = T0) -> RunbookState:
    return start(settings, now)[1]


def ended_uncured(settings: RunbookSettings) -> RunbookState:
    """Every step of the run failed while the alert fired."""
    state = started(settings)
    for offset in range(len(settings.steps)):
        _, state = advance(state, settings, FAIL, True, T0 + 10 * (offset + 1))
    return state


def cured(settings: RunbookSettings, at: float = T0 + 10) -> RunbookState:
    return advance(started(settings), settings, OK, True, at)[1]


# settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RunbookSettings(steps=()), "at least one step"),
        (lambda: Step(1, wait=-1.0), "wait must be a finite number of seconds >= 0"),
        (lambda: Step(1, wait=math.nan), "wait must be"),
        (lambda: Step(1, wait=math.inf), "wait must be"),
        (lambda: Step(0), "index must be an int >= 1"),
        (lambda: Step(1, name="  "), "name must be a non-empty string"),
        (lambda: RunbookSettings(steps=(Step(2),)), r"indexes must be 1\.\.1 in order"),
        (lambda: RunbookSettings(steps=(Step(1), Step(1))), "indexes must be"),
        (lambda: RunbookSettings(steps=(Step(1, "a"), Step(2, "a"))), r"unique, repeated: \['a'\]"),
        (lambda: one_step(repeat_after=0.0), "repeat_after must be a finite number of seconds > 0"),
        (lambda: one_step(repeat_after=-60.0), "repeat_after must be"),
        (lambda: one_step(repeat_after=math.nan), "repeat_after must be"),
        (lambda: one_step(repeat_after=math.inf), "repeat_after must be"),
    ],
)
def test_nonsense_settings_are_refused_with_a_clear_message(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_a_strategy_without_steps_is_a_one_step_runbook() -> None:
    settings = one_step("restart")
    assert settings.steps == (Step(1, "restart"),)
    assert settings.repeat_after is None


def test_asking_for_a_step_past_the_end_names_the_runbook_length() -> None:
    with pytest.raises(IndexError, match="no step 4 in a runbook of 3 steps"):
        three_steps().step(4)


@pytest.mark.parametrize(
    ("step", "label"), [(Step(2, "rollback"), "step 2 (rollback)"), (Step(2), "step 2")]
)
def test_a_step_is_named_by_index_and_name_when_it_has_one(step, label) -> None:
    assert step.label == label


# start and advance ------------------------------------------------------------------------


def test_a_run_starts_at_step_one_after_its_wait() -> None:
    settings = RunbookSettings(steps=(Step(1, "restart", wait=45.0),))
    decision, state = start(settings, T0)
    assert (decision.action, decision.step, decision.not_before) == (
        PLAN,
        settings.steps[0],
        T0 + 45,
    )
    assert (state.run, state.current, state.status, state.started_at) == (1, 1, RUNNING, T0)


def test_a_succeeded_step_ends_the_run_cured_without_escalation() -> None:
    settings = three_steps()
    decision, state = advance(started(settings), settings, OK, True, T0 + 5)
    assert (decision.action, decision.status, decision.escalate) == (END, CURED, False)
    assert (state.status, state.current, state.ended_at) == (CURED, None, T0 + 5)
    assert decision.reason == "cured: step 1 (restart) succeeded: verification passed"


def test_a_success_cures_even_if_the_alert_resolved_meanwhile() -> None:
    settings = three_steps()
    decision, state = advance(started(settings), settings, OK, False, T0 + 5)
    assert (decision.action, state.status) == (END, CURED)


@pytest.mark.parametrize("outcome", [FAILED, TIMED_OUT])
def test_a_failed_or_timed_out_step_while_firing_plans_the_next_after_its_wait(outcome) -> None:
    settings = three_steps()
    now = T0 + 7
    decision, state = advance(started(settings), settings, StepOutcome(outcome, "x"), True, now)
    assert (decision.action, decision.step) == (PLAN, settings.step(2))
    assert decision.not_before == now + settings.step(2).wait
    assert state.current == 2
    assert state.trail == (StepResult(1, outcome, "x", now),)
    assert decision.escalate is False


def test_a_next_step_without_wait_is_planned_for_now() -> None:
    settings = RunbookSettings(steps=(Step(1), Step(2)))
    decision, _ = advance(started(settings), settings, FAIL, True, T0 + 3)
    assert decision.not_before == T0 + 3
    assert "after its wait" not in decision.reason


def test_a_false_when_skips_the_step_with_its_reason_and_plans_the_next() -> None:
    settings = three_steps()
    _, state = advance(started(settings), settings, FAIL, True, T0 + 10)
    skip = StepOutcome(SKIPPED, "when false: no release in the last hour", "when")
    decision, state = advance(state, settings, skip, True, T0 + 130)
    assert (decision.action, decision.step, decision.not_before) == (
        PLAN,
        settings.step(3),
        T0 + 130 + settings.step(3).wait,
    )
    assert state.trail[-1] == StepResult(2, SKIPPED, skip.reason, T0 + 130, "when")
    assert "step 2 (rollback) skipped (when): when false" in decision.reason


def test_a_when_skip_of_a_step_without_when_is_refused() -> None:
    settings = three_steps()
    skip = StepOutcome(SKIPPED, "when false", "when")
    with pytest.raises(ValueError, match=r"step 1 \(restart\) has no `when`"):
        advance(started(settings), settings, skip, True, T0)


@pytest.mark.parametrize("gate", ["budget", "breaker_open"])
def test_a_step_ended_by_budget_or_open_breaker_ends_the_run_uncured_and_escalates(gate) -> None:
    settings = three_steps()
    skip = StepOutcome(SKIPPED, f"{gate} says no", gate)
    decision, state = advance(started(settings), settings, skip, True, T0 + 1)
    assert (decision.action, decision.status, decision.escalate) == (END, UNCURED, True)
    assert state.status == UNCURED
    assert f"skipped ({gate})" in decision.reason


@pytest.mark.parametrize("gate", ["precondition", "render"])
def test_a_step_skipped_by_another_gate_goes_on_to_the_next(gate) -> None:
    settings = three_steps()
    skip = StepOutcome(SKIPPED, "cannot run here", gate)
    decision, state = advance(started(settings), settings, skip, True, T0 + 1)
    assert (decision.action, decision.step, state.current) == (PLAN, settings.step(2), 2)


def test_a_dry_run_step_ends_the_run_without_paging_anyone() -> None:
    settings = three_steps()
    skip = StepOutcome(SKIPPED, "dry run: would restart web-1", "dry_run")
    decision, state = advance(started(settings), settings, skip, True, T0 + 1)
    assert (decision.action, decision.status, decision.escalate) == (END, DRY_RUN, False)
    assert state.status == DRY_RUN


def test_failing_past_the_last_step_ends_uncured_and_escalates() -> None:
    settings = RunbookSettings(steps=(Step(1, "restart"),))
    decision, state = advance(started(settings), settings, FAIL, True, T0 + 9)
    assert (decision.action, decision.status, decision.escalate) == (END, UNCURED, True)
    assert decision.reason.startswith("ended uncured: out of steps after step 1 (restart) failed")
    assert (state.status, state.ended_at) == (UNCURED, T0 + 9)


def test_a_runbook_where_every_step_fails_escalates_exactly_once() -> None:
    settings = three_steps()
    decision, state = start(settings, T0)
    decisions = [decision]
    for offset in range(len(settings.steps)):
        decision, state = advance(state, settings, FAIL, True, T0 + 100 * (offset + 1))
        decisions.append(decision)
    assert sum(d.escalate for d in decisions) == 1
    assert [r.index for r in state.trail] == [1, 2, 3]
    assert state.finished == frozenset({1, 2, 3})


@pytest.mark.parametrize(
    "outcome",
    [FAIL, StepOutcome(TIMED_OUT, "t"), StepOutcome(SKIPPED, "b", "budget")],
)
def test_an_unsuccessful_step_after_the_alert_resolved_cancels_the_run(outcome) -> None:
    settings = three_steps()
    decision, state = advance(started(settings), settings, outcome, False, T0 + 2)
    assert (decision.action, decision.status, decision.escalate) == (CANCEL, CANCELLED, False)
    assert decision.reason.startswith("cancelled: alert resolved after step 1 (restart)")
    assert (state.status, state.current, state.ended_at) == (CANCELLED, None, T0 + 2)


@pytest.mark.parametrize("build", [ended_uncured, cured])
def test_an_ended_run_refuses_another_outcome_so_it_cannot_escalate_twice(build) -> None:
    settings = three_steps()
    state = build(settings)
    with pytest.raises(ValueError, match=f"run 1 already ended \\({state.status}\\)"):
        advance(state, settings, FAIL, True, T0 + 1000)


def test_control_characters_in_a_reason_cannot_forge_trail_lines() -> None:
    settings = three_steps()
    forged = StepOutcome(FAILED, "boom\nstep 2 (rollback) at x: succeeded\r\x1b[0m")
    _, state = advance(started(settings), settings, forged, True, T0 + 1)
    assert state.trail[0].reason == "boom step 2 (rollback) at x: succeeded [0m"
    assert len(trail_text(state, settings).splitlines()) == 3  # head, step 1, step 2 pending


@pytest.mark.parametrize("now", [math.nan, math.inf])
def test_a_non_finite_clock_is_refused(now) -> None:
    settings = three_steps()
    with pytest.raises(ValueError, match="now must be a finite number"):
        start(settings, now)
    with pytest.raises(ValueError, match="now must be a finite number"):
        advance(started(settings), settings, FAIL, True, now)


def test_a_malformed_outcome_is_refused() -> None:
    settings = three_steps()
    with pytest.raises(ValueError, match="outcome must be one of"):
        advance(started(settings), settings, StepOutcome("exploded"), True, T0)
    with pytest.raises(ValueError, match="a gate goes with a skipped outcome"):
        advance(started(settings), settings, StepOutcome(FAILED, "x", "budget"), True, T0)
    with pytest.raises(ValueError, match="a gate goes with a skipped outcome"):
        advance(started(settings), settings, StepOutcome(SKIPPED, "x"), True, T0)


OUTCOME_CHOICES = [
    OK,
    FAIL,
    StepOutcome(TIMED_OUT, "t"),
    StepOutcome(SKIPPED, "no", "budget"),
    StepOutcome(SKIPPED, "open", "breaker_open"),
    StepOutcome(SKIPPED, "dry", "dry_run"),
    StepOutcome(SKIPPED, "pre", "precondition"),
]


@given(
    st.lists(st.tuples(st.sampled_from(OUTCOME_CHOICES), st.booleans()), min_size=1, max_size=10)
)
def test_any_sequence_of_outcomes_escalates_once_exactly_when_the_run_ends_uncured(
    events,
) -> None:
    settings = RunbookSettings(steps=tuple(Step(i) for i in range(1, 5)))
    decision, state = start(settings, T0)
    decisions = [decision]
    for offset, (outcome, firing) in enumerate(events):
        if state.status != RUNNING:
            break
        decision, state = advance(state, settings, outcome, firing, T0 + offset + 1)
        decisions.append(decision)
    assert sum(d.escalate for d in decisions) == (1 if state.status == UNCURED else 0)
    assert [r.index for r in state.trail] == list(range(1, len(state.trail) + 1))


# cancel ----------------------------------------------------------------------------------


def test_a_resolved_alert_cancels_the_planned_or_waiting_step() -> None:
    settings = three_steps()
    _, state = advance(started(settings), settings, FAIL, True, T0 + 10)
    decision, state = cancel(state, settings, T0 + 60)
    assert (decision.action, decision.status, decision.escalate) == (CANCEL, CANCELLED, False)
    assert decision.reason == "cancelled: alert resolved; step 2 (rollback) not run"
    assert (state.status, state.ended_at, state.finished) == (CANCELLED, T0 + 60, frozenset({1}))


@pytest.mark.parametrize("build", [ended_uncured, cured])
def test_cancelling_an_ended_run_changes_nothing(build) -> None:
    settings = three_steps()
    state = build(settings)
    decision, after = cancel(state, settings, T0 + 999)
    assert decision.action == NOTHING
    assert after == state


# repeat ----------------------------------------------------------------------------------


def test_a_cure_that_did_not_last_starts_a_new_run_from_step_one() -> None:
    settings = three_steps(repeat_after=600.0)
    state = cured(settings, at=T0 + 10)
    now = T0 + 10 + 600
    decision, fresh = repeat(state, settings, True, now, max_runs=3)
    assert (decision.action, decision.step, decision.not_before) == (PLAN, settings.step(1), now)
    assert (fresh.run, fresh.current, fresh.trail, fresh.started_at) == (2, 1, (), now)
    assert "run 2 from step 1" in decision.reason


def test_a_repeat_before_repeat_after_elapsed_waits_until_it_is_due() -> None:
    settings = three_steps(repeat_after=600.0)
    state = cured(settings, at=T0 + 10)
    decision, after = repeat(state, settings, True, T0 + 10 + 599, max_runs=3)
    assert (decision.action, decision.not_before) == (WAIT, T0 + 10 + 600)
    assert after == state


@pytest.mark.parametrize(
    ("repeat_after", "build", "firing"),
    [
        (None, cured, True),  # no repeat configured
        (600.0, ended_uncured, True),  # not cured: already escalated
        (600.0, cured, False),  # the cure lasted
    ],
)
def test_no_repeat_unless_a_cured_run_with_repeat_after_still_fires(
    repeat_after, build, firing
) -> None:
    settings = three_steps(repeat_after=repeat_after)
    state = build(settings)
    decision, after = repeat(state, settings, firing, T0 + 10_000, max_runs=5)
    assert (decision.action, decision.escalate) == (NOTHING, False)
    assert after == state


def test_out_of_runs_a_cure_that_did_not_last_ends_uncured_and_escalates_once() -> None:
    settings = three_steps(repeat_after=60.0)
    state = cured(settings, at=T0)
    decision, state = repeat(state, settings, True, T0 + 60, max_runs=1)
    assert (decision.action, decision.status, decision.escalate) == (END, UNCURED, True)
    assert "1 runs allowed" in decision.reason
    again, _ = repeat(state, settings, True, T0 + 120, max_runs=1)
    assert (again.action, again.escalate) == (NOTHING, False)


@pytest.mark.parametrize("max_runs", [0, -1])
def test_a_bound_of_fewer_than_one_run_is_refused(max_runs) -> None:
    settings = three_steps(repeat_after=60.0)
    with pytest.raises(ValueError, match="max_runs must be >= 1"):
        repeat(cured(settings), settings, True, T0 + 1000, max_runs=max_runs)


# crash resume ----------------------------------------------------------------------------


def live_trail(settings: RunbookSettings, outcomes: list[StepOutcome]) -> RunbookState:
    state = started(settings)
    for offset, outcome in enumerate(outcomes):
        _, state = advance(state, settings, outcome, True, T0 + 50 * (offset + 1))
    return state


@pytest.mark.parametrize(
    ("outcomes", "current"),
    [
        ([], 1),
        ([FAIL], 2),
        ([FAIL, StepOutcome(SKIPPED, "when false", "when")], 3),
    ],
)
def test_after_a_crash_the_run_resumes_at_the_step_after_the_finished_ones(
    outcomes, current
) -> None:
    settings = three_steps()
    live = live_trail(settings, outcomes)
    decision, state = resume(settings, 1, T0, live.trail, True, T0 + 1000)
    assert state == live
    assert (decision.action, decision.step, decision.not_before) == (
        PLAN,
        settings.step(current),
        None,
    )
    assert current not in state.finished
    assert "finished steps not run again" in decision.reason


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [([OK], CURED), ([FAIL, FAIL, FAIL], UNCURED)],
)
def test_a_run_that_ended_before_the_crash_is_not_resumed_nor_escalated_again(
    outcomes, status
) -> None:
    settings = three_steps()
    live = live_trail(settings, outcomes)
    decision, state = resume(settings, 1, T0, live.trail, True, T0 + 1000)
    assert state == live
    assert (decision.action, decision.status, decision.escalate) == (END, status, False)
    assert decision.reason.startswith("already ")


def test_a_run_whose_alert_resolved_during_the_crash_is_cancelled_not_resumed() -> None:
    settings = three_steps()
    live = live_trail(settings, [FAIL])
    decision, state = resume(settings, 1, T0, live.trail, False, T0 + 1000)
    assert (decision.action, decision.status, decision.escalate) == (CANCEL, CANCELLED, False)
    assert decision.reason == (
        "cancelled: alert resolved during the crash; step 2 (rollback) not run"
    )
    assert (state.status, state.ended_at, state.finished) == (CANCELLED, T0 + 1000, frozenset({1}))


@pytest.mark.parametrize(
    ("indexes", "message"),
    [
        ([2], "step 2 finished where step 1 was due"),
        ([1, 1], "step 1 finished where step 2 was due"),
    ],
)
def test_a_trail_that_skips_or_repeats_a_step_is_refused(indexes, message) -> None:
    trail = [StepResult(i, FAILED, "x", T0 + i) for i in indexes]
    with pytest.raises(ValueError, match=message):
        resume(three_steps(), 1, T0, trail, True, T0 + 1000)


def test_a_trail_that_goes_on_after_the_run_ended_is_refused() -> None:
    trail = [StepResult(1, SUCCEEDED, "ok", T0), StepResult(2, FAILED, "x", T0 + 1)]
    with pytest.raises(ValueError, match="trail continues after the run ended"):
        resume(three_steps(), 1, T0, trail, True, T0 + 1000)


# state persistence -----------------------------------------------------------------------


@pytest.mark.parametrize("build", [started, ended_uncured, cured])
def test_state_survives_a_round_trip_through_json(build) -> None:
    state = build(three_steps())
    assert RunbookState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "exploded", "current": None, "ended_at": T0}, "status must be one of"),
        ({"status": RUNNING, "current": None}, "a running run has a current step"),
        ({"status": CURED, "current": 2, "ended_at": T0}, "a running run has a current step"),
        ({"run": 0}, "run must be >= 1"),
    ],
)
def test_an_inconsistent_state_is_refused(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        RunbookState(started_at=T0, **fields)


# trail text ------------------------------------------------------------------------------


def test_the_trail_text_lists_each_step_with_its_outcome_and_reason() -> None:
    settings = three_steps()
    skip = StepOutcome(SKIPPED, "when false: no release in the last hour", "when")
    state = live_trail(settings, [FAIL, skip, StepOutcome(TIMED_OUT, "no answer in 30s")])
    assert trail_text(state, settings).splitlines() == [
        "runbook run 1, started 2027-01-15 08:00:00Z: uncured",
        "step 1 (restart) at 2027-01-15 08:00:50Z: failed: verification did not pass: up == 0",
        "step 2 (rollback) at 2027-01-15 08:01:40Z: skipped (when): "
        "when false: no release in the last hour",
        "step 3 (scale) at 2027-01-15 08:02:30Z: timed_out: no answer in 30s",
    ]


def test_the_trail_text_names_the_step_not_yet_finished() -> None:
    settings = three_steps()
    state = live_trail(settings, [StepOutcome(FAILED, "")])
    lines = trail_text(state, settings).splitlines()
    assert lines[1:] == [
        "step 1 (restart) at 2027-01-15 08:00:50Z: failed",
        "step 2 (rollback): not finished",
    ]


def test_a_long_trail_is_cut_to_the_limit_with_a_marker() -> None:
    count = 60
    settings = RunbookSettings(steps=tuple(Step(i) for i in range(1, count + 1)))
    state = live_trail(settings, [StepOutcome(FAILED, "r" * 100)] * count)
    text = trail_text(state, settings)
    assert len(text) <= TRAIL_LIMIT
    assert text.splitlines()[0].startswith("runbook run 1")
    kept = len(text.splitlines()) - 2  # minus the head and the marker
    assert text.endswith(
        f"[… {count - kept} more lines cut: trail longer than {TRAIL_LIMIT} characters]"
    )


def test_a_single_line_longer_than_the_limit_keeps_its_start() -> None:
    settings = one_step()
    state = live_trail(settings, [StepOutcome(FAILED, "x" * 500)])
    text = trail_text(state, settings, limit=200)
    assert len(text) <= 200
    assert text.startswith("runbook run 1")
    assert text.endswith("[… 1 more lines cut: trail longer than 200 characters]")


def test_a_head_longer_than_a_tiny_limit_keeps_its_start() -> None:
    settings = one_step()
    state = live_trail(settings, [FAIL])
    text = trail_text(state, settings, limit=80)
    marker = "[… 2 more lines cut: trail longer than 80 characters]"
    assert text.endswith(marker)
    assert text.startswith("runbook run 1")
    assert len(text) == 80


def test_a_trail_shorter_than_the_limit_is_not_cut() -> None:
    settings = one_step()
    state = live_trail(settings, [FAIL])
    assert "cut" not in trail_text(state, settings, limit=200)


def test_a_limit_too_small_for_a_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be >= 80"):
        trail_text(started(one_step()), one_step(), limit=79)


def test_a_step_interrupted_by_a_shutdown_ends_the_run_uncured_once() -> None:
    settings = RunbookSettings(steps=(Step(1, "restart"), Step(2, "rollback")))
    _, state = start(settings, 0.0)
    outcome = StepOutcome(SKIPPED, "Remediator shut down while it ran", INTERRUPTED)
    decision, state = advance(state, settings, outcome, True, 10.0)
    assert (decision.action, decision.status, decision.escalate) == (END, UNCURED, True)
    assert state.current is None and state.status == UNCURED


def test_a_step_skipped_by_a_halted_wave_says_the_fleets_escalation_covers_it() -> None:
    # the run ends for the fleet's ONE escalation to cover (the caller marks it so): its
    # reason must not promise an escalation of its own, once per target
    settings = three_steps()
    skip = StepOutcome(SKIPPED, "halted: canary web-1 failed", HALTED)
    decision, state = advance(started(settings), settings, skip, True, T0 + 1)
    assert (decision.action, decision.status, state.status) == (END, UNCURED, UNCURED)
    assert decision.reason == (
        "ended uncured: step 1 (restart) skipped (halted): halted: canary web-1 failed; "
        "covered by the fleet's escalation"
    )
