"""MTTR, availability and health arithmetic, with hand-computed expectations."""

from __future__ import annotations

import random

import pytest

from receiver.reliability import (
    WindowFacts,
    closed_part_end,
    figures,
    health,
    per_service,
    window_figures,
)

DAY = 86400.0
NOW = 1_000_000.0


def test_no_incidents_is_fully_available():
    found = figures([], DAY, NOW)
    assert (found.incidents, found.mttr, found.downtime, found.mtbf) == (0, 0.0, 0.0, None)
    assert found.availability == 1.0


def test_two_resolved_incidents():
    # 600 s and 1800 s: MTTR 1200; downtime 2400; MTBF (86400-2400)/2 = 42000
    found = figures([(NOW - 10000, NOW - 9400), (NOW - 5000, NOW - 3200)], DAY, NOW)
    assert found.incidents == 2
    assert found.mttr == pytest.approx(1200.0)
    assert found.downtime == pytest.approx(2400.0)
    assert found.mtbf == pytest.approx(42000.0)
    assert found.availability == pytest.approx(42000.0 / 43200.0)


def test_firing_incident_counts_its_duration_so_far():
    found = figures([(NOW - 300, None)], DAY, NOW)
    assert (found.incidents, found.mttr, found.downtime) == (1, 300.0, 300.0)


def test_overlapping_incidents_are_one_outage_for_downtime_but_two_for_mttr():
    # [0,100] and [50,200] relative: union 200 s; mean duration (100+150)/2 = 125
    base = NOW - 1000
    found = figures([(base, base + 100), (base + 50, base + 200)], DAY, NOW)
    assert found.downtime == pytest.approx(200.0)
    assert found.mttr == pytest.approx(125.0)
    assert found.mtbf == pytest.approx((DAY - 200.0) / 2)


def test_incidents_outside_the_window_do_not_count_and_edges_are_clipped():
    old = (NOW - 2 * DAY, NOW - DAY - 1)  # ended before the window
    straddling = (NOW - DAY - 100, NOW - DAY + 50)  # 50 s inside the window
    found = figures([old, straddling], DAY, NOW)
    assert found.incidents == 1
    assert found.downtime == pytest.approx(50.0)
    assert found.mttr == pytest.approx(150.0)  # MTTR is the whole incident


@pytest.mark.parametrize(
    ("firing", "actions", "expected"),
    [
        (False, [("failed", "x")], "healthy"),
        (True, [], "unhealthy"),
        (True, [("planned", "matched")], "unhealthy"),
        (True, [("skipped", "cooldown: ...")], "unhealthy"),  # journaled before issue 14
        # issue 14: a cooldown delays the action, which stays planned until it is eligible
        (True, [("planned", "waiting: cooldown: ...; eligible at ...")], "unhealthy"),
        (True, [("running", "claimed")], "degraded"),
        (True, [("succeeded", "ok")], "degraded"),
        (True, [("failed", "exit status 1")], "critical"),
        (True, [("timed_out", "timed out")], "critical"),
        (True, [("skipped", "breaker_open: x on y is open")], "critical"),
        (True, [("running", "r"), ("failed", "f")], "critical"),
        # runbooks (issue 14): (status, reason, step, run status)
        (True, [("planned", "waiting: step 1 failed; next step 2", 2, "running")], "degraded"),
        (True, [("planned", "waiting: cooldown: ...", 1, "running")], "unhealthy"),
        (True, [("failed", "verification failed", 1, "running")], "unhealthy"),
        (True, [("failed", "verification failed", 2, "uncured")], "critical"),
        (True, [("skipped", "budget: 3 actions on web", 1, "uncured")], "critical"),
        (True, [("skipped", "dry_run: would restart web", 1, "dry_run")], "unhealthy"),
        (True, [("succeeded", "ok", 1, "cured")], "degraded"),
    ],
)
def test_health(firing, actions, expected):
    assert health(firing, actions) == expected


def test_per_service_groups_facts_and_limits():
    facts = {
        "windows": {
            "a": WindowFacts(closed=1, closed_seconds=60.0, closed_downtime=60.0),
            "b": WindowFacts(firing_starts=(NOW - 30,)),
        },
        "firing_latest": [("b", "running", "claimed")],
        "services": ["b", "a", "c"],
    }
    found = per_service(facts, DAY, NOW)
    assert list(found) == ["a", "b", "c"]
    assert found["a"][0].mttr == pytest.approx(60.0) and found["a"][1] == "healthy"
    assert found["b"][0].mttr == pytest.approx(30.0) and found["b"][1] == "degraded"
    assert found["c"][0].incidents == 0 and found["c"][1] == "healthy"
    assert list(per_service(facts, DAY, NOW, limit=2)) == ["a", "b"]


def facts_of(intervals, window, now) -> WindowFacts:
    """WindowFacts computed here by their definition, from every interval."""
    since = now - window
    closed = [(s, e) for s, e in intervals if e is not None and e >= since and s <= now]
    firing = tuple(s for s, e in intervals if e is None)
    until = closed_part_end(firing, since, now)
    clipped = [(max(s, since), min(e, until)) for s, e in intervals if e is not None]
    covered = figures([(s, e) for s, e in clipped if e > s], until - since, until).downtime
    return WindowFacts(
        closed=len(closed),
        closed_seconds=sum(max(0.0, e - s) for s, e in closed),
        firing_starts=firing,
        closed_downtime=covered if until > since else 0.0,
    )


def test_a_firing_incident_makes_the_rest_of_the_window_down_whatever_closed():
    # firing since NOW-300: closed cover only matters before it
    assert closed_part_end([NOW - 300, NOW - 100], NOW - DAY, NOW) == NOW - 300
    assert closed_part_end([NOW - 2 * DAY], NOW - DAY, NOW) == NOW - DAY  # clipped
    assert closed_part_end([NOW + 5], NOW - DAY, NOW) == NOW  # starts later: ignored
    assert closed_part_end([], NOW - DAY, NOW) == NOW


def test_window_figures_of_two_resolved_and_one_firing():
    # closed 600 s and 1800 s (union 2400 s), firing for 300 s: 3 incidents
    facts = WindowFacts(
        closed=2, closed_seconds=2400.0, firing_starts=(NOW - 300,), closed_downtime=2400.0
    )
    found = window_figures(facts, DAY, NOW)
    assert (found.incidents, found.mttr, found.downtime) == (3, 900.0, 2700.0)
    assert found.mtbf == pytest.approx((DAY - 2700.0) / 3)


def test_an_interval_ending_before_it_starts_covers_nothing():
    found = figures([(NOW - 100, NOW - 200), (NOW - 150, NOW - 50)], DAY, NOW)
    assert (found.incidents, found.downtime, found.mttr) == (2, 100.0, 50.0)


@pytest.mark.parametrize("seed", range(20))
def test_window_figures_equal_figures_from_every_interval(seed):
    rng = random.Random(seed)
    intervals = []
    for _ in range(rng.randint(0, 30)):
        start = NOW - rng.uniform(-600, 2 * DAY)
        end = None if rng.random() < 0.15 else start + rng.uniform(-300, DAY / 2)
        intervals.append((start, end))
    for window in (DAY, 3600.0):
        want = figures(intervals, window, NOW)
        got = window_figures(facts_of(intervals, window, NOW), window, NOW)
        assert got.incidents == want.incidents
        assert got.mttr == pytest.approx(want.mttr, rel=1e-9, abs=1e-9)
        assert got.downtime == pytest.approx(want.downtime, rel=1e-9, abs=1e-9)
        assert got.availability == pytest.approx(want.availability, rel=1e-9)
