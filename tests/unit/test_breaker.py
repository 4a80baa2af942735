"""Circuit breaker state machine, driven by a fake clock (plain floats)."""

from __future__ import annotations

import json

import pytest

from receiver.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    STATES,
    BreakerSettings,
    BreakerState,
    admit,
    current,
    record,
    reset,
)


def run(
    state: BreakerState, settings: BreakerSettings, now: float, succeeded: bool
) -> BreakerState:
    """Admit then record, as the executor does; the call must have been admitted."""
    allowed, state = admit(state, settings, now)
    assert allowed, f"call at t={now} was rejected in state {state.state}"
    return record(state, settings, now, succeeded)


def opened(settings: BreakerSettings, at: float) -> BreakerState:
    """A breaker tripped by consecutive failures, the last one at time ``at``."""
    state = BreakerState()
    for i in range(settings.failure_threshold):
        state = run(state, settings, at - settings.failure_threshold + 1 + i, False)
    assert state.state == OPEN
    assert state.opened_at == at
    return state


def test_states_constants() -> None:
    assert STATES == ("closed", "open", "half_open")
    assert (CLOSED, OPEN, HALF_OPEN) == STATES


# --- closed -------------------------------------------------------------------------------


def test_closed_stays_closed_below_failure_threshold() -> None:
    settings = BreakerSettings(failure_threshold=3)
    state = run(BreakerState(), settings, 0.0, False)
    state = run(state, settings, 1.0, False)
    # 2 failures < threshold 3
    assert state.state == CLOSED
    assert state.consecutive_failures == 2
    assert admit(state, settings, 2.0)[0] is True


def test_success_resets_consecutive_failures() -> None:
    settings = BreakerSettings(failure_threshold=3)
    state = run(BreakerState(), settings, 0.0, False)
    state = run(state, settings, 1.0, False)
    state = run(state, settings, 2.0, True)
    assert state.consecutive_failures == 0
    # F, F, S, F, F: never 3 in a row, so still closed
    state = run(state, settings, 3.0, False)
    state = run(state, settings, 4.0, False)
    assert state.state == CLOSED
    assert state.consecutive_failures == 2


def test_opens_at_failure_threshold() -> None:
    settings = BreakerSettings(failure_threshold=3)
    state = BreakerState()
    for t in (10.0, 11.0, 12.0):
        state = run(state, settings, t, False)
    assert state.state == OPEN
    assert state.opened_at == 12.0
    assert state.consecutive_failures == 3


def test_failure_threshold_one_opens_on_first_failure() -> None:
    settings = BreakerSettings(failure_threshold=1)
    state = run(BreakerState(), settings, 5.0, False)
    assert (state.state, state.opened_at) == (OPEN, 5.0)


# --- failure-rate rule ----------------------------------------------------------------------


RATE = BreakerSettings(
    failure_threshold=100, failure_rate_threshold=0.5, window=60.0, minimum_calls=4
)


def test_rate_rule_needs_minimum_calls() -> None:
    # F, F, F: 100% failures but only 3 calls < minimum_calls 4
    state = BreakerState()
    for t in (0.0, 1.0, 2.0):
        state = run(state, RATE, t, False)
    assert state.state == CLOSED


def test_rate_rule_trips_at_exact_rate() -> None:
    # S, F, S, F: 2/4 = 0.5 >= 0.5, with 4 calls >= minimum 4 -> open at t=3
    state = BreakerState()
    for t, ok in ((0.0, True), (1.0, False), (2.0, True), (3.0, False)):
        state = run(state, RATE, t, ok)
    assert state.state == OPEN
    assert state.opened_at == 3.0
    assert state.consecutive_failures == 1  # the rate rule tripped, not the streak


def test_rate_rule_below_rate_does_not_trip() -> None:
    # S, S, F, S, F: 2/5 = 0.4 < 0.5
    state = BreakerState()
    for t, ok in ((0.0, True), (1.0, True), (2.0, False), (3.0, True), (4.0, False)):
        state = run(state, RATE, t, ok)
    assert state.state == CLOSED
    assert len(state.calls) == 5


def test_rate_rule_above_rate_trips() -> None:
    # S, F, F, F: 3/4 = 0.75 >= 0.5 (streak is only 3 < 100)
    state = BreakerState()
    for t, ok in ((0.0, True), (1.0, False), (2.0, False), (3.0, False)):
        state = run(state, RATE, t, ok)
    assert state.state == OPEN


def test_rate_rule_old_calls_leave_the_window() -> None:
    state = BreakerState()
    for t in (0.0, 1.0, 2.0):
        state = run(state, RATE, t, False)
    # At t=100 the cutoff is 100 - 60 = 40: the 3 early failures are pruned, so the window
    # holds just the F at t=100 -> 1 call < minimum 4 -> stays closed.
    state = run(state, RATE, 100.0, False)
    assert state.state == CLOSED
    assert state.calls == ((100.0, False),)


def test_rate_rule_window_boundary_is_inclusive() -> None:
    state = BreakerState()
    for t in (0.0, 1.0, 2.0):
        state = run(state, RATE, t, False)
    # cutoff at t=60 is 0.0: the call at exactly t=0 is still inside -> 4 calls, 4 failures
    state = run(state, RATE, 60.0, False)
    assert state.state == OPEN


def test_rate_rule_disabled_by_default() -> None:
    settings = BreakerSettings(failure_threshold=100, minimum_calls=1)
    state = BreakerState()
    for t in range(10):
        state = run(state, settings, float(t), False)
    assert state.state == CLOSED
    assert state.consecutive_failures == 10


# --- open ---------------------------------------------------------------------------------


def test_open_rejects_before_recovery_timeout() -> None:
    settings = BreakerSettings(failure_threshold=2, recovery_timeout=600.0)
    state = opened(settings, at=100.0)
    # 100 + 599.9 = 699.9 < 100 + 600
    allowed, after = admit(state, settings, 699.9)
    assert allowed is False
    assert after.state == OPEN
    assert current(state, settings, 699.9).state == OPEN


def test_half_open_once_recovery_timeout_has_passed() -> None:
    settings = BreakerSettings(failure_threshold=2, recovery_timeout=600.0)
    state = opened(settings, at=100.0)
    # exactly 600s later
    moved = current(state, settings, 700.0)
    assert moved.state == HALF_OPEN
    assert moved.half_open_in_flight == 0
    assert moved.half_open_successes == 0


def test_current_leaves_closed_and_half_open_alone() -> None:
    settings = BreakerSettings()
    assert current(BreakerState(), settings, 1e9) == BreakerState()
    half = BreakerState(state=HALF_OPEN, opened_at=0.0, half_open_in_flight=1)
    assert current(half, settings, 1e9) == half


def test_late_success_while_open_does_not_close() -> None:
    settings = BreakerSettings(failure_threshold=2, recovery_timeout=600.0)
    state = opened(settings, at=100.0)
    state = record(state, settings, 150.0, True)
    assert state.state == OPEN
    assert state.opened_at == 100.0


def test_late_failure_while_open_keeps_opened_at() -> None:
    settings = BreakerSettings(failure_threshold=2, recovery_timeout=600.0)
    state = opened(settings, at=100.0)
    state = record(state, settings, 650.0, False)
    assert state.state == OPEN
    assert state.opened_at == 100.0  # recovery still due at 700, not 1250
    assert current(state, settings, 700.0).state == HALF_OPEN


# --- half_open ----------------------------------------------------------------------------


def half_open(settings: BreakerSettings) -> BreakerState:
    """Opened at t=0, so half-open from t=recovery_timeout."""
    return current(opened(settings, at=0.0), settings, settings.recovery_timeout)


def test_half_open_admits_at_most_max_calls_in_flight() -> None:
    settings = BreakerSettings(failure_threshold=1, recovery_timeout=10.0, half_open_max_calls=2)
    state = half_open(settings)
    ok1, state = admit(state, settings, 10.0)
    ok2, state = admit(state, settings, 10.0)
    ok3, state = admit(state, settings, 10.0)
    assert (ok1, ok2, ok3) == (True, True, False)
    assert state.half_open_in_flight == 2


def test_half_open_frees_a_slot_when_a_trial_finishes() -> None:
    settings = BreakerSettings(
        failure_threshold=1, recovery_timeout=10.0, half_open_max_calls=1, success_threshold=2
    )
    state = half_open(settings)
    ok, state = admit(state, settings, 10.0)
    assert ok
    assert admit(state, settings, 11.0)[0] is False
    state = record(state, settings, 12.0, True)
    assert state.state == HALF_OPEN
    assert state.half_open_in_flight == 0
    assert state.half_open_successes == 1
    assert admit(state, settings, 13.0)[0] is True


def test_closes_after_success_threshold_successes() -> None:
    settings = BreakerSettings(
        failure_threshold=1, recovery_timeout=10.0, half_open_max_calls=1, success_threshold=2
    )
    state = half_open(settings)
    state = run(state, settings, 10.0, True)
    # 1 success < 2: still half-open
    assert state.state == HALF_OPEN
    state = run(state, settings, 11.0, True)
    assert state.state == CLOSED
    assert state == BreakerState()  # counters and the rate window are cleared


def test_closing_clears_window_so_old_failures_do_not_retrip() -> None:
    settings = BreakerSettings(
        failure_threshold=100,
        recovery_timeout=10.0,
        failure_rate_threshold=0.5,
        window=600.0,
        minimum_calls=2,
    )
    state = BreakerState()
    for t in (0.0, 1.0):
        state = run(state, settings, t, False)
    assert (state.state, state.opened_at) == (OPEN, 1.0)
    state = run(current(state, settings, 11.0), settings, 11.0, True)
    assert state.state == CLOSED
    # Had the window kept F, F, it would read F, F, S, F = 3/4 and trip again.
    state = run(state, settings, 12.0, False)
    assert state.state == CLOSED


def test_any_half_open_failure_reopens_with_new_opened_at() -> None:
    settings = BreakerSettings(
        failure_threshold=1, recovery_timeout=10.0, half_open_max_calls=2, success_threshold=3
    )
    state = half_open(settings)
    state = run(state, settings, 10.0, True)
    assert state.half_open_successes == 1
    state = run(state, settings, 15.0, False)
    assert state.state == OPEN
    assert state.opened_at == 15.0
    assert state.half_open_successes == 0
    assert state.half_open_in_flight == 0
    # recovery now counts from 15: closed for trials until 25
    assert admit(state, settings, 24.9)[0] is False
    assert current(state, settings, 25.0).state == HALF_OPEN


def test_half_open_failure_reopens_even_with_other_trial_in_flight() -> None:
    settings = BreakerSettings(failure_threshold=1, recovery_timeout=10.0, half_open_max_calls=2)
    state = half_open(settings)
    _, state = admit(state, settings, 10.0)
    _, state = admit(state, settings, 10.0)
    state = record(state, settings, 11.0, False)
    assert (state.state, state.opened_at, state.half_open_in_flight) == (OPEN, 11.0, 0)
    # the other trial finishing successfully afterwards must not close it
    state = record(state, settings, 12.0, True)
    assert state.state == OPEN


# --- reset and persistence ----------------------------------------------------------------


def test_reset_returns_closed_with_counters_cleared() -> None:
    settings = BreakerSettings(failure_threshold=2)
    state = opened(settings, at=50.0)
    assert state != BreakerState()
    fresh = reset()
    assert fresh == BreakerState()
    assert fresh.state == CLOSED
    assert fresh.consecutive_failures == 0
    assert fresh.opened_at is None
    assert fresh.calls == ()
    assert admit(fresh, settings, 51.0)[0] is True


def test_to_dict_from_dict_round_trip_through_json() -> None:
    state = BreakerState(
        state=HALF_OPEN,
        consecutive_failures=3,
        opened_at=123.5,
        half_open_in_flight=1,
        half_open_successes=2,
        calls=((100.0, False), (101.5, True)),
    )
    data = json.loads(json.dumps(state.to_dict()))
    assert data["calls"] == [[100.0, False], [101.5, True]]
    assert BreakerState.from_dict(data) == state


def test_from_dict_defaults_and_rejects_unknown_state() -> None:
    assert BreakerState.from_dict({}) == BreakerState()
    with pytest.raises(ValueError, match="state must be one of"):
        BreakerState.from_dict({"state": "ajar"})


# --- settings validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be >= 1"),
        ({"half_open_max_calls": 0}, "half_open_max_calls must be >= 1"),
        ({"success_threshold": 0}, "success_threshold must be >= 1"),
        ({"minimum_calls": 0}, "minimum_calls must be >= 1"),
        ({"recovery_timeout": -1.0}, "recovery_timeout must be >= 0"),
        ({"recovery_timeout": float("nan")}, "recovery_timeout must be >= 0"),
        ({"window": -5.0}, "window must be > 0"),
        ({"window": 0.0}, "window must be > 0"),
        ({"failure_rate_threshold": 0.0}, r"failure_rate_threshold must be in \(0, 1\]"),
        ({"failure_rate_threshold": 1.5}, r"failure_rate_threshold must be in \(0, 1\]"),
        ({"failure_rate_threshold": -0.1}, r"failure_rate_threshold must be in \(0, 1\]"),
    ],
)
def test_settings_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerSettings(**kwargs)


def test_settings_accept_edge_values() -> None:
    settings = BreakerSettings(failure_rate_threshold=1.0, recovery_timeout=0.0)
    assert settings.failure_rate_threshold == 1.0
    # recovery_timeout 0: half-open immediately after opening
    state = opened(BreakerSettings(failure_threshold=1, recovery_timeout=0.0), at=3.0)
    assert current(state, settings, 3.0).state == HALF_OPEN
