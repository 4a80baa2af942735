"""Range-query refusals: what Prometheus' query_range would refuse is refused before sending.

The rules are Prometheus' own (web/api/v1/api.go): step > 0, end not before start, and
``(end - start) / step`` (truncated, as Go divides durations) at most 11,000. Every client
here points at a port nothing listens on: a refusal that is a ValueError (not
PrometheusUnreachable) proves nothing was sent.
"""

from __future__ import annotations

import math

import pytest

from receiver import analysis, canary
from receiver.prometheus import MAX_RANGE_POINTS, PrometheusClient, check_range, range_points
from tests.support.processes import free_port

START = 1_700_000_000.0


def nowhere() -> PrometheusClient:
    return PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2)


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (START, START + 60, 0, "step must be > 0"),
        (START, START + 60, -10, "step must be > 0"),
        (START, START - 1, 10, "is before start"),
        (START, START + 11_001, 1, "Prometheus refuses more than 11,000"),
        (START, START + 110_020, 10, "Prometheus refuses more than 11,000"),
        (START, START + 60, math.nan, "step must be finite"),
        (math.inf, START, 10, "start must be finite"),
        (START, math.nan, 10, "end must be finite"),
        (START, START + 60, True, "step must be a number of seconds"),
        (START, "soon", 10, "end must be a number of seconds"),
    ],
)
def test_query_range_refuses_a_window_before_sending(start, end, step, message):
    with pytest.raises(ValueError, match=message):
        nowhere().query_range("up", start, end, step)


def test_more_than_11000_steps_names_the_points_and_the_way_out():
    with pytest.raises(ValueError) as refused:
        check_range(START, START + 20_000, 1)
    assert "20,001 points" in str(refused.value)
    assert "use a larger step or a shorter interval" in str(refused.value)


@pytest.mark.parametrize(
    ("start", "end", "step", "expected"),
    [
        (START, START, 10, 1),  # end == start: one point
        (START, START + 60, 10, 7),  # 0, 10, ..., 60
        (START, START + 65, 10, 7),  # 65 is not a step: the last point is at 60
        (START, START + 11_000, 1, 11_001),  # Prometheus answers at exactly 11,000 steps
        (START, START + 11_000.5, 1, 11_001),  # 11,000.5 steps truncate to 11,000, as in Go
        (START, START + 0.5, 0.25, 3),
    ],
)
def test_range_points_counts_every_step_from_start_to_end(start, end, step, expected):
    assert range_points(start, end, step) == expected
    check_range(start, end, step)  # accepted: no ValueError


def test_the_limit_is_prometheus_own():
    assert MAX_RANGE_POINTS == 11_000


def settings() -> analysis.AnalysisSettings:
    return analysis.AnalysisSettings(
        metrics=(analysis.AnalysisMetric("error_ratio", 'errors{target="{{ target }}"}'),)
    )


@pytest.mark.parametrize(
    ("metrics", "kwargs", "message"),
    [
        ([("error_ratio", ["q"], ["q"])], {"step": 0}, "step must be > 0"),
        ([("error_ratio", ["q"], ["q"])], {"max_targets": 0}, "max_targets must be an int"),
        ([("error_ratio", ["q"], ["q"])], {"max_targets": 2.5}, "max_targets must be an int"),
        ([("a", ["q"], []), ("a", [], ["q"])], {}, r"named more than once: \['a'\]"),
        # The string is on the second metric: the first metric's queries are not sent either.
        (
            [("a", ["q"], ["q"]), ("b", ["q"], "errors")],
            {},
            "b baseline queries must be a list of queries, not a string",
        ),
    ],
)
def test_sample_metrics_refuses_caller_mistakes_before_any_query(metrics, kwargs, message):
    step = kwargs.get("step", 10)
    max_targets = kwargs.get("max_targets", canary.MAX_TARGETS_PER_SIDE)
    with pytest.raises(ValueError, match=message):
        canary.sample_metrics(nowhere(), metrics, START, START + 60, step, max_targets=max_targets)


def test_analyse_refuses_queries_for_a_metric_the_settings_do_not_have():
    with pytest.raises(
        ValueError, match=r"canary queries for unknown analysis metrics: \['latency'\]"
    ):
        canary.analyse(nowhere(), settings(), {"latency": ["q"]}, {}, START, START + 60, 10, START)
