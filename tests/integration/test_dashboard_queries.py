"""A real Prometheus scrapes a real receiver after a scripted sequence of incidents;
then EVERY dashboard panel expression, every annotation query and every meta-monitoring
rule is evaluated through Prometheus's HTTP API: each must be valid, each panel must
return data, and each annotation must mark the events the scenario made, with the labels
its title names. Every link of the dashboard must point at a page of the console."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import yaml

from receiver.store.base import ACTION_STATUSES
from tests.support.dashboard import (
    DEFAULT_VARIABLES,
    LABEL_VALUES,
    annotation_exprs,
    dashboard_exprs,
    dashboard_links,
    load_dashboard,
    metric_names,
    panels,
)
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
        # an action that fails (a new target of the failing strategy: its breaker is
        # closed) and one skipped (db's breaker is open), for the annotations
        for service in ("db", "flaky"):
            broken = alert("Broken", service=service, starts_at="2026-07-01T00:02:00Z")
            requests.post(
                f"{server.url}/webhook", json=notification(broken), headers=headers, timeout=10
            )
        wait_for_samples(prom, 'rate(remediator_http_requests_total{handler="/webhook"}[1m]) > 0')
        for _, expr in annotation_exprs(DEFAULT_VARIABLES):
            wait_for_samples(prom, expr)
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


# ------------------------------------------------------------------------------ annotations

ANNOTATIONS = annotation_exprs(DEFAULT_VARIABLES)
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def query_range(prom, expr: str, seconds: float = 300.0, step: str = "15s") -> list[dict]:
    """The range query Grafana sends for an annotation (the last `seconds`, at `step`)."""
    end = time.time()
    params = {"query": expr, "start": end - seconds, "end": end, "step": step}
    response = requests.get(f"{prom.url}/api/v1/query_range", params=params, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}\n{body}"
    return body["data"]["result"]


def test_the_dashboard_draws_actions_and_breakers_as_annotations():
    names = [name for name, _ in ANNOTATIONS]
    assert names == [
        "Remediations succeeded",
        "Remediations failed",
        "Remediations skipped or cancelled",
        "Breakers open",
    ]


@pytest.mark.parametrize(("name", "expr"), ANNOTATIONS, ids=[n for n, _ in ANNOTATIONS])
def test_every_annotation_query_marks_the_scenario_s_events_with_its_labels(scraped, name, expr):
    """Grafana draws an annotation where a series of the range query is above 0, titled
    and tagged from the series' labels: each query must find the events the scenario
    made, and every label its title, text and tags name must be on every series."""
    result = query_range(scraped, expr)
    assert result, f"annotation {name!r} marks nothing for {expr}"
    for series in result:
        assert all(float(value) > 0 for _, value in series["values"]), series
    (annotation,) = [a for a in load_dashboard()["annotations"]["list"] if a["name"] == name]
    named = set(_LEGEND_LABEL.findall(annotation["titleFormat"] + annotation["textFormat"]))
    named |= {key for key in annotation["tagKeys"].split(",") if key}
    for series in result:
        assert named <= set(series["metric"]), f"{name}: {named} not all on {series['metric']}"
    outcomes = {series["metric"].get("outcome") for series in result} - {None}
    wanted = re.search(r'outcome=~?"([^"]+)"', expr)
    if wanted:  # each outcome annotation marks only its own outcomes
        assert outcomes <= set(wanted.group(1).split("|")), (name, outcomes)


# ------------------------------------------------------------------------------------ links

#: The operator console's pages (its URL contract): path -> the query parameters it
#: takes, each with the values it accepts (None: any value, e.g. a strategy's name).
CONSOLE = "${console}"
ID = object()
CONSOLE_PAGES: dict[str, dict[str, frozenset[str] | object | None]] = {
    "/": {},
    "/incidents": {},
    "/incidents/<id>": {},
    "/actions": {"status": frozenset(ACTION_STATUSES), "strategy": None, "page": ID},
    "/actions/<id>": {},
    "/breakers": {},
    "/strategies": {},
}
#: A data link's value taken from the clicked series: ${__field.labels.NAME[:format]}.
FIELD_LABEL = re.compile(r"\$\{__field\.labels\.(\w+)(?::(\w+))?\}")
LINKS = dashboard_links(load_dashboard())


def console_page(path: str) -> str | None:
    """The contract's page a path is (numeric ids as <id>), or None."""
    page = re.sub(r"/\d+$", "/<id>", path)
    return page if page in CONSOLE_PAGES else None


def test_the_dashboard_has_a_console_url_variable_set_once():
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    console = variables["console"]
    assert console["type"] in ("textbox", "constant")
    assert console["query"] == console["current"]["value"] == "http://localhost:9095"


def test_the_dashboard_and_every_panel_link_to_the_console():
    dashboard = load_dashboard()
    own = [link.url for link in LINKS if link.where == "dashboard"]
    assert f"{CONSOLE}/" in own  # the console's overview, from the dashboard's header
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert any(link.where == panel["title"] for link in LINKS), panel["title"]


def series_labels_of(panel: dict) -> set[str]:
    """Labels on every series of a panel, by the legends of its queries."""
    legends = [target.get("legendFormat", "") for target in panel["targets"]]
    return set.intersection(*(set(_LEGEND_LABEL.findall(legend)) for legend in legends))


@pytest.mark.parametrize("link", LINKS, ids=[f"{link.where}: {link.title}" for link in LINKS])
def test_every_link_points_at_a_console_page_with_parameters_it_takes(link):
    assert link.url.startswith(CONSOLE), f"{link.url}: not under the console URL variable"
    rest = urlsplit("http://console" + link.url.removeprefix(CONSOLE))
    page = console_page(rest.path)
    assert page is not None, f"{link.url}: {rest.path} is not a console page"
    assert not rest.fragment, link.url
    by_panel = {panel.get("title"): panel for panel in panels(load_dashboard())}
    for name, value in parse_qsl(rest.query, keep_blank_values=True, strict_parsing=True):
        allowed = CONSOLE_PAGES[page]
        assert name in allowed, f"{link.url}: {page} takes no {name!r}"
        accepted = allowed[name]
        label = FIELD_LABEL.fullmatch(value)
        if label:  # from the clicked series: its panel draws that label, with valid values
            panel = by_panel[link.where.removesuffix(" (data link)")]
            assert label.group(1) in series_labels_of(panel), (link.url, panel["title"])
            drawn = {name for t in panel["targets"] for name in metric_names(t["expr"])}
            metric_values = [
                values
                for (metric, key), values in LABEL_VALUES.items()
                if key == label.group(1) and metric in drawn
            ]
            if isinstance(accepted, frozenset):
                assert metric_values and all(v <= accepted for v in metric_values), link.url
            assert label.group(2) in (None, "percentencode"), link.url
        elif accepted is ID:
            assert value.isdigit(), link.url
        elif isinstance(accepted, frozenset):
            assert value in accepted, f"{link.url}: {name}={value!r} not in {sorted(accepted)}"
