"""The shipped Grafana dashboard and its provisioning files: structure and queries.

Grafana cannot run here, so the dashboard is checked as data: layout, datasource,
template variables, and every query held to the metric contract. The last two tests hand
every query to the real PromQL parser (`promtool check rules`) and evaluate the trickiest
ones against known series (`promtool test rules`).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboard import (
    CONTRACT,
    DASHBOARD,
    DATASOURCE_UID,
    DEFAULT_VARIABLES,
    REPO,
    contract_problems,
    dashboard_exprs,
    load_dashboard,
    panels,
    selectors,
    series_labels,
    substitute,
)
from tests.support.processes import binary

DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
PROVISIONING = REPO / "grafana" / "provisioning"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def visible(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that draw something (rows only group them)."""
    return [panel for panel in panels(dashboard) if panel["type"] != "row"]


def by_title(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    matching = [panel for panel in panels(dashboard) if panel.get("title") == title]
    assert len(matching) == 1, f"expected one panel titled {title!r}, found {len(matching)}"
    return matching[0]


def raw_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in visible(dashboard)
        for target in panel.get("targets", [])
    ]


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (json path, value) pair of a JSON document."""
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += walk(value, f"{path}[{index}]")
    return found


# ------------------------------------------------------------------------------- structure


def test_dashboard_is_valid_json_with_a_fixed_uid():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "remediator"
    assert dashboard["title"] == "Remediator"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "__inputs" not in dashboard, "an export for import, not for file provisioning"
    assert visible(dashboard)


def test_panel_ids_are_unique(dashboard):
    ids = [panel["id"] for panel in panels(dashboard)]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids)), sorted(ids)


def test_panels_fit_in_24_columns_and_do_not_overlap(dashboard):
    boxes = []
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0, panel["title"]
        assert x + w <= 24, f"{panel['title']} ends at column {x + w}"
        boxes.append((panel["title"], x, y, w, h))
    for (a, ax, ay, aw, ah), (b, bx, by, bw, bh) in itertools.combinations(boxes, 2):
        overlap = ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah
        assert not overlap, f"{a!r} and {b!r} overlap"


def test_every_panel_has_a_title_a_description_a_unit_and_queries(dashboard):
    for panel in visible(dashboard):
        title = panel.get("title")
        assert title, panel["id"]
        assert len(panel.get("description", "")) > 20, f"{title}: describe what it shows"
        defaults = panel["fieldConfig"]["defaults"]
        if panel["type"] == "state-timeline":  # draws mapped states, not numbers
            assert defaults.get("mappings"), f"{title}: no value mappings"
        else:
            assert defaults.get("unit"), f"{title}: no unit"
        targets = panel.get("targets")
        assert targets, f"{title}: no query"
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refId"
        for target in targets:
            assert target.get("expr", "").strip(), f"{title} {target['refId']}: empty expr"


def test_every_datasource_is_the_provisioned_prometheus_by_uid(dashboard):
    for panel in visible(dashboard):
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, (panel["title"], target["refId"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # the console URL is a textbox: no query
            assert variable.get("datasource") == DATASOURCE, variable["name"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation.get("datasource") == DATASOURCE, annotation["name"]
    for path, value in walk(dashboard):
        if path.endswith(".datasource"):
            assert value == DATASOURCE, path


def test_no_datasource_placeholder_anywhere():
    text = DASHBOARD.read_text()
    assert "DS_PROMETHEUS" not in text, "file provisioning does not resolve ${DS_PROMETHEUS}"


def test_template_variables_service_and_strategy(dashboard):
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    known = series_labels()
    for name in ("service", "strategy"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["includeAll"] is True
        assert variable["multi"] is True
        assert variable["allValue"] == ".*"
        query = variable["query"]
        if isinstance(query, dict):  # the newer editor's form
            query = query["query"]
        assert variable["definition"] == query
        assert query.startswith("label_values(") and query.endswith(f", {name})"), query
        metric = query[len("label_values(") : -len(f", {name})")]
        assert name in known[metric], f"{metric} has no {name} label"


# --------------------------------------------------------------------------------- queries


def test_every_query_uses_only_contract_metrics_labels_and_values(dashboard):
    problems = [
        f"{title}: {problem}\n    {expr}"
        for title, expr in raw_exprs(dashboard)
        for problem in contract_problems(expr)
    ]
    assert not problems, "\n".join(problems)


def test_every_metric_of_the_contract_is_drawn(dashboard):
    drawn = {
        selector.name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        for _, expr in raw_exprs(dashboard)
        for selector in selectors(expr)
    }
    assert set(CONTRACT) <= drawn, sorted(set(CONTRACT) - drawn)


def test_queries_follow_the_service_and_strategy_variables(dashboard):
    """A metric carrying `service` or `strategy` is always filtered by the variable."""
    known = series_labels()
    missing = []
    for title, expr in raw_exprs(dashboard):
        for selector in selectors(expr):
            for label in ("service", "strategy"):
                wanted = (label, "=~", f"${label}")
                if label in known[selector.name] and wanted not in selector.matchers:
                    missing.append(f'{title}: {selector.name} without {label}=~"${label}"')
    assert not missing, "\n".join(missing)


def test_journal_metrics_are_deduplicated_across_replicas(dashboard):
    """Every replica exports the same journal figures: sums must not add them up."""
    for title, expr in raw_exprs(dashboard):
        names = {selector.name for selector in selectors(expr)}
        if names & {"remediator_actions_total", "remediator_actions_skipped_total"}:
            assert "max without (instance)" in expr, f"{title}: {expr}"


def test_dashboard_exprs_substitutes_every_variable():
    exprs = dashboard_exprs(DEFAULT_VARIABLES)
    assert len(exprs) == sum(len(panel["targets"]) for panel in visible(load_dashboard()))
    for title, expr in exprs:
        assert "$" not in expr, f"{title}: {expr}"
    chosen = dashboard_exprs({**DEFAULT_VARIABLES, "$service": "web|db", "strategy": "x"})
    assert any('service=~"web|db"' in expr for _, expr in chosen)
    assert any('strategy=~"x"' in expr for _, expr in chosen)
    assert any(
        "[5m]" in expr for _, expr in dashboard_exprs({**DEFAULT_VARIABLES, "__range": "5m"})
    )
    with pytest.raises(KeyError, match=r"\$strategy"):
        dashboard_exprs({"service": ".*", "__rate_interval": "1m", "__interval": "1m"})
    assert substitute('a{b=~"${service}"}[$__range]', {"service": "s", "__range": "1h"}) == (
        'a{b=~"s"}[1h]'
    )


def test_annotation_queries_keep_to_the_contract_the_variables_and_the_replicas(dashboard):
    """As the panels' queries: contract metrics and labels, `$strategy` followed, journal
    figures taken once across replicas (max without instance)."""
    known = series_labels()
    for annotation in dashboard["annotations"]["list"]:
        name, expr = annotation["name"], annotation["expr"]
        assert not contract_problems(expr), (name, contract_problems(expr))
        for selector in selectors(expr):
            if "strategy" in known[selector.name]:
                assert ("strategy", "=~", "$strategy") in selector.matchers, name
            if selector.name == "remediator_actions_total":
                assert "max without (instance)" in expr, name
        assert expr.rstrip().endswith("> 0"), f"{name}: Grafana marks values above 0"
        assert annotation["titleFormat"] and annotation["tagKeys"], name


def test_the_console_url_is_a_textbox_variable_links_share(dashboard):
    """Set once (the variable's default, or ?var-console=...), used by every link."""
    (console,) = [v for v in dashboard["templating"]["list"] if v["name"] == "console"]
    assert console["type"] == "textbox"
    assert console["query"] == console["current"]["value"]
    assert not console["query"].endswith("/")  # links append /actions, /breakers, ...
    text = json.dumps(dashboard)
    assert text.count("${console}") >= len(visible(dashboard))


# ---------------------------------------------------------------------------------- panels


def mappings(panel: dict[str, Any]) -> dict[str, tuple[str, str]]:
    found = {}
    for mapping in panel["fieldConfig"]["defaults"]["mappings"]:
        assert mapping["type"] == "value"
        for value, result in mapping["options"].items():
            found[value] = (result["text"], result["color"])
    return found


def steps(panel: dict[str, Any]) -> list[tuple[str, float | None]]:
    thresholds = panel["fieldConfig"]["defaults"]["thresholds"]
    return [(step["color"], step["value"]) for step in thresholds["steps"]]


def exprs_of(panel: dict[str, Any]) -> str:
    return "\n".join(target["expr"] for target in panel["targets"])


def test_breaker_states_panel(dashboard):
    panel = by_title(dashboard, "Breaker states")
    assert panel["type"] == "state-timeline"
    assert mappings(panel) == {
        "0": ("closed", "green"),
        "1": ("half_open", "orange"),
        "2": ("open", "red"),
    }
    assert "max by (strategy, target)" in exprs_of(panel)
    assert panel["targets"][0]["legendFormat"] == "{{strategy}} / {{target}}"


def test_service_health_panel(dashboard):
    panel = by_title(dashboard, "Service health")
    assert panel["type"] == "state-timeline"
    assert mappings(panel) == {
        "0": ("healthy", "green"),
        "1": ("unhealthy", "yellow"),
        "2": ("degraded", "orange"),
        "3": ("critical", "red"),
    }


def test_ratio_panels_are_percentages_with_thresholds(dashboard):
    ratio = by_title(dashboard, "Success ratio by strategy")
    assert ratio["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert steps(ratio) == [("red", None), ("yellow", 0.5), ("green", 0.9)]
    assert steps(by_title(dashboard, "Success ratio")) == steps(ratio)
    for title in ("Availability per service", "Lowest availability"):
        panel = by_title(dashboard, title)
        assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
        assert steps(panel) == [("red", None), ("yellow", 0.99), ("green", 0.999)]


def test_duration_panels_are_in_seconds(dashboard):
    mttr = by_title(dashboard, "Time to recover (MTTR) per service")
    text = exprs_of(mttr)
    for q in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({q}, sum by (service, le)" in text
    assert "remediator_incident_duration_seconds_sum" in text
    assert "remediator_incident_duration_seconds_count" in text
    assert "remediator_mttr_seconds" in text
    ttr = by_title(dashboard, "Time to remediate")
    assert "remediator_time_to_remediate_seconds_bucket" in exprs_of(ttr)
    assert "remediator_time_to_remediate_seconds_sum" in exprs_of(ttr)
    for title in (
        "Time to recover (MTTR) per service",
        "Time to remediate",
        "MTTR",
        "Webhook latency",
    ):
        assert by_title(dashboard, title)["fieldConfig"]["defaults"]["unit"] == "s", title


PER_LABEL = re.compile(r"\bper (service|strategy|target|action)\b")


def outer_grouping(expr: str) -> set[str]:
    """Labels kept by every top-level `sum by (...)`/`max by (...)` of an expression.

    Returns the intersection of their label lists (`le` left out, histogram_quantile
    drops it), or an empty set when some aggregation groups by nothing (`sum(`).
    """
    groupings = re.findall(r"\b(?:sum|max|min|avg|count)\s*(?:by\s*\(([^)]*)\))?\s*\(", expr)
    kept = [{label.strip() for label in group.split(",") if label.strip()} for group in groupings]
    return set.intersection(*kept) - {"le"} if kept else set()


def test_a_panel_per_label_keeps_that_label_in_every_query_and_legend(dashboard):
    """A panel titled "... per service" must draw one line per service, never a pool.

    Every query of it must group by the label at every aggregation (a bare `sum(` or
    `sum by (le)` would add the selected services up) and name it in its legend.
    """
    checked = 0
    for panel in visible(dashboard):
        match = PER_LABEL.search(panel["title"])
        if not match:
            continue
        label = match.group(1)
        for target in panel["targets"]:
            where = f"{panel['title']} {target['refId']}"
            assert label in outer_grouping(target["expr"]), f"{where}: {target['expr']}"
            assert "{{" + label + "}}" in target["legendFormat"], where
            checked += 1
    assert checked >= 5  # the MTTR and availability panels at least


def test_outer_grouping_sees_a_pooled_aggregation():
    assert outer_grouping("sum by (service, le) (max without (instance) (x))") == {"service"}
    assert outer_grouping("sum by (service) (x) / sum(y)") == set()
    assert outer_grouping("histogram_quantile(0.5, sum by (le) (x))") == set()
    assert outer_grouping("max by (service) (x)") == {"service"}


def test_count_panels(dashboard):
    assert by_title(dashboard, "Open incidents")["type"] == "stat"
    for title, label in (
        ("Actions by outcome", "outcome"),
        ("Skipped actions by reason", "reason"),
    ):
        panel = by_title(dashboard, title)
        custom = panel["fieldConfig"]["defaults"]["custom"]
        assert custom["drawStyle"] == "bars", title
        assert custom["stacking"]["mode"] == "normal", title
        assert f"sum by ({label})" in exprs_of(panel), title
    replicas = exprs_of(by_title(dashboard, "Replicas per target"))
    for suffix in ("", "_desired", "_min", "_max"):
        assert f"(remediator_replicas{suffix})" in replicas
    assert "p99" in [t["legendFormat"] for t in by_title(dashboard, "Webhook latency")["targets"]]
    assert 'handler="/webhook"' in exprs_of(by_title(dashboard, "Webhook requests"))
    assert "remediator_alerts_received_total" in exprs_of(by_title(dashboard, "Alerts received"))


FLEET_LEGEND = "{{strategy}} / {{fleet}}"


def test_fleet_panels_draw_each_fleet_of_the_selected_strategies(dashboard):
    for title in ("Fleet targets in flight", "Fleet wave stage"):
        panel = by_title(dashboard, title)
        [target] = panel["targets"]
        # replicas export the same journal figures: max, never sum, keeps one per fleet
        assert target["expr"].startswith("max by (strategy, fleet) ("), title
        assert target["legendFormat"] == FLEET_LEGEND, title
    assert by_title(dashboard, "Fleet targets in flight")["fieldConfig"]["defaults"]["min"] == 0


def test_fleet_wave_stage_names_no_wave_and_the_canary_and_numbers_the_stages(dashboard):
    """remediator_fleet_wave_stage: -1 no wave running, 0 the canary, k the k-th stage."""
    panel = by_title(dashboard, "Fleet wave stage")
    assert panel["type"] == "state-timeline"
    assert mappings(panel) == {"-1": ("no wave", "transparent"), "0": ("canary", "orange")}
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"] == "prefix:stage "  # unmapped k shows as "stage k"
    assert defaults["decimals"] == 0


def test_canary_verdicts_are_stacked_bars_per_verdict_in_their_colours(dashboard):
    panel = by_title(dashboard, "Canary verdicts")
    custom = panel["fieldConfig"]["defaults"]["custom"]
    assert (custom["drawStyle"], custom["stacking"]["mode"]) == ("bars", "normal")
    assert "sum by (verdict) (max without (instance) (increase(" in exprs_of(panel)
    colours = {
        override["matcher"]["options"]: override["properties"][0]["value"]["fixedColor"]
        for override in panel["fieldConfig"]["overrides"]
    }
    assert colours == {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def test_waiting_actions_are_drawn_by_reason_once_across_replicas(dashboard):
    panel = by_title(dashboard, "Actions waiting by reason")
    assert exprs_of(panel) == "max by (reason) (remediator_actions_waiting)"
    assert panel["targets"][0]["legendFormat"] == "{{reason}}"
    assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


# ---------------------------------------------------------------------------- provisioning


def test_datasource_provisioning_has_the_dashboards_uid():
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    [datasource] = config["datasources"]
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True


def test_dashboard_provisioning_loads_the_mounted_folder():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "remediator.yml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# ------------------------------------------------------------------- real PromQL (promtool)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.mark.integration
def test_every_query_parses_as_promql(tmp_path):
    """promtool parses each query as a recording rule: a syntax error names the panel."""
    exprs = dashboard_exprs(DEFAULT_VARIABLES)
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(exprs)
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\n" + json.dumps(exprs, indent=1)
    )


# Known series, as two replicas export them (journal figures are the same from both).
SELECTED_SERVICES = "checkout|search|payments|web"
SELECTED_STRATEGIES = "restart-web|scale-api|run-fix|dry-run-db"
JOURNAL_SERIES = [
    # breakers: restart-web/web open, scale-api/api half-open, run-fix/db closed (exports
    # only its current state), other/x open but not selected
    *[
        (f'remediator_breaker_state{{strategy="{s}", target="{t}", state="{state}"}}', value)
        for s, t, current in (
            ("restart-web", "web", "open"),
            ("scale-api", "api", "half_open"),
            ("other", "x", "open"),
        )
        for state in ("closed", "half_open", "open")
        for value in (["1x10"] if state == current else ["0x10"])
    ],
    ('remediator_breaker_state{strategy="run-fix", target="db", state="closed"}', "1x10"),
    # health: one service per status, plus one not selected
    *[
        (f'remediator_service_health{{service="{svc}", status="{status}"}}', value)
        for svc, current in (
            ("checkout", "critical"),
            ("search", "degraded"),
            ("payments", "unhealthy"),
            ("other", "critical"),
        )
        for status in ("healthy", "unhealthy", "degraded", "critical")
        for value in (["1x10"] if status == current else ["0x10"])
    ],
    ('remediator_service_health{service="web", status="healthy"}', "1x10"),
    # actions between 0m and 5m: restart-web 3 succeeded + 1 failed, run-fix 2 failed
    # (no succeeded series), dry-run-db 4 skipped, other 9 failed (not selected)
    (
        'remediator_actions_total{strategy="restart-web", action="restart", outcome="succeeded"}',
        "0x4 3x5",
    ),
    (
        'remediator_actions_total{strategy="restart-web", action="restart", outcome="failed"}',
        "0x4 1x5",
    ),
    ('remediator_actions_total{strategy="run-fix", action="run", outcome="failed"}', "0x4 2x5"),
    ('remediator_actions_total{strategy="dry-run-db", action="run", outcome="skipped"}', "0x4 4x5"),
    ('remediator_actions_total{strategy="other", action="run", outcome="failed"}', "0x4 9x5"),
    ('remediator_actions_skipped_total{strategy="dry-run-db", reason="dry_run"}', "0x4 4x5"),
    ('remediator_actions_skipped_total{strategy="other", reason="budget"}', "0x4 7x5"),
    # two checkout incidents resolved, 300 s in all (both in the bucket (60, 300]); one
    # search incident of 30 s (bucket (0, 60]); one of another service
    ('remediator_incident_duration_seconds_sum{service="checkout"}', "0x4 300x5"),
    ('remediator_incident_duration_seconds_count{service="checkout"}', "0x4 2x5"),
    ('remediator_incident_duration_seconds_sum{service="search"}', "0x4 30x5"),
    ('remediator_incident_duration_seconds_count{service="search"}', "0x4 1x5"),
    *[
        (f'remediator_incident_duration_seconds_bucket{{service="{svc}", le="{le}"}}', values)
        for svc, counts in (("checkout", (0, 2, 2)), ("search", (1, 1, 1)), ("other", (0, 0, 1)))
        for le, count in zip(("60", "300", "+Inf"), counts, strict=True)
        for values in [f"0x4 {count}x5"]
    ],
    ('remediator_incident_duration_seconds_sum{service="other"}', "0x4 9999x5"),
    ('remediator_incident_duration_seconds_count{service="other"}', "0x4 1x5"),
    ("remediator_open_incidents", "2x10"),
    ('remediator_availability_ratio{service="checkout"}', "0.99x10"),
    ('remediator_availability_ratio{service="search"}', "0.5x10"),
    ('remediator_availability_ratio{service="other"}', "0.1x10"),
    # fleets: restart-web/web's wave at its canary with 1 in flight, scale-api/api's
    # wave at stage 2 with 3 in flight, run-fix/db without a wave; other/x not selected
    *[
        (f'remediator_fleet_{name}{{strategy="{s}", fleet="{f}"}}', f"{value}x10")
        for s, f, flying, stage in (
            ("restart-web", "web", 1, 0),
            ("scale-api", "api", 3, 2),
            ("run-fix", "db", 0, -1),
            ("other", "x", 9, 1),
        )
        for name, value in (("in_flight", flying), ("wave_stage", stage))
    ],
    # canary analyses between 0m and 5m: restart-web 2 pass, 1 fail; run-fix 1
    # inconclusive (0 pass); other 5 fail (not selected)
    ('remediator_canary_verdicts_total{strategy="restart-web", verdict="pass"}', "0x4 2x5"),
    ('remediator_canary_verdicts_total{strategy="restart-web", verdict="fail"}', "0x4 1x5"),
    ('remediator_canary_verdicts_total{strategy="run-fix", verdict="pass"}', "0x10"),
    ('remediator_canary_verdicts_total{strategy="run-fix", verdict="inconclusive"}', "0x4 1x5"),
    ('remediator_canary_verdicts_total{strategy="other", verdict="fail"}', "0x4 5x5"),
    # planned actions waiting: 4 for their fleet, 2 queued, none for the others
    *[
        (f'remediator_actions_waiting{{reason="{reason}"}}', f"{count}x10")
        for reason, count in (("fleet", 4), ("queued", 2), ("cooldown", 0))
    ],
]
EXPECTED = {
    "Receivers up": {"{}": 2},
    "Open incidents": {"{}": 2},
    "Open breakers": {"{}": 1},
    "Success ratio": {"{}": 0.5},
    "MTTR": {"{}": (300 + 30) / (2 + 1)},  # selected services pooled: it says one figure
    "Lowest availability": {"{}": 0.5},
    "Breaker states": {
        '{strategy="restart-web", target="web"}': 2,
        '{strategy="scale-api", target="api"}': 1,
        '{strategy="run-fix", target="db"}': 0,
    },
    "Service health": {
        '{service="checkout"}': 3,
        '{service="search"}': 2,
        '{service="payments"}': 1,
        '{service="web"}': 0,
    },
    "Success ratio by strategy": {
        '{strategy="restart-web"}': 0.75,
        '{strategy="run-fix"}': 0,
    },
    "Actions by outcome": {
        '{outcome="succeeded"}': 3,
        '{outcome="failed"}': 3,
        '{outcome="skipped"}': 4,
    },
    "Skipped actions by reason": {'{reason="dry_run"}': 4},
    "Fleet targets in flight": {
        '{strategy="restart-web", fleet="web"}': 1,
        '{strategy="scale-api", fleet="api"}': 3,
        '{strategy="run-fix", fleet="db"}': 0,
    },
    "Fleet wave stage": {
        '{strategy="restart-web", fleet="web"}': 0,
        '{strategy="scale-api", fleet="api"}': 2,
        '{strategy="run-fix", fleet="db"}': -1,
    },
    "Canary verdicts": {
        '{verdict="pass"}': 2 + 0,
        '{verdict="fail"}': 1,  # other's 5 not selected
        '{verdict="inconclusive"}': 1,
    },
    # one figure per reason, not the two replicas' sum
    "Actions waiting by reason": {
        '{reason="fleet"}': 4,
        '{reason="queued"}': 2,
        '{reason="cooldown"}': 0,
    },
}
# Later queries of a panel, by (title, index of the query). Quantiles interpolate
# linearly inside the bucket holding the rank, as histogram_quantile does: checkout's
# median is its 1st of 2 incidents in (60, 300], search's the middle of its one in
# (0, 60]. Pooled, they would give one line at 60 + 240 * 0.5 / 2 = 120 instead.
MTTR_PER_SERVICE = "Time to recover (MTTR) per service"
EXPECTED_QUERIES = {
    (MTTR_PER_SERVICE, 0): {
        '{service="checkout"}': 60 + (300 - 60) * (0.5 * 2 - 0) / 2,
        '{service="search"}': 0 + (60 - 0) * (0.5 * 1) / 1,
    },
    (MTTR_PER_SERVICE, 3): {'{service="checkout"}': 300 / 2, '{service="search"}': 30 / 1},
}


@pytest.mark.integration
def test_key_queries_compute_the_expected_figures(tmp_path):
    """The mapping and ratio queries on known series, replicas deduplicated."""
    variables = {
        "service": SELECTED_SERVICES,
        "strategy": SELECTED_STRATEGIES,
        "__rate_interval": "10m",
        "__interval": "10m",
        "__range": "10m",
    }
    queries: dict[str, list[str]] = {}
    for title, expr in dashboard_exprs(variables):
        queries.setdefault(title, []).append(expr)
    series = [
        {"series": 'up{job="remediator", instance="remediator-0:9095"}', "values": "1x10"},
        {"series": 'up{job="remediator", instance="remediator-1:9095"}', "values": "1x10"},
    ]
    for selector, values in JOURNAL_SERIES:
        for instance in ("remediator-0:9095", "remediator-1:9095"):
            labels = f'job="remediator", instance="{instance}"'
            if "{" in selector:
                named = selector.replace("{", "{" + labels + ", ", 1)
            else:
                named = f"{selector}{{{labels}}}"
            series.append({"series": named, "values": values})
    expected = {**{(title, 0): want for title, want in EXPECTED.items()}, **EXPECTED_QUERIES}
    tests = [
        {
            "expr": queries[title][index],
            "eval_time": "10m",
            "exp_samples": [{"labels": labels, "value": value} for labels, value in want.items()],
        }
        for (title, index), want in expected.items()
    ]
    path = tmp_path / "dashboard.test.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
            },
            sort_keys=False,
        )
    )
    result = promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
