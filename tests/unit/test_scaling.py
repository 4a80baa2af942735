"""HPA replica arithmetic: formula, tolerance, clamps, rate limit, stabilisation."""

from __future__ import annotations

import json

import pytest

from receiver.scaling import ScaleDecision, ScaleHistory, ScalePolicy, decide, record_scale

EMPTY = ScaleHistory()


def policy(**overrides: object) -> ScalePolicy:
    base: dict = {"target_value": 100.0, "min_replicas": 1, "max_replicas": 20}
    return ScalePolicy(**{**base, **overrides})


# --- formula ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "value", "target", "expected"),
    [
        (4, 150.0, 100.0, 6),  # 4 * 150/100 = 6.0 -> 6
        (5, 130.0, 100.0, 7),  # 5 * 1.3 = 6.5 -> ceil 7
        (10, 25.0, 50.0, 5),  # 10 * 0.5 = 5.0 -> 5
        (3, 0.5, 0.2, 8),  # 3 * 2.5 = 7.5 -> 8
        (7, 10.0, 100.0, 1),  # 7 * 0.1 = 0.7 -> ceil 1
        (1, 0.07, 0.01, 7),  # exactly 7; naive float math gives 7.000000000000001 -> 8
    ],
)
def test_formula(current: int, value: float, target: float, expected: int) -> None:
    decision = decide(current, value, policy(target_value=target), EMPTY, now=0.0)
    assert decision.raw == expected
    assert decision.desired == expected
    assert decision.current == current
    assert decision.changed is (expected != current)


def test_value_zero_scales_to_min() -> None:
    # 4 * 0/100 = 0 -> clamped up to min_replicas 2
    decision = decide(4, 0.0, policy(min_replicas=2), EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (0, 2)
    assert "clamped to min_replicas=2" in decision.reason


# --- tolerance ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [110.0, 90.0, 100.0, 105.0])
def test_within_tolerance_is_no_change(value: float) -> None:
    # |1 - 110/100| = 0.1 <= 0.1 (boundary included); |1 - 90/100| = 0.1 likewise
    decision = decide(10, value, policy(), EMPTY, now=0.0)
    assert decision.raw == 10
    assert decision.desired == 10
    assert decision.changed is False
    assert "within tolerance" in decision.reason


def test_just_above_tolerance_scales_up() -> None:
    # |1 - 111/100| = 0.11 > 0.1 -> 10 * 1.11 = 11.1 -> ceil 12
    decision = decide(10, 111.0, policy(), EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (12, 12)
    assert decision.changed is True


def test_just_below_tolerance_scales_down() -> None:
    # |1 - 89/100| = 0.11 > 0.1 -> 10 * 0.89 = 8.9 -> ceil 9
    decision = decide(10, 89.0, policy(), EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (9, 9)


def test_custom_tolerance() -> None:
    # |1 - 120/100| = 0.2 <= 0.25 -> no change; with 0.1 it would be 10 * 1.2 = 12
    assert decide(10, 120.0, policy(tolerance=0.25), EMPTY, now=0.0).desired == 10
    assert decide(10, 120.0, policy(tolerance=0.1), EMPTY, now=0.0).desired == 12


def test_zero_tolerance_reacts_to_any_deviation() -> None:
    # 10 * 101/100 = 10.1 -> ceil 11
    assert decide(10, 101.0, policy(tolerance=0.0), EMPTY, now=0.0).desired == 11


# --- clamps -------------------------------------------------------------------------------


def test_clamped_to_max_replicas() -> None:
    # 4 * 300/100 = 12 -> clamped to 5
    decision = decide(4, 300.0, policy(max_replicas=5), EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (12, 5)
    assert "clamped to max_replicas=5" in decision.reason


def test_clamped_to_min_replicas() -> None:
    # 10 * 20/100 = 2 -> clamped up to 3
    decision = decide(10, 20.0, policy(min_replicas=3), EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (2, 3)
    assert "clamped to min_replicas=3" in decision.reason


def test_within_tolerance_but_above_max_is_brought_down() -> None:
    # tolerance keeps raw at 12, but 12 > max 8
    decision = decide(12, 100.0, policy(max_replicas=8), EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (12, 8)


# --- scale-up limit -----------------------------------------------------------------------


def test_scale_up_limit_caps_first_step() -> None:
    limited = policy(scale_up_limit=2, scale_up_period=60.0)
    # 2 * 400/100 = 8, but only +2 allowed -> 4
    decision = decide(2, 400.0, limited, EMPTY, now=0.0)
    assert (decision.raw, decision.desired) == (8, 4)
    assert "scale-up limited to +2 per 60s" in decision.reason


def test_scale_up_limit_within_and_after_period() -> None:
    limited = policy(scale_up_limit=2, scale_up_period=60.0)
    history = record_scale(EMPTY, 0.0, 2, 4)  # +2 at t=0 uses the whole budget
    # t=30: 4 * 200/100 = 8, +2 already added within (-30, 30] -> stays 4
    within = decide(4, 200.0, limited, history, now=30.0)
    assert (within.raw, within.desired) == (8, 4)
    assert within.changed is False
    assert "scale-up limited" in within.reason
    # t=60: the t=0 event is no longer inside (0, 60] -> +2 again -> 6
    after = decide(4, 200.0, limited, history, now=60.0)
    assert after.desired == 6


def test_scale_up_limit_partial_budget() -> None:
    limited = policy(scale_up_limit=3, scale_up_period=60.0)
    history = record_scale(EMPTY, 10.0, 4, 5)  # +1 used
    # 5 * 200/100 = 10, budget 3 - 1 = 2 -> 7
    assert decide(5, 200.0, limited, history, now=20.0).desired == 7


def test_scale_up_limit_counts_gross_increases() -> None:
    limited = policy(scale_up_limit=2, scale_up_period=60.0)
    history = record_scale(EMPTY, 0.0, 4, 6)  # +2
    history = record_scale(history, 5.0, 6, 4)  # -2 does not refund the budget
    assert decide(4, 200.0, limited, history, now=10.0).desired == 4


def test_scale_up_limit_does_not_touch_small_scale_ups() -> None:
    limited = policy(scale_up_limit=2)
    # 4 * 150/100 = 6 = +2, within the limit
    decision = decide(4, 150.0, limited, EMPTY, now=0.0)
    assert decision.desired == 6
    assert "limited" not in decision.reason


def test_unlimited_scale_up_by_default() -> None:
    # 2 * 1000/100 = 20 = max 20
    assert decide(2, 1000.0, policy(), EMPTY, now=0.0).desired == 20


def test_scale_up_limit_wins_over_min_replicas() -> None:
    limited = policy(min_replicas=6, scale_up_limit=2)
    # raw 1 * 100/100 = 1 within tolerance -> clamped to 6 -> limited to 1 + 2 = 3
    assert decide(1, 100.0, limited, EMPTY, now=0.0).desired == 3


# --- scale-down stabilisation -------------------------------------------------------------


def test_scale_down_stabilisation_highest_recommendation_wins() -> None:
    p = policy(max_replicas=10, stabilization_window=300.0)
    d0 = decide(10, 100.0, p, EMPTY, now=0.0)  # within tolerance -> recommends 10
    assert d0.desired == 10
    d1 = decide(10, 50.0, p, d0.history, now=100.0)  # raw 5, but 10 recommended at t=0
    assert (d1.raw, d1.desired) == (5, 10)
    assert "scale-down stabilised at 10 (highest in last 300s)" in d1.reason
    d2 = decide(10, 60.0, p, d1.history, now=200.0)  # raw 6, still held at 10
    assert (d2.raw, d2.desired) == (6, 10)
    # t=301: window (1, 301] holds 5@100, 6@200, 5@301 -> highest 6
    d3 = decide(10, 50.0, p, d2.history, now=301.0)
    assert (d3.raw, d3.desired) == (5, 6)
    assert d3.reason.endswith("scale-down stabilised at 6 (highest in last 300s)")
    # t=501: window (201, 501] holds 5@301, 5@501 -> scale down to 5 happens
    d4 = decide(6, 50.0, p, d3.history, now=501.0)
    assert (d4.raw, d4.desired) == (3, 5)
    # t=801: 5 * 60/100 = 3; 3@501 is exactly 300s old and has left (501, 801] -> 3
    d5 = decide(5, 60.0, p, d4.history, now=801.0)
    assert (d5.raw, d5.desired) == (3, 3)
    assert "stabilised" not in d5.reason


def test_stabilisation_window_boundary_when_shorter_than_scale_up_period() -> None:
    # history is kept for 120s (scale_up_period), so the 60s window must filter by itself
    p = policy(stabilization_window=60.0, scale_up_period=120.0)
    history = ScaleHistory(recommendations=((0.0, 10),))
    # t=59.9: 10@0 is inside (-0.1, 59.9] -> hold at 10; t=60: it has left (0, 60] -> 5
    assert decide(10, 50.0, p, history, now=59.9).desired == 10
    assert decide(10, 50.0, p, history, now=60.0).desired == 5


def test_stabilisation_never_raises_above_current() -> None:
    p = policy(stabilization_window=300.0)
    history = ScaleHistory(recommendations=((0.0, 8),))
    # raw 5 * 60/100 = 3; highest recent is 8 but we only hold, never scale up: min(5, 8) = 5
    decision = decide(5, 60.0, p, history, now=10.0)
    assert decision.desired == 5
    assert decision.changed is False


def test_stabilisation_does_not_delay_scale_up() -> None:
    p = policy(stabilization_window=300.0)
    history = ScaleHistory(recommendations=((0.0, 2),))
    # 4 * 200/100 = 8 -> immediately
    assert decide(4, 200.0, p, history, now=10.0).desired == 8


def test_stabilisation_window_zero_scales_down_immediately() -> None:
    p = policy(stabilization_window=0.0)
    d0 = decide(10, 100.0, p, EMPTY, now=0.0)
    d1 = decide(10, 50.0, p, d0.history, now=1.0)
    # 10 * 0.5 = 5, no stabilisation
    assert d1.desired == 5
    assert "stabilised" not in d1.reason


def test_history_pruned_to_longest_window() -> None:
    p = policy(stabilization_window=300.0, scale_up_period=60.0)
    history = ScaleHistory(
        recommendations=((0.0, 9), (100.0, 8)),
        scale_events=((0.0, 1, 2), (100.0, 2, 3)),
    )
    # longest window 300 -> cutoff at t=350 is 50: entries at t=0 are dropped
    decision = decide(3, 100.0, p, history, now=350.0)
    assert decision.history.recommendations == ((100.0, 8), (350.0, 3))
    assert decision.history.scale_events == ((100.0, 2, 3),)


# --- current = 0 --------------------------------------------------------------------------


def test_zero_replicas_not_autoscaled_when_min_is_zero() -> None:
    decision = decide(0, 1000.0, policy(min_replicas=0), EMPTY, now=0.0)
    assert (decision.desired, decision.raw) == (0, 0)
    assert decision.changed is False
    assert "scaled to zero" in decision.reason


def test_zero_replicas_raised_to_positive_min() -> None:
    # min 3 -> 3 regardless of value, and regardless of the scale-up limit
    decision = decide(0, 0.0, policy(min_replicas=3, scale_up_limit=1), EMPTY, now=0.0)
    assert decision.desired == 3
    assert decision.changed is True
    assert "min_replicas=3" in decision.reason


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_value": 0.0}, "target_value must be"),
        ({"target_value": -1.0}, "target_value must be"),
        ({"target_value": float("inf")}, "target_value must be"),
        ({"target_value": float("nan")}, "target_value must be"),
        ({"min_replicas": -1}, "min_replicas must be >= 0"),
        ({"max_replicas": 0, "min_replicas": 0}, "max_replicas must be >= 1"),
        ({"min_replicas": 5, "max_replicas": 4}, r"min_replicas \(5\) must be <= max_replicas"),
        ({"tolerance": -0.1}, "tolerance must be"),
        ({"scale_up_limit": 0}, "scale_up_limit must be >= 1"),
        ({"scale_up_period": 0.0}, "scale_up_period must be > 0"),
        ({"stabilization_window": -1.0}, "stabilization_window must be >= 0"),
    ],
)
def test_policy_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScalePolicy(**{"target_value": 100.0, **kwargs})


@pytest.mark.parametrize(
    ("current", "value", "message"),
    [
        (-1, 100.0, "current replicas must be"),
        (2, -0.5, "value must be a finite number >= 0"),
        (2, float("nan"), "value must be a finite number >= 0"),
        (2, float("inf"), "value must be a finite number >= 0"),
    ],
)
def test_decide_rejects_bad_inputs(current: int, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(current, value, policy(), EMPTY, now=0.0)


def test_record_scale_rejects_negative_replicas() -> None:
    with pytest.raises(ValueError, match="replica counts must be >= 0"):
        record_scale(EMPTY, 0.0, -1, 2)


# --- persistence --------------------------------------------------------------------------


def test_history_round_trip_through_json() -> None:
    history = ScaleHistory(
        recommendations=((10.0, 4), (20.5, 6)),
        scale_events=((11.0, 2, 4), (21.0, 4, 6)),
    )
    data = json.loads(json.dumps(history.to_dict()))
    assert data == {
        "recommendations": [[10.0, 4], [20.5, 6]],
        "scale_events": [[11.0, 2, 4], [21.0, 4, 6]],
    }
    assert ScaleHistory.from_dict(data) == history
    assert ScaleHistory.from_dict({}) == EMPTY


def test_decision_changed_property() -> None:
    assert ScaleDecision(3, 4, 4, "x", EMPTY).changed is True
    assert ScaleDecision(3, 3, 3, "x", EMPTY).changed is False
