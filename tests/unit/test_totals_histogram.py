"""totals.observe: the one stored bucket row an observation counts in (keys cached per
label set); totals.read_totals: per-bucket rows read back as Prometheus's cumulative
buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest

from receiver.store import totals


class Recorder:
    """What observe hands to a transaction: (metric, stored label key, delta)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, float]] = []

    def add_total(self, metric: str, labels: str, delta: float) -> None:
        self.added.append((metric, labels, delta))

    def add_totals(self, metric: str, labels: Iterable[str], delta: float) -> None:
        for key in labels:
            self.add_total(metric, key, delta)


def test_an_observation_counts_the_one_bucket_it_falls_in_with_sorted_label_keys() -> None:
    first, second = Recorder(), Recorder()
    totals.observe(first, "m", {"strategy": "s", "action": "a"}, 2.0, (1.0, 5.0))
    totals.observe(second, "m", {"action": "a", "strategy": "s"}, 2.0, (1.0, 5.0))
    expected = [
        ("m_bucket", '{"action": "a", "le": "5", "strategy": "s"}', 1.0),
        ("m_sum", '{"action": "a", "strategy": "s"}', 2.0),
        ("m_count", '{"action": "a", "strategy": "s"}', 1.0),
    ]
    assert first.added == expected
    assert second.added == expected  # the label order given makes no difference


def test_bucket_keys_follow_the_label_values_not_a_cached_first_call() -> None:
    one, other = Recorder(), Recorder()
    totals.observe(one, "m", {"service": "web"}, 0.5, (1.0,))
    totals.observe(other, "m", {"service": "db"}, 2.0, (1.0,))
    assert [k for m, k, _ in one.added if m == "m_bucket"] == ['{"le": "1", "service": "web"}']
    assert [k for m, k, _ in other.added if m == "m_bucket"] == ['{"le": "+Inf", "service": "db"}']


BOUNDS = (0.1, 1.0, 5.0)


@pytest.mark.parametrize("value", [0.0, 0.1, 0.5, 1.0, 4.99, 5.0, 5.01, 1e9, math.inf, math.nan])
def test_an_observation_counts_in_the_bucket_of_the_first_bound_not_below_it(
    value: float,
) -> None:
    """Per bucket: (previous bound, bound], +Inf above the last; NaN in none."""
    recorder = Recorder()
    totals.observe(recorder, "m", {}, value, BOUNDS)
    first = [b for b in (*BOUNDS, math.inf) if value <= b][:1]  # the rule, per bound
    found = [(k, delta) for m, k, delta in recorder.added if m == "m_bucket"]
    assert found == [(totals.canonical_json({"le": totals.le(b)}), 1.0) for b in first]


def _rows(metric: str, stored: dict[str, float], **labels: str) -> list[tuple[str, str, float]]:
    """(metric, stored label JSON, value) rows of one series, as READ_SQL returns them."""
    return [
        (metric, totals.canonical_json({**labels, "le": le}), value) for le, value in stored.items()
    ]


def _read(rows: list[tuple[str, str, float]], metric: str) -> dict[tuple, float]:
    return {
        tuple(sorted(labels.items())): value
        for labels, value in totals.read_totals(rows).get(metric, [])
    }


def test_per_bucket_rows_read_back_as_cumulative_buckets() -> None:
    metric = "remediator_action_duration_seconds_bucket"
    stored = {"0.1": 2.0, "0.5": 0.0, "1": 1.0, "5": 0.0, "15": 3.0, "+Inf": 4.0}
    stored |= {totals.le(b): 0.0 for b in totals.ACTION_BUCKETS if totals.le(b) not in stored}
    read = _read(_rows(metric, stored, strategy="s", action="a"), metric)
    running, expected = 0.0, {}
    for bound in (*totals.ACTION_BUCKETS, math.inf):  # each row plus every row below it
        running += stored[totals.le(bound)]
        expected[(("action", "a"), ("le", totals.le(bound)), ("strategy", "s"))] = running
    assert read == expected
    assert read[(("action", "a"), ("le", "+Inf"), ("strategy", "s"))] == 10.0


def test_each_series_is_summed_on_its_own() -> None:
    metric = "h_bucket"
    rows = _rows(metric, {"1": 1.0, "+Inf": 2.0}, service="web")
    rows += _rows(metric, {"1": 5.0, "+Inf": 0.0}, service="db")
    assert _read(rows, metric) == {
        (("le", "1"), ("service", "web")): 1.0,
        (("le", "+Inf"), ("service", "web")): 3.0,
        (("le", "1"), ("service", "db")): 5.0,
        (("le", "+Inf"), ("service", "db")): 5.0,
    }


def test_a_bound_without_a_row_counts_nothing_and_is_read_at_the_sum_below_it() -> None:
    """A series written by observations alone (never seeded) has rows only where they
    fell; the histogram's known bounds are read back all the same."""
    metric = "remediator_time_to_remediate_seconds_bucket"
    read = _read(_rows(metric, {"30": 1.0, "+Inf": 1.0}, strategy="s"), metric)
    expected = {
        (("le", totals.le(b)), ("strategy", "s")): float((b >= 30) + (b == math.inf))
        for b in (*totals.DURATION_BUCKETS, math.inf)
    }
    assert read == expected


def test_counters_and_bucket_rows_without_le_are_read_as_stored() -> None:
    rows = [
        ("remediator_actions_total", '{"outcome": "failed"}', 3.0),
        ("odd_bucket", '{"service": "web"}', 2.0),
    ]
    found = totals.read_totals(rows)
    assert found == {
        "remediator_actions_total": [({"outcome": "failed"}, 3.0)],
        "odd_bucket": [({"service": "web"}, 2.0)],
    }
