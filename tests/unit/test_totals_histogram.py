"""totals.observe: the stored keys of a histogram's buckets (cached per label set)."""

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


def test_an_observation_counts_every_bucket_it_falls_in_with_sorted_label_keys() -> None:
    first, second = Recorder(), Recorder()
    totals.observe(first, "m", {"strategy": "s", "action": "a"}, 2.0, (1.0, 5.0))
    totals.observe(second, "m", {"action": "a", "strategy": "s"}, 2.0, (1.0, 5.0))
    expected = [
        ("m_bucket", '{"action": "a", "le": "5", "strategy": "s"}', 1.0),
        ("m_bucket", '{"action": "a", "le": "+Inf", "strategy": "s"}', 1.0),
        ("m_sum", '{"action": "a", "strategy": "s"}', 2.0),
        ("m_count", '{"action": "a", "strategy": "s"}', 1.0),
    ]
    assert first.added == expected
    assert second.added == expected  # the label order given makes no difference


def test_bucket_keys_follow_the_label_values_not_a_cached_first_call() -> None:
    one, other = Recorder(), Recorder()
    totals.observe(one, "m", {"service": "web"}, 0.5, (1.0,))
    totals.observe(other, "m", {"service": "db"}, 0.5, (1.0,))
    assert [k for m, k, _ in one.added if m == "m_bucket"] == [
        '{"le": "1", "service": "web"}',
        '{"le": "+Inf", "service": "web"}',
    ]
    assert [k for m, k, _ in other.added if m == "m_bucket"] == [
        '{"le": "1", "service": "db"}',
        '{"le": "+Inf", "service": "db"}',
    ]


BOUNDS = (0.1, 1.0, 5.0)


@pytest.mark.parametrize("value", [0.0, 0.1, 0.5, 1.0, 4.99, 5.0, 5.01, 1e9, math.inf, math.nan])
def test_an_observation_counts_in_each_bucket_whose_bound_is_not_below_it(value: float) -> None:
    recorder = Recorder()
    totals.observe(recorder, "m", {}, value, BOUNDS)
    expected = [totals.le(b) for b in (*BOUNDS, math.inf) if value <= b]  # the rule, per bound
    found = [k for m, k, _ in recorder.added if m == "m_bucket"]
    assert found == [totals.canonical_json({"le": le}) for le in expected]
