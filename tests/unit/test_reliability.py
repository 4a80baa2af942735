"""MTTR, availability and health arithmetic, with hand-computed expectations."""

from __future__ import annotations

import pytest

from receiver.reliability import WindowFacts, figures, health, per_service

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
