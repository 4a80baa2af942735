"""The canary judge of issue 15 on synthetic samples; expected values computed here, with
p-values from scipy on the same data (the judge must use scipy's test, not its own)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from receiver.analysis import (
    FAIL,
    HALT,
    HIGHER,
    INCONCLUSIVE,
    LOWER,
    MEANS,
    PASS,
    PROCEED,
    U_TEST,
    VERDICTS,
    AnalysisMetric,
    AnalysisSettings,
    Judgement,
    judge,
    judge_metric,
)

NOW = 1_750_000_000.0


def metric(name: str = "error_ratio", direction: str = LOWER, tolerance: float = 0.1):
    return AnalysisMetric(name, f"{name}{{instance=~'x'}}", direction, tolerance)


def settings(*metrics: AnalysisMetric, **overrides: object) -> AnalysisSettings:
    return AnalysisSettings(metrics=list(metrics) or [metric()], **overrides)


def noisy(center: float, spread: float, n: int, seed: int) -> list[float]:
    """Reproducible samples around `center`: a fixed seed keeps every test deterministic."""
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.normal(center, spread, n)]


def worse_ratio(canary: list[float], baseline: list[float]) -> float:
    mean_c, mean_b = statistics.fmean(canary), statistics.fmean(baseline)
    return (mean_c - mean_b) / abs(mean_b)


# --- one metric ---------------------------------------------------------------------------


def test_clear_regression_fails_with_scipys_p_value_and_an_operator_reason() -> None:
    canary, baseline = noisy(0.31, 0.02, 30, 1), noisy(0.04, 0.01, 60, 2)
    expected_p = mannwhitneyu(canary, baseline, alternative="greater").pvalue
    mean_c, mean_b = statistics.fmean(canary), statistics.fmean(baseline)
    worse = (mean_c - mean_b) / mean_b

    judged = judge_metric(metric(tolerance=0.1), canary, baseline)

    assert judged.verdict == FAIL
    assert judged.method == U_TEST
    assert judged.p_value == pytest.approx(expected_p)
    assert judged.significant is True
    # U of the canary: every canary sample exceeds every baseline sample.
    assert judged.statistic == len(canary) * len(baseline)
    assert judged.canary_mean == pytest.approx(mean_c)
    assert judged.baseline_mean == pytest.approx(mean_b)
    assert judged.canary_median == pytest.approx(statistics.median(canary))
    assert judged.baseline_median == pytest.approx(statistics.median(baseline))
    assert judged.worse_by == pytest.approx(worse)
    assert (judged.canary_count, judged.baseline_count) == (30, 60)
    assert judged.reason == (
        f"error_ratio: mean canary {mean_c:.3g} vs baseline {mean_b:.3g}, "
        f"{worse * 100:.3g}% worse (p={expected_p:.2g}, tolerance 10%)"
    )


def test_clear_pass_when_the_canary_is_better_than_the_broken_baseline() -> None:
    canary, baseline = noisy(0.01, 0.005, 40, 3), noisy(0.30, 0.03, 40, 4)
    expected_p = mannwhitneyu(canary, baseline, alternative="greater").pvalue

    judged = judge_metric(metric(), canary, baseline)

    assert judged.verdict == PASS
    assert judged.p_value == pytest.approx(expected_p)
    assert judged.significant is False
    assert judged.worse_by == pytest.approx(worse_ratio(canary, baseline))
    assert judged.worse_by < 0
    assert "better" in judged.reason


def test_significant_but_within_tolerance_passes() -> None:
    # Canary latency 5% above the baseline, with little noise: the U test is sure it is
    # higher, yet 5% is inside a 10% tolerance, so the canary passes.
    baseline = noisy(0.100, 0.001, 200, 5)
    canary = [x * 1.05 for x in noisy(0.100, 0.001, 200, 6)]
    expected_p = mannwhitneyu(canary, baseline, alternative="greater").pvalue
    assert expected_p < 0.05  # the premise of the test: significant

    judged = judge_metric(metric("latency", tolerance=0.1), canary, baseline)

    assert judged.significant is True
    assert judged.worse_by == pytest.approx(worse_ratio(canary, baseline))
    assert 0 < judged.worse_by < 0.1
    assert judged.verdict == PASS
    assert "within tolerance 10%" in judged.reason


def test_large_but_not_significant_passes() -> None:
    # One bad spike doubles the canary's mean, but four of five samples are below the
    # baseline: no significant shift, so no fail (Kayenta's rule: both conditions).
    canary = [0.5, 0.5, 0.5, 0.5, 8.0]
    baseline = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]
    expected_p = mannwhitneyu(canary, baseline, alternative="greater").pvalue
    assert expected_p >= 0.05
    assert worse_ratio(canary, baseline) > 0.1

    judged = judge_metric(metric(tolerance=0.1), canary, baseline)

    assert judged.verdict == PASS
    assert judged.p_value == pytest.approx(expected_p)
    assert f"but not significantly (p={expected_p:.2g} >= 0.05; tolerance 10%)" in judged.reason


@pytest.mark.parametrize(
    ("canary", "baseline", "tolerance", "verdict"),
    [
        ([0.30, 0.32, 0.31], [0.04, 0.05, 0.03, 0.04], 0.1, FAIL),  # mean 0.31 vs 0.04
        ([0.105, 0.104], [0.100, 0.101, 0.099], 0.1, PASS),  # ~5% worse, within 10%
        ([0.2], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1], 0.5, FAIL),  # 100% worse > 50%
        ([0.05, 0.05], [0.1, 0.1], 0.0, PASS),  # better
    ],
)
def test_too_few_samples_fall_back_to_comparing_means(
    canary: list[float], baseline: list[float], tolerance: float, verdict: str
) -> None:
    judged = judge_metric(metric(tolerance=tolerance), canary, baseline, min_samples=5)

    assert judged.method == MEANS
    assert judged.p_value is None
    assert judged.statistic is None
    assert judged.significant is None
    assert judged.worse_by == pytest.approx(worse_ratio(canary, baseline))
    assert judged.verdict == verdict
    assert f"means of {len(canary)} vs {len(baseline)} samples" in judged.reason


def test_min_samples_on_each_side_selects_the_u_test() -> None:
    canary, baseline = [2.0, 2.1, 2.2, 2.3, 2.4], [1.0, 1.1, 1.2, 1.3, 1.4]
    expected_p = mannwhitneyu(canary, baseline, alternative="greater").pvalue

    at_minimum = judge_metric(metric(), canary, baseline, min_samples=5)
    one_short = judge_metric(metric(), canary, baseline, min_samples=6)

    assert at_minimum.method == U_TEST
    assert at_minimum.p_value == pytest.approx(expected_p)  # exact: 1 / C(10, 5)
    assert expected_p == pytest.approx(1 / math.comb(10, 5))
    assert at_minimum.verdict == FAIL
    assert one_short.method == MEANS
    assert one_short.verdict == FAIL  # mean 2.2 vs 1.2: 83% worse


@pytest.mark.parametrize(
    ("canary", "baseline", "empty"),
    [
        ([], [0.1, 0.2], "canary"),
        ([0.1, 0.2], [], "baseline"),
        ([], [], "canary or baseline"),
        ([math.nan, math.inf], [0.1], "canary"),
    ],
)
def test_an_empty_side_is_inconclusive(
    canary: list[float], baseline: list[float], empty: str
) -> None:
    judged = judge_metric(metric(), canary, baseline)

    assert judged.verdict == INCONCLUSIVE
    assert judged.method is None
    assert judged.p_value is None
    assert judged.canary_mean is None or judged.baseline_mean is None
    assert f"no {empty} samples" in judged.reason


def test_direction_higher_fails_a_canary_with_lower_throughput() -> None:
    baseline, canary = noisy(100.0, 2.0, 50, 7), noisy(70.0, 2.0, 50, 8)
    expected_p = mannwhitneyu(canary, baseline, alternative="less").pvalue
    mean_c, mean_b = statistics.fmean(canary), statistics.fmean(baseline)

    judged = judge_metric(metric("rps", HIGHER, 0.1), canary, baseline)

    assert judged.verdict == FAIL
    assert judged.p_value == pytest.approx(expected_p)
    assert judged.relative_change == pytest.approx((mean_c - mean_b) / mean_b)
    assert judged.worse_by == pytest.approx((mean_b - mean_c) / mean_b)
    assert f"{(mean_b - mean_c) / mean_b * 100:.3g}% worse" in judged.reason


def test_direction_higher_passes_a_canary_with_higher_throughput() -> None:
    baseline, canary = noisy(70.0, 2.0, 50, 9), noisy(100.0, 2.0, 50, 10)
    expected_p = mannwhitneyu(canary, baseline, alternative="less").pvalue

    judged = judge_metric(metric("rps", HIGHER, 0.1), canary, baseline)

    assert judged.verdict == PASS
    assert judged.p_value == pytest.approx(expected_p)
    assert judged.worse_by < 0


def test_nan_and_inf_samples_are_dropped_and_counted() -> None:
    canary_clean, baseline_clean = noisy(0.3, 0.01, 20, 11), noisy(0.04, 0.01, 20, 12)
    canary = [math.nan, *canary_clean, math.inf]
    baseline = [*baseline_clean, -math.inf, math.nan, math.nan]
    expected_p = mannwhitneyu(canary_clean, baseline_clean, alternative="greater").pvalue

    judged = judge_metric(metric(), canary, baseline)

    assert (judged.canary_count, judged.canary_dropped) == (20, 2)
    assert (judged.baseline_count, judged.baseline_dropped) == (20, 3)
    assert judged.p_value == pytest.approx(expected_p)
    assert judged.canary_mean == pytest.approx(statistics.fmean(canary_clean))
    assert judged.verdict == FAIL
    assert "dropped NaN/Inf samples: 2 canary, 3 baseline" in judged.reason


def test_numpy_arrays_are_accepted_as_samples() -> None:
    canary, baseline = noisy(0.3, 0.01, 20, 13), noisy(0.04, 0.01, 20, 14)

    from_lists = judge_metric(metric(), canary, baseline)
    from_arrays = judge_metric(metric(), np.array(canary), np.array(baseline))

    assert from_arrays == from_lists


def test_a_zero_baseline_makes_any_worsening_infinitely_worse() -> None:
    canary, baseline = [0.0, 0.0, 0.1, 0.2, 0.1, 0.1], [0.0] * 10
    expected_p = mannwhitneyu(canary, baseline, alternative="greater").pvalue
    assert expected_p < 0.05

    judged = judge_metric(metric(), canary, baseline)

    assert judged.relative_change == math.inf
    assert judged.verdict == FAIL
    assert "worse than a zero baseline" in judged.reason


def test_a_zero_baseline_and_a_zero_canary_are_no_change() -> None:
    judged = judge_metric(metric(tolerance=0.0), [0.0] * 8, [0.0] * 8)

    assert judged.relative_change == 0.0
    assert judged.verdict == PASS


def test_exactly_the_tolerance_worse_still_passes() -> None:
    # 1.1 / 1.0 - 1 is 0.10000000000000009 in floats; an operator's 10% means 10%.
    judged = judge_metric(metric(tolerance=0.1), [1.1, 1.1], [1.0, 1.0, 1.0])

    assert judged.method == MEANS
    assert judged.verdict == PASS


def test_huge_finite_samples_do_not_overflow_the_mean() -> None:
    judged = judge_metric(metric(), [1e308, 1e308], [1e308, 1e308])

    assert judged.canary_mean == 1e308
    assert judged.canary_median == 1e308
    assert judged.verdict == PASS


@pytest.mark.parametrize("bad", [["a", "b"], [[1.0, 2.0], [3.0, 4.0]], [object()], 0.5])
def test_samples_that_are_not_a_flat_list_of_numbers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="canary samples of 'error_ratio'"):
        judge_metric(metric(), bad, [1.0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"alpha": 0.0}, "alpha must be in"), ({"min_samples": 0}, "min_samples must be an int")],
)
def test_judge_metric_refuses_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_metric(metric(), [1.0], [1.0], **options)


def test_none_is_a_missing_sample_dropped_like_nan() -> None:
    judged = judge_metric(metric(), [None, 0.2, 0.2], [0.1, None])  # type: ignore[list-item]

    assert (judged.canary_count, judged.canary_dropped) == (2, 1)
    assert (judged.baseline_count, judged.baseline_dropped) == (1, 1)


# --- over the metrics ---------------------------------------------------------------------

REGRESSED = (noisy(0.31, 0.02, 30, 21), noisy(0.04, 0.01, 30, 22))  # fails
HEALTHY = (noisy(0.10, 0.01, 30, 23), noisy(0.10, 0.01, 30, 24))  # passes


def three_metrics(**overrides: object) -> AnalysisSettings:
    return settings(metric("a"), metric("b"), metric("c"), **overrides)


def test_score_is_passing_metrics_over_metrics() -> None:
    canary = {"a": HEALTHY[0], "b": HEALTHY[0], "c": REGRESSED[0]}
    baseline = {"a": HEALTHY[1], "b": HEALTHY[1], "c": REGRESSED[1]}

    judgement = judge(three_metrics(), canary, baseline, NOW)

    assert [m.verdict for m in judgement.metrics] == [PASS, PASS, FAIL]
    assert judgement.score == pytest.approx(2 / 3)
    assert (judgement.passed, judgement.failed, judgement.inconclusive) == (2, 1, 0)
    assert judgement.verdict == FAIL
    assert judgement.proceed is False
    assert judgement.failures == (judgement.metric("c"),)
    assert judgement.reason.startswith("fail: 1 of 3 metrics worse than the baseline")
    assert judgement.metric("c").reason in judgement.reason
    assert judgement.judged_at == NOW


@pytest.mark.parametrize(
    ("pass_score", "verdict"), [(1.0, FAIL), (0.7, FAIL), (2 / 3, PASS), (0.6, PASS)]
)
def test_pass_score_sets_how_many_metrics_must_pass(pass_score: float, verdict: str) -> None:
    canary = {"a": HEALTHY[0], "b": HEALTHY[0], "c": REGRESSED[0]}
    baseline = {"a": HEALTHY[1], "b": HEALTHY[1], "c": REGRESSED[1]}

    judgement = judge(three_metrics(pass_score=pass_score), canary, baseline, NOW)

    assert judgement.verdict == verdict  # score 2/3 against pass_score
    assert judgement.proceed is (verdict == PASS)


def test_all_metrics_passing_is_a_pass() -> None:
    canary = {name: HEALTHY[0] for name in "abc"}
    baseline = {name: HEALTHY[1] for name in "abc"}

    judgement = judge(three_metrics(), canary, baseline, NOW)

    assert (judgement.verdict, judgement.proceed, judgement.score) == (PASS, True, 1.0)
    assert judgement.reason == "pass: 3 of 3 metrics passed (score 1 >= pass_score 1)"


@pytest.mark.parametrize(("on_inconclusive", "proceed"), [(HALT, False), (PROCEED, True)])
def test_missing_data_is_inconclusive_and_on_inconclusive_decides(
    on_inconclusive: str, proceed: bool
) -> None:
    # "c" has no canary samples at all (its query returned nothing).
    canary = {"a": HEALTHY[0], "b": HEALTHY[0]}
    baseline = {name: HEALTHY[1] for name in "abc"}

    judgement = judge(three_metrics(on_inconclusive=on_inconclusive), canary, baseline, NOW)

    assert judgement.metric("c").verdict == INCONCLUSIVE
    assert judgement.score == pytest.approx(2 / 3)
    assert judgement.verdict == INCONCLUSIVE
    assert judgement.proceed is proceed
    assert f"on_inconclusive: {on_inconclusive}" in judgement.reason
    assert "c: no canary samples" in judgement.reason


@pytest.mark.parametrize("on_inconclusive", [HALT, PROCEED])
def test_a_failure_with_missing_data_is_still_a_failure(on_inconclusive: str) -> None:
    canary = {"a": HEALTHY[0], "b": REGRESSED[0]}
    baseline = {"a": HEALTHY[1], "b": REGRESSED[1], "c": HEALTHY[1]}

    judgement = judge(three_metrics(on_inconclusive=on_inconclusive), canary, baseline, NOW)

    assert [m.verdict for m in judgement.metrics] == [PASS, FAIL, INCONCLUSIVE]
    assert (judgement.verdict, judgement.proceed) == (FAIL, False)


def test_a_failure_tolerated_by_pass_score_leaves_missing_data_to_decide() -> None:
    # pass_score 1/3: one pass would do; with a failure and an unknown, the unknown could
    # have been the pass, so the judgement is inconclusive rather than failed.
    canary = {"b": REGRESSED[0]}
    baseline = {"b": REGRESSED[1]}

    judgement = judge(three_metrics(pass_score=0.3), canary, baseline, NOW)

    assert judgement.score == 0.0
    assert judgement.verdict == INCONCLUSIVE


def test_samples_for_an_unknown_metric_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="unknown analysis metrics: \\['latency'\\]"):
        judge(settings(metric("error_ratio")), {"latency": [1.0]}, {}, NOW)


def test_judgement_round_trips_through_strict_json() -> None:
    canary = {"a": HEALTHY[0], "b": [0.0, 0.1, 0.2, 0.1, 0.1, math.nan], "c": []}
    baseline = {"a": HEALTHY[1], "b": [0.0] * 10, "c": [1.0]}
    judgement = judge(three_metrics(), canary, baseline, NOW)

    text = json.dumps(judgement.to_dict(), allow_nan=False)  # jsonb has no Infinity
    loaded = Judgement.from_dict(json.loads(text))

    assert json.loads(text)["metrics"][1]["relative_change"] == "+Inf"
    assert loaded == judgement
    assert json.loads(text)["verdict"] in VERDICTS


# --- properties ---------------------------------------------------------------------------

samples = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=40
)


@given(
    values=samples,
    direction=st.sampled_from([LOWER, HIGHER]),
    tolerance=st.floats(min_value=0.0, max_value=2.0),
    min_samples=st.integers(min_value=4, max_value=10),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_identical_samples_never_fail(
    values: list[float], direction: str, tolerance: float, min_samples: int, seed: int
) -> None:
    shuffled = list(np.random.default_rng(seed).permutation(np.array(values, dtype=float)))
    config = settings(metric("m", direction, tolerance), min_samples=min_samples)

    judgement = judge(config, {"m": values}, {"m": shuffled}, NOW)

    assert judgement.metric("m").verdict != FAIL
    assert judgement.verdict != FAIL


@given(
    canary=samples,
    baseline=samples,
    direction=st.sampled_from([LOWER, HIGHER]),
    tolerance=st.floats(min_value=0.0, max_value=2.0),
)
def test_a_fail_is_always_worse_than_tolerance_and_json_safe(
    canary: list[float], baseline: list[float], direction: str, tolerance: float
) -> None:
    judgement = judge(
        settings(metric("m", direction, tolerance)), {"m": canary}, {"m": baseline}, NOW
    )
    judged = judgement.metric("m")

    if judged.verdict == FAIL:
        assert judged.worse_by is not None and judged.worse_by > tolerance
        assert judged.method == MEANS or (judged.p_value is not None and judged.p_value < 0.05)
    assert judgement.proceed is (judgement.verdict == PASS)
    json.dumps(judgement.to_dict(), allow_nan=False)


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"query": " "}, "query must be a non-empty string"),
        ({"direction": "up"}, "direction must be one of"),
        ({"tolerance": -0.1}, "tolerance must be a finite ratio >= 0"),
        ({"tolerance": math.nan}, "tolerance must be a finite ratio >= 0"),
        ({"tolerance": True}, "tolerance must be a finite ratio >= 0"),
    ],
)
def test_bad_metrics_are_refused(overrides: dict, message: str) -> None:
    fields = {"name": "m", "query": "up", "direction": LOWER, "tolerance": 0.1, **overrides}
    with pytest.raises(ValueError, match=message):
        AnalysisMetric(**fields)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"metrics": []}, "non-empty list of metrics"),
        ({"metrics": [metric("m"), metric("m")]}, "must be unique, repeated: \\['m'\\]"),
        ({"pass_score": 0.0}, "pass_score must be a ratio in \\(0, 1\\]"),
        ({"pass_score": 1.5}, "pass_score must be a ratio in \\(0, 1\\]"),
        ({"on_inconclusive": "ignore"}, "on_inconclusive must be one of"),
        ({"alpha": 0.0}, "alpha must be a significance level"),
        ({"alpha": 0.6}, "alpha must be a significance level"),
        ({"min_samples": 0}, "min_samples must be an int >= 1"),
        ({"min_samples": 2.5}, "min_samples must be an int >= 1"),
    ],
)
def test_bad_settings_are_refused(overrides: dict, message: str) -> None:
    fields = {"metrics": [metric()], **overrides}
    with pytest.raises(ValueError, match=message):
        AnalysisSettings(**fields)


@pytest.mark.parametrize(("alpha", "min_samples"), [(0.05, 1), (0.05, 2), (0.05, 3), (0.01, 4)])
def test_min_samples_too_few_for_alpha_are_refused(alpha: float, min_samples: int) -> None:
    # The exact U test's smallest one-sided p with m samples a side is 1 / C(2m, m).
    assert 1 / math.comb(2 * min_samples, min_samples) >= alpha
    with pytest.raises(ValueError, match="no canary could ever fail it"):
        settings(alpha=alpha, min_samples=min_samples)


@pytest.mark.parametrize(("alpha", "min_samples"), [(0.05, 4), (0.05, 5), (0.01, 5)])
def test_min_samples_enough_for_alpha_are_accepted(alpha: float, min_samples: int) -> None:
    assert 1 / math.comb(2 * min_samples, min_samples) < alpha
    assert settings(alpha=alpha, min_samples=min_samples).min_samples == min_samples


def test_settings_defaults_and_to_dict() -> None:
    config = settings(metric("latency", HIGHER, 0.25))

    assert (config.pass_score, config.on_inconclusive) == (1.0, HALT)
    assert (config.alpha, config.min_samples) == (0.05, 5)
    assert isinstance(config.metrics, tuple)
    assert config.to_dict()["metrics"] == [
        {
            "name": "latency",
            "query": "latency{instance=~'x'}",
            "direction": HIGHER,
            "tolerance": 0.25,
        }
    ]


def test_the_server_does_not_load_numpy_or_scipy_until_a_judgement_needs_them():
    """scipy.stats alone is tens of MB in every server process; the config imports this
    module for its settings, so the statistics are imported where they are used."""
    code = (
        "import sys, receiver.server, receiver.config, receiver.dispatcher; "
        "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (shown.returncode, shown.stdout.strip()) == (0, "[]"), shown.stderr
