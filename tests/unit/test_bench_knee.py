"""The knee search of bench/latency.py (bench/knee.py), with a fake measure: a server
whose latency target holds exactly up to `capacity` notifications/s."""

from __future__ import annotations

import math

import pytest

from bench.knee import KneeSettings, find_knee

SETTINGS = KneeSettings(start=25, floor=5, ceiling=1600, resolution=1.15, max_probes=16)
NO_RETRY = KneeSettings(start=25, floor=5, ceiling=1600, resolution=1.15, retries=0, max_probes=12)


class FakeServer:
    """Passes every probe at or below `capacity`; records the rates it was probed at."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.rates: list[float] = []

    def __call__(self, rate: float) -> tuple[bool, dict]:
        self.rates.append(rate)
        return rate <= self.capacity, {"rate_seen": rate}


@pytest.mark.parametrize("capacity", [7, 15, 60, 300, 999, 1500])
def test_knee_brackets_the_capacity_within_the_resolution(capacity: float) -> None:
    knee = find_knee(FakeServer(capacity), SETTINGS)
    assert knee.rate is not None and knee.first_failing is not None
    assert knee.rate <= capacity < knee.first_failing
    assert knee.first_failing / knee.rate <= SETTINGS.resolution


def test_rates_double_from_the_start_until_the_first_failure() -> None:
    server = FakeServer(300)
    find_knee(server, NO_RETRY)
    doubling = [SETTINGS.start * 2**k for k in range(5)]  # 25 .. 400, the first above 300
    assert server.rates[:5] == doubling
    assert all(200 < rate < 400 for rate in server.rates[5:])  # then only in between


def test_each_bisection_probes_the_geometric_mean_of_the_bracket() -> None:
    server = FakeServer(300)
    find_knee(server, NO_RETRY)
    assert server.rates[5] == round(math.sqrt(200 * 400))


def test_a_server_that_passes_the_ceiling_has_a_knee_of_at_least_the_ceiling() -> None:
    server = FakeServer(math.inf)
    knee = find_knee(server, SETTINGS)
    assert knee.rate == SETTINGS.ceiling
    assert knee.first_failing is None
    assert max(server.rates) == SETTINGS.ceiling
    assert "at least" in knee.reason


def test_a_failing_start_halves_down_to_the_floor_and_reports_no_knee() -> None:
    server = FakeServer(2)  # below the floor
    knee = find_knee(server, SETTINGS)
    assert knee.rate is None
    assert knee.first_failing == SETTINGS.floor
    assert min(server.rates) == SETTINGS.floor
    assert not any(p.passed for p in knee.probes)


def test_probes_keep_the_measure_detail_in_order() -> None:
    server = FakeServer(60)
    knee = find_knee(server, SETTINGS)
    assert [p.rate for p in knee.probes] == server.rates
    assert [p.detail["rate_seen"] for p in knee.probes] == server.rates
    assert [p.passed for p in knee.probes] == [r <= 60 for r in server.rates]


def test_the_search_never_exceeds_max_probes() -> None:
    settings = KneeSettings(
        start=25, floor=5, ceiling=1600, resolution=1.01, retries=0, max_probes=7
    )
    server = FakeServer(300)
    knee = find_knee(server, settings)
    assert len(server.rates) == settings.max_probes
    assert knee.rate is not None and knee.rate <= 300 < knee.first_failing
    assert "stopped after 7 probes" in knee.reason


def test_a_failing_rate_is_tried_again_before_it_counts_as_failed() -> None:
    server = FakeServer(300)
    knee = find_knee(server, SETTINGS)
    failed = [p.rate for p in knee.probes if not p.passed]
    assert all(failed.count(rate) == 1 + SETTINGS.retries for rate in set(failed))
    assert knee.rate is not None and knee.rate <= 300 < knee.first_failing


class HiccupServer(FakeServer):
    """Capacity 300, but its first try at `hiccup` fails (a noisy neighbour)."""

    def __init__(self, hiccup: float) -> None:
        super().__init__(300)
        self.hiccup = hiccup

    def __call__(self, rate: float) -> tuple[bool, dict]:
        passed, detail = super().__call__(rate)
        if rate == self.hiccup and self.rates.count(rate) == 1:
            return False, detail
        return passed, detail


def test_a_single_hiccup_does_not_move_the_knee() -> None:
    steady = find_knee(FakeServer(300), SETTINGS)
    noisy = find_knee(HiccupServer(100), SETTINGS)
    assert noisy.rate == steady.rate
    assert noisy.first_failing == steady.first_failing
    assert len(noisy.probes) == len(steady.probes) + 1


def test_without_retries_a_hiccup_lowers_the_knee() -> None:
    noisy = find_knee(HiccupServer(100), NO_RETRY)
    assert noisy.rate is not None and noisy.rate < 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": math.nan},
        {"start": 0},
        {"floor": 50, "start": 25},
        {"start": 3200, "ceiling": 1600},
        {"resolution": 1.0},
        {"retries": -1},
        {"max_probes": 0},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="knee search"):
        KneeSettings(**kwargs)
