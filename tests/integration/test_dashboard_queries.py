"""A real Prometheus scrapes a real receiver after a scripted sequence of incidents;
then EVERY dashboard panel expression and every meta-monitoring rule is evaluated
through Prometheus's HTTP API: each must be valid, and each panel must return data."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.dashboard import DEFAULT_VARIABLES, dashboard_exprs
from tests.support.payloads import alert, notification
from tests.support.processes import REPO, prometheus
from tests.support.receiver import TOKEN
from tests.support.scenario import scenario

RULES = REPO / "rules" / "remediator.rules.yml"
STARTS = "2026-07-01T00:00:00Z"


def load_rule_exprs(path: Path) -> list[tuple[str, str]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def prometheus_config(target: str | None) -> str:
    """Prometheus with the meta-monitoring rules, scraping `target` (None: nothing yet)."""
    text = f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{RULES}]
"""
    if target is None:
        return text
    return f"""{text}scrape_configs:
  - job_name: remediator
    static_configs: [{{targets: ['{target}']}}]
"""


#: A fleet strategy beside the scenario's, so the fleet panels have series: a wave of
#: three, its canary analysed by the same Prometheus (a constant: it passes).
FLEET_STRATEGY = """  - name: heal-shop
    matchers: ['alertname="ShopErrors"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet:
      max_in_flight: 2
      progressive: {min_targets: 3, gather: 1s, canary: 1, stages: [100%], pause: 0s}
      analysis:
        interval: 5s
        step: 1s
        metrics: [{name: steady, query: 'vector(1)'}]
"""


def fleet_config(prometheus_url: str) -> str:
    return f"{FLEET_STRATEGY}prometheus: {{url: {prometheus_url}}}\n"


def query(prom, expr: str) -> dict:
    response = requests.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}\n{body}"
    return body["data"]


def wait_for_samples(prom, expr: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query(prom, expr)["result"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"no samples for {expr}")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    workdir: Path = tmp_path_factory.mktemp("dashboard")
    # Prometheus first: the fleet's canary analysis queries it; it scrapes the receiver
    # once the receiver listens (a reload with the target)
    with (
        prometheus(workdir / "prom", prometheus_config(None)) as prom,
        scenario(workdir, extra_config=fleet_config(prom.url)) as (server, *_),
    ):
        target = server.url.removeprefix("http://")
        (workdir / "prom" / "prometheus.yml").write_text(prometheus_config(target))
        requests.post(f"{prom.url}/-/reload", timeout=10).raise_for_status()
        wait_for_samples(prom, "remediator_open_incidents")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        # a wave of the fleet strategy: its canary restarted, analysed, then the rest
        shop = [
            alert("ShopErrors", service="shop", instance=f"shop-{n}", starts_at=STARTS)
            for n in (1, 2, 3)
        ]
        requests.post(
            f"{server.url}/webhook", json=notification(*shop), headers=headers, timeout=10
        )
        # events while Prometheus watches, so that increases, rates and quantiles
        # have something to show: remediations that succeed, then their resolutions
        for second in range(4):
            starts = f"2026-07-01T00:00:0{second}Z"
            firing = alert("ServiceDown", service=f"extra{second}", starts_at=starts)
            resolved = {
                **firing,
                "status": "resolved",
                "endsAt": f"2026-07-01T00:01:0{second}Z",
            }
            for body in (notification(firing), notification(resolved)):
                requests.post(f"{server.url}/webhook", json=body, headers=headers, timeout=10)
                time.sleep(0.6)
        wait_for_samples(prom, 'rate(remediator_http_requests_total{handler="/webhook"}[1m]) > 0')
        wait_for_samples(prom, 'remediator_fleet_wave_stage{strategy="heal-shop"}')
        yield prom


EXPRS = dashboard_exprs(DEFAULT_VARIABLES)


@pytest.mark.parametrize(
    ("title", "expr"), EXPRS, ids=[f"{t}:{i}" for i, (t, _) in enumerate(EXPRS)]
)
def test_every_dashboard_expression_is_valid_and_returns_data(scraped, title, expr):
    data = query(scraped, expr)
    assert data["result"], f"panel {title!r} returns no data for {expr}"


PER_SERVICE = [(title, expr) for title, expr in EXPRS if " per service" in title]


@pytest.mark.parametrize(
    ("title", "expr"), PER_SERVICE, ids=[f"{t}:{i}" for i, (t, _) in enumerate(PER_SERVICE)]
)
def test_a_per_service_panel_draws_one_series_per_service(scraped, title, expr):
    """Evaluated by Prometheus, a "per service" query keeps `service` on every series:
    a query that pooled the scenario's services would answer one series without it."""
    result = query(scraped, expr)["result"]
    assert result, f"panel {title!r} returns no data for {expr}"
    services = [series["metric"].get("service") for series in result]
    assert None not in services, f"{title}: series without service: {result}"
    assert len(services) == len(set(services)), f"{title}: {result}"


def test_every_rule_loads_healthy_and_every_expression_evaluates(scraped):
    deadline = time.monotonic() + 20
    while True:
        groups = requests.get(f"{scraped.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule.get("health") == "ok" for rule in rules):
            break
        assert time.monotonic() < deadline, f"rules not healthy: {rules}"
        time.sleep(0.5)
    names = {rule["name"] for rule in rules}
    expected = {name for name, _ in load_rule_exprs(RULES)}
    assert names == expected
    for name, expr in load_rule_exprs(RULES):
        assert "resultType" in query(scraped, expr), name  # valid against live data
