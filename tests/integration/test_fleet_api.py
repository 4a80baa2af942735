"""GET /api/v1/fleets and the fleet metrics through the real server (issue 15: "API
`GET /api/v1/fleets` (size, in flight, current wave, stage, analysis verdicts, breaker);
metrics `remediator_fleet_in_flight`, `remediator_fleet_wave_stage`,
`remediator_canary_verdicts_total`").

A real `remediator serve` runs a real command per action. In the wave test the command
holds until the test creates a file, so what the server reports while the canary runs is
known; a real Prometheus answers the canary analysis' range queries.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.journal import bearer, open_journal, post_webhook, settle, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import Running, prometheus, remediator
from tests.support.receiver import PROMETHEUS_CONFIG, write_config

pytestmark = pytest.mark.integration

#: hold.py GO: ends (exit 0) once the file GO exists, so the test decides when an action
#: ends; it gives up after 60 s so that a failed test leaves no command behind.
HOLD = """import os, sys, time
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)
"""

CANARY, STAGE = 1, 50  # the wave's canary (targets) and its one stage before 100% (%)
WAVE = [f"web-{n}" for n in range(1, 5)]
MAX_IN_FLIGHT = 2


def wave_config(workdir: Path, prom: Running) -> str:
    script = workdir / "hold.py"
    script.write_text(HOLD)
    command = [sys.executable, str(script), str(workdir / "go")]
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {prom.url}}}
defaults: {{cooldown: 0s, max_concurrent_actions: 8}}
executors:
  local: {{type: command}}
strategies:
  - name: heal-web
    matchers: ['alertname="HighErrorRatio"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: {command!r}
    timeout: 90s
    fleet:
      max_in_flight: {MAX_IN_FLIGHT}
      progressive:
        min_targets: 3
        gather: 1s
        canary: {CANARY}
        stages: [{STAGE}%, 100%]
        pause: 0s
      analysis:
        interval: 5s
        step: 1s
        metrics:
          # the same constant on both sides: the canary is never worse, the stage passes
          - {{name: steady, query: 'vector(1)'}}
"""


#: Three fleets of two strategies, each acted on at once (a `log` executor).
PAGED_CONFIG = """
server: {auth: {bearer_token_file: token}}
defaults: {cooldown: 0s}
executors:
  logger: {type: log}
strategies:
  - name: restart-a
    matchers: ['alertname="DownA"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet: {max_in_flight: 50%}
  - name: restart-b
    matchers: ['alertname="DownB"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet: {max_in_flight: 1}
"""


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[Running]:
    """A real Prometheus: the canary analysis' range queries go to it."""
    with prometheus(tmp_path / "prom", PROMETHEUS_CONFIG) as running:
        yield running


@contextmanager
def serve(workdir: Path, text: str) -> Iterator[tuple[Running, Any]]:
    config = write_config(workdir, text)
    store = f"sqlite:///{workdir / 'journal.db'}"
    with remediator(workdir, config, store) as server:
        yield server, open_journal(store)


def fleets(server: Running, **params: int) -> dict[str, Any]:
    response = requests.get(f"{server.url}/api/v1/fleets", params=params, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def scrape(server: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics (parsed by prometheus_client): (name, labels) -> value."""
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exported"
    return samples[key]


def test_fleets_answers_an_empty_page_before_any_fleet_acted(tmp_path: Path):
    with serve(tmp_path, PAGED_CONFIG) as (server, _journal):
        assert fleets(server) == {
            "data": [],
            "total": 0,
            "limit": 100,
            "offset": 0,
            "next_offset": None,
        }


def test_fleets_refuses_a_bad_limit_or_offset(tmp_path: Path):
    with serve(tmp_path, PAGED_CONFIG) as (server, _journal):
        for query in ("limit=0", "limit=1001", "limit=two", "offset=-1", "offset=1.5"):
            response = requests.get(f"{server.url}/api/v1/fleets?{query}", timeout=5)
            assert response.status_code == 400, query
            assert "limit must be 1..1000" in response.text, query


def test_fleets_are_paged_by_strategy_then_fleet(tmp_path: Path):
    alerts = [
        alert("DownB", service="zeta", instance="zeta-1", starts_at="2026-11-29T10:00:00Z"),
        alert("DownA", service="web", instance="web-1", starts_at="2026-11-29T10:00:00Z"),
        alert("DownA", service="db", instance="db-1", starts_at="2026-11-29T10:00:00Z"),
        alert("DownA", service="db", instance="db-2", starts_at="2026-11-29T10:00:00Z"),
    ]
    with serve(tmp_path, PAGED_CONFIG) as (server, journal):
        assert post_webhook(server.url, notification(*alerts)).status_code == 200
        settle(journal, len(alerts))
        wait_for(lambda: fleets(server)["total"] == 3, 20, "three fleets journaled")
        first = fleets(server, limit=2)
        assert [(f["strategy"], f["fleet"]) for f in first["data"]] == [
            ("restart-a", "db"),
            ("restart-a", "web"),
        ]
        assert (first["total"], first["limit"], first["offset"], first["next_offset"]) == (
            3,
            2,
            0,
            2,
        )
        rest = fleets(server, limit=2, offset=first["next_offset"])
        assert [(f["strategy"], f["fleet"]) for f in rest["data"]] == [("restart-b", "zeta")]
        assert (rest["offset"], rest["next_offset"]) == (2, None)
        assert fleets(server, offset=3)["data"] == []
        db = first["data"][0]
        # 50% of a fleet of the 2 targets journaled (no size_query), rounded down, >= 1
        assert (db["size"], db["size_source"], db["max_in_flight"]) == (2, "journal", 1)
        assert (db["in_flight"], db["in_flight_targets"], db["wave"]) == (0, [], None)
        assert db["configured"] is True
        assert db["breaker"]["target"] == "fleet:db"
        assert db["breaker"]["state"] == "closed"
        assert db["analyses"] == []


def test_a_fleets_page_stops_before_the_fleet_that_would_pass_max_page_bytes(tmp_path: Path):
    """As every listing: at most limits.max_page_bytes of JSON (the first fleet always
    shows), fewer fleets than `limit` then, and next_offset says where to read on."""
    page_bytes = 4096  # the smallest the config takes; a fleet's JSON is ~0.6 KB here
    services = [f"svc-{n}" for n in range(1, 13)]
    alerts = [
        alert("DownA", service=s, instance=f"{s}-1", starts_at="2026-11-29T10:00:00Z")
        for s in services
    ]
    config = PAGED_CONFIG + f"limits: {{max_page_bytes: {page_bytes}}}\n"
    with serve(tmp_path, config) as (server, journal):
        assert post_webhook(server.url, notification(*alerts)).status_code == 200
        settle(journal, len(alerts))
        wait_for(lambda: fleets(server)["total"] == len(services), 20, "the fleets journaled")
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            response = requests.get(
                f"{server.url}/api/v1/fleets", params={"offset": offset}, timeout=5
            )
            assert len(response.content) <= page_bytes
            body = response.json()
            assert 0 < len(body["data"]) < body["limit"]  # bounded by bytes, not by rows
            seen += [f["fleet"] for f in body["data"]]
            offset = body["next_offset"]
        assert seen == sorted(services)


def test_metrics_export_the_fleet_gauges_during_a_wave_and_after_it(tmp_path: Path, prom: Running):
    with serve(tmp_path, wave_config(tmp_path, prom)) as (server, journal):
        alerts = [
            alert("HighErrorRatio", service="web", instance=t, starts_at="2026-11-29T10:00:00Z")
            for t in WAVE
        ]
        assert post_webhook(server.url, notification(*alerts)).status_code == 200

        def canary_running() -> dict[str, Any] | None:
            data = fleets(server)["data"]
            if data and data[0]["wave"] and data[0]["wave"]["acted_on"] == CANARY:
                return data[0]
            return None

        fleet = wait_for(canary_running, 30, "the wave's canary to start")
        wave = fleet["wave"]
        # sizes: the canary, then each stage's share of the wave rounded up, cumulative
        sizes = [CANARY, math.ceil(len(WAVE) * STAGE / 100), len(WAVE)]
        assert (wave["phase"], wave["stage"], wave["stage_label"]) == ("canary", 0, "canary")
        assert (wave["targets"], wave["released"], wave["sizes"]) == (len(WAVE), 1, sizes)
        assert wave["stages"] == len(sizes) - 1
        assert (fleet["in_flight"], fleet["in_flight_targets"]) == (CANARY, ["web-1"])
        assert fleet["max_in_flight"] == MAX_IN_FLIGHT

        samples = scrape(server)
        key = {"strategy": "heal-web", "fleet": "web"}
        assert sample(samples, "remediator_fleet_in_flight", **key) == CANARY
        assert sample(samples, "remediator_fleet_wave_stage", **key) == 0  # the canary
        waiting = sample(samples, "remediator_actions_waiting", reason="fleet")
        assert waiting == len(WAVE) - CANARY
        for verdict in ("pass", "fail", "inconclusive"):  # seeded at zero
            name = "remediator_canary_verdicts_total"
            assert sample(samples, name, strategy="heal-web", verdict=verdict) == 0

        (tmp_path / "go").touch()
        actions = settle(journal, len(WAVE), timeout=90)
        assert [a["status"] for a in actions] == ["succeeded"] * len(WAVE)
        done = wait_for(
            lambda: fleets(server)["data"][0]["wave"]["phase"] == "done" and fleets(server),
            30,
            "the wave to end",
        )["data"][0]
        # one analysis after the canary and after each stage that leaves a baseline
        # (not after the last: no target is left to compare with), all passing
        verdicts = [v["verdict"] for v in done["wave"]["verdicts"]]
        assert verdicts == ["pass"] * (len(sizes) - 1)
        assert [a["verdict"] for a in done["analyses"]] == ["pass"] * len(verdicts)

        samples = scrape(server)
        assert sample(samples, "remediator_fleet_in_flight", **key) == 0
        assert sample(samples, "remediator_fleet_wave_stage", **key) == -1  # no wave runs
        assert sample(samples, "remediator_actions_waiting", reason="fleet") == 0
        passed = sample(
            samples, "remediator_canary_verdicts_total", strategy="heal-web", verdict="pass"
        )
        assert passed == len(verdicts)


#: A dry-run strategy with a fleet: the fleet gate does not apply in dry run (README,
#: Gates), so its actions must neither wait for the fleet nor open a wave. The gather is
#: long so that a wave opened by mistake would still be listed when the test looks.
DRY_CONFIG = """
server: {auth: {bearer_token_file: token}}
defaults: {cooldown: 0s}
executors:
  logger: {type: log}
strategies:
  - name: restart-dry
    matchers: ['alertname="DownA"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    dry_run: true
    fleet:
      max_in_flight: 1
      progressive: {min_targets: 3, gather: 10m}
"""


def test_a_dry_run_fleet_neither_waits_nor_opens_a_wave(tmp_path: Path):
    instances = [f"web-{n}" for n in range(1, 5)]
    alerts = [
        alert("DownA", service="web", instance=i, starts_at="2026-11-29T10:00:00Z")
        for i in instances
    ]
    with serve(tmp_path, DRY_CONFIG) as (server, journal):
        assert post_webhook(server.url, notification(*alerts)).status_code == 200
        settle(journal, len(alerts))

        def actions() -> list[dict[str, Any]]:
            url = f"{server.url}/api/v1/actions?strategy=restart-dry"
            return requests.get(url, timeout=5).json()["data"]

        wait_for(
            lambda: [a["status"] for a in actions()] == ["skipped"] * len(instances),
            20,
            "every dry-run action skipped",
        )
        found = actions()
        assert sorted(a["target"] for a in found) == instances
        for action in found:
            reasons = [event["reason"] for event in action["events"]]
            assert reasons[-1] == f"dry_run: would restart {action['target']}"
            assert not [r for r in reasons if r.startswith("waiting: fleet")], reasons
        listed = [f for f in fleets(server)["data"] if f["strategy"] == "restart-dry"]
        assert [(f["fleet"], f["wave"], f["in_flight"]) for f in listed] in ([], [("web", None, 0)])


def size_config(workdir: Path, prom: Running, size_query: str) -> str:
    """One fleet, max_in_flight 1, whose actions hold until the file `go` exists: the
    fleet has work (one in flight, one waiting) for as long as the test looks."""
    script = workdir / "hold.py"
    script.write_text(HOLD)
    command = [sys.executable, str(script), str(workdir / "go")]
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {prom.url}}}
defaults: {{cooldown: 0s}}
executors:
  local: {{type: command}}
strategies:
  - name: heal-web
    matchers: ['alertname="HighErrorRatio"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: {command!r}
    timeout: 90s
    fleet:
      max_in_flight: 1
      size_query: '{size_query}'
"""


def test_a_failing_size_query_sizes_the_fleet_by_the_journal_not_a_stale_answer(
    tmp_path: Path, prom: Running
):
    """README, Fleets: the size is `size_query`'s last answer, "the journal's count until
    it answers and when it fails". A query that answered 7 and then fails (here: a
    reload makes it answer nothing) must not leave the fleet sized 7 for ever."""
    targets = ["web-1", "web-2"]
    alerts = [
        alert("HighErrorRatio", service="web", instance=t, starts_at="2026-11-29T10:00:00Z")
        for t in targets
    ]
    with serve(tmp_path, size_config(tmp_path, prom, "vector(7)")) as (server, _journal):
        try:
            assert post_webhook(server.url, notification(*alerts)).status_code == 200

            def sized(source: str) -> dict[str, Any] | None:
                data = fleets(server)["data"]
                return data[0] if data and data[0]["size_source"] == source else None

            first = wait_for(lambda: sized("size_query"), 30, "size_query to answer")
            assert first["size"] == 7
            assert first["size_note"] == "size_query 'vector(7)' = 7"

            write_config(tmp_path, size_config(tmp_path, prom, "vector(7) == 8"))
            response = requests.post(f"{server.url}/-/reload", headers=bearer(), timeout=10)
            assert response.status_code == 200, response.text
            after = wait_for(lambda: sized("journal"), 30, "the failed query to be dropped")
            assert after["size"] == len(targets)  # the distinct targets journaled
            assert after["size_note"].startswith(
                "size_query failed, sized by the journal meanwhile: query 'vector(7) == 8' "
                "must return exactly one finite value, got []"
            )
        finally:
            (tmp_path / "go").touch()
