"""/metrics after a scripted sequence of incidents and actions, parsed with
prometheus_client's own parser, against figures computed here from the script."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import remediator
from tests.support.scenario import scenario

CONTRACT = {
    "remediator_breaker_state": "gauge",
    "remediator_replicas": "gauge",
    "remediator_replicas_desired": "gauge",
    "remediator_replicas_min": "gauge",
    "remediator_replicas_max": "gauge",
    "remediator_incident_duration_seconds": "histogram",
    "remediator_mttr_seconds": "gauge",
    "remediator_availability_ratio": "gauge",
    "remediator_service_health": "gauge",
    "remediator_actions_total": "counter",
    "remediator_action_duration_seconds": "histogram",
    "remediator_time_to_remediate_seconds": "histogram",
    "remediator_alerts_received_total": "counter",
    "remediator_open_incidents": "gauge",
}


def scrape(server) -> dict[str, dict]:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
    return families


def value(families, name: str, sample: str | None = None, **labels: str) -> float:
    """One sample's value; `name` is the family, `sample` the series name if different."""
    family = families[name]
    wanted = sample or name
    found = [
        s.value
        for s in family.samples
        if s.name == wanted and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{wanted}{labels}: {found}"
    return found[0]


@pytest.fixture
def scripted(tmp_path: Path):
    """Run the script once; yield the server, journal and the paths it used."""
    with scenario(tmp_path) as (server, journal, config, store_url, now):
        yield server, journal, tmp_path, config, store_url, now


def test_every_contract_metric_after_a_scripted_sequence(scripted):
    server, *_ = scripted
    families = scrape(server)
    for name, kind in CONTRACT.items():
        family_name = name.removesuffix("_total")
        assert family_name in families, f"{name} missing"
        assert families[family_name].type == kind, name
        assert families[family_name].documentation, f"{name} has no help text"

    # alerts: 1+1+3+1+1+1 firing/resolved alerts in 8 notifications
    assert (
        value(
            families,
            "remediator_alerts_received",
            "remediator_alerts_received_total",
            status="firing",
        )
        == 6
    )
    assert (
        value(
            families,
            "remediator_alerts_received",
            "remediator_alerts_received_total",
            status="resolved",
        )
        == 2
    )

    def actions(strategy, action, outcome):
        return value(
            families,
            "remediator_actions",
            "remediator_actions_total",
            strategy=strategy,
            action=action,
            outcome=outcome,
        )

    assert actions("restart-web", "restart", "succeeded") == 1
    assert actions("restart-web", "restart", "skipped") == 1  # the refused one
    assert actions("failing", "run", "failed") == 2
    assert actions("failing", "run", "skipped") == 1
    assert actions("scale-web", "scale", "succeeded") == 1
    # configured strategies get zero series up front, so rate() sees their first event
    assert actions("scale-web", "scale", "failed") == 0
    skipped = families["remediator_actions_skipped"]
    reasons = {
        (s.labels["strategy"], s.labels["reason"]): s.value
        for s in skipped.samples
        if s.name.endswith("_total") and s.value
    }
    assert reasons == {("failing", "breaker_open"): 1, ("restart-web", "refused"): 1}

    duration = "remediator_incident_duration_seconds"
    assert value(families, duration, f"{duration}_count", service="web") == 1
    assert value(families, duration, f"{duration}_sum", service="web") == 120
    assert value(families, duration, f"{duration}_bucket", service="web", le="60") == 0
    assert value(families, duration, f"{duration}_bucket", service="web", le="120") == 1
    assert value(families, duration, f"{duration}_sum", service="cache") == 30

    assert (
        value(families, "remediator_breaker_state", strategy="failing", target="db", state="open")
        == 1
    )
    assert (
        value(families, "remediator_breaker_state", strategy="failing", target="db", state="closed")
        == 0
    )
    assert (
        value(
            families,
            "remediator_breaker_state",
            strategy="restart-web",
            target="web",
            state="closed",
        )
        == 1
    )

    assert value(families, "remediator_replicas", target="web") == 2
    assert value(families, "remediator_replicas_desired", target="web") == 2
    assert value(families, "remediator_replicas_min", target="web") == 1
    assert value(families, "remediator_replicas_max", target="web") == 3

    # firing: db x3, bad;name, web (Busy) = 5
    assert value(families, "remediator_open_incidents") == 5

    def health(service):
        return {
            s.labels["status"]
            for s in families["remediator_service_health"].samples
            if s.labels["service"] == service and s.value == 1
        }

    assert health("db") == {"critical"}
    assert health("cache") == {"healthy"}
    assert health("web") == {"degraded"}  # Busy: scaled, alert not yet resolved

    # cache: one 30 s incident in the 1d window: MTBF = 86370, A = 86370 / 86400
    assert value(families, "remediator_mttr_seconds", service="cache") == pytest.approx(30)
    assert value(families, "remediator_availability_ratio", service="cache") == pytest.approx(
        86370 / 86400
    )
    ttr = "remediator_time_to_remediate_seconds"
    assert value(families, ttr, f"{ttr}_count", strategy="restart-web") == 1
    assert value(families, ttr, f"{ttr}_sum", strategy="restart-web") >= 600  # alert was 10m old
    action_duration = "remediator_action_duration_seconds"
    assert (
        value(
            families, action_duration, f"{action_duration}_count", strategy="failing", action="run"
        )
        == 2
    )

    stats = requests.get(f"{server.url}/api/v1/stats", timeout=5).json()
    assert stats["strategies"]["failing"]["attempts"] == 2
    assert stats["strategies"]["failing"]["success_rate"] == 0
    assert stats["services"]["cache"]["availability"] == pytest.approx(86370 / 86400)
    assert stats["services"]["db"]["health"] == "critical"


def test_request_metrics_count_webhook_responses(scripted):
    server, *_ = scripted
    requests.post(f"{server.url}/webhook", json={}, timeout=5)  # 401
    families = scrape(server)
    samples = {
        (s.labels["handler"], s.labels["code"]): s.value
        for s in families["remediator_http_requests"].samples
        if s.name == "remediator_http_requests_total"
    }
    assert samples[("/webhook", "200")] >= 8
    assert samples[("/webhook", "401")] == 1
    latency = families["remediator_http_request_duration_seconds"]
    assert any(s.labels.get("handler") == "/webhook" for s in latency.samples)


def test_request_metrics_do_not_let_clients_mint_series(scripted):
    """Unknown paths share one handler label and made-up methods one method label."""
    server, *_ = scripted
    for method in ("BREW", "PROPFIND", "X-EVIL-1"):
        requests.request(method, f"{server.url}/no/such/{method}", timeout=5)
    samples = [
        s.labels
        for s in scrape(server)["remediator_http_requests"].samples
        if s.name == "remediator_http_requests_total" and s.labels["handler"] == "unmatched"
    ]
    assert {labels["method"] for labels in samples} == {"other"}


def test_counters_survive_a_restart(scripted):
    server, _journal, workdir, config, store_url, _now = scripted
    before = scrape(server)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    time.sleep(0.2)
    with remediator(workdir, config, store_url, log_name="again.log") as again:
        after = scrape(again)
    for name in (
        "remediator_actions",
        "remediator_alerts_received",
        "remediator_incident_duration_seconds",
    ):
        old = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in before[name].samples}
        new = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in after[name].samples}
        old = {k: v for k, v in old.items() if not k[0].endswith("_created")}
        new = {k: v for k, v in new.items() if not k[0].endswith("_created")}
        assert new == old, name
