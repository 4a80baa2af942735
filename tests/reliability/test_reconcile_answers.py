"""Reconciliation closes nothing unless Alertmanager answers a whole list of alerts.

A real Alertmanager cannot be made to answer an error or garbage, so a local HTTP
server stands in for its `GET /api/v2/alerts` here (the real one is exercised in
test_alertmanager_reconcile.py). The journal is real: SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.config import Config, parse_config
from receiver.engine import ingest
from receiver.reconcile import REASON
from receiver.reconciler import CANCELLED, Reconciler, settings_of
from receiver.store import open_store
from tests.support.http_server import Reply, ScriptedServer, scripted_server
from tests.support.journal import all_actions, all_incidents, iso
from tests.support.payloads import alert, notification
from tests.support.receiver import LOG_RESTART


@dataclass
class Source:
    config: Config


@pytest.fixture
def alertmanager() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture
def journal(store_url: str) -> Iterator[Any]:
    store = open_store(store_url)
    store.seed_metrics([])
    yield store
    store.close()


def config_for(url: str, grace: str = "0s") -> Config:
    text = f"alertmanager: {{url: '{url}', reconcile_grace: {grace}}}\n" + LOG_RESTART
    return parse_config(text)


def status(started: datetime) -> Reply:
    """Alertmanager's `GET /api/v2/status`, as much of it as reconciliation reads."""
    return Reply.json(200, {"uptime": iso(started), "versionInfo": {"version": "0.25.0"}})


AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def fire(journal: Any, config: Config, service: str, starts: datetime) -> None:
    body = notification(alert(starts_at=iso(starts), service=service))
    body["externalURL"] = config.alertmanager.url  # type: ignore[union-attr]
    ingest(journal, config, parse_notification(body), starts.timestamp())


def held(service: str, starts: datetime) -> dict[str, Any]:
    """One alert as Alertmanager's API v2 shows it (startsAt to the millisecond)."""
    labels = {"alertname": "ServiceDown", "service": service}
    body = alert(starts_at=iso(starts), service=service)
    return {
        "labels": labels,
        "annotations": {},
        "fingerprint": body["fingerprint"],
        "startsAt": starts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "endsAt": iso(starts + timedelta(minutes=5)),
        "updatedAt": iso(starts),
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        "receivers": [{"name": "remediator"}],
    }


def runs(journal: Any) -> dict[str, float]:
    totals = journal.metric_totals()
    found = {labels["outcome"]: v for labels, v in totals["remediator_reconciliations_total"]}
    found["reconciled"] = totals["remediator_incidents_reconciled_total"][0][1]
    return found


UP = status(AN_HOUR_AGO)
STATUS_PATH = "/api/v2/status"
ALERTS_PATH = "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true"
#: Alertmanager's answers to the status request, then to the alerts request
ANSWERS = {
    "status: HTTP 500": [Reply(500, b"internal error")],
    "status without uptime": [Reply.json(200, {"versionInfo": {}})],
    "alerts: HTTP 500": [UP, Reply(500, b"internal error")],
    "alerts: HTTP 404 (not an Alertmanager)": [UP, Reply(404, b"not found")],
    "alerts: not JSON": [UP, Reply(200, b"<html>login</html>")],
    "alerts: not a list": [UP, Reply.json(200, {"alerts": []})],
    "alerts: one without startsAt": [UP, Reply.json(200, [{"fingerprint": "1470b5e6f638f8ce"}])],
    "alerts: one without fingerprint": [UP, Reply.json(200, [{"startsAt": iso(AN_HOUR_AGO)}])],
}


@pytest.mark.parametrize("replies", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_answer_that_is_not_a_list_of_alerts_closes_nothing(
    journal: Any, alertmanager: ScriptedServer, replies: list[Reply]
) -> None:
    config = config_for(alertmanager.url)
    fire(journal, config, "cart", datetime.now(UTC) - timedelta(minutes=5))
    alertmanager.answer(*replies)

    decision = Reconciler(Source(config), journal).run_once(settings_of(config))

    assert decision is not None and decision.failed is not None
    assert decision.failed.startswith(f"Alertmanager {alertmanager.url} could not be asked")
    assert [i["status"] for i in all_incidents(journal)] == ["firing"]
    assert runs(journal) == {"ok": 0, "failed": 1, "reconciled": 0}
    asked = [request.path for request in alertmanager.received]
    assert asked == [STATUS_PATH, ALERTS_PATH][: len(replies)]


def test_a_whole_answer_closes_what_it_lacks_and_cancels_its_plans(
    journal: Any, alertmanager: ScriptedServer
) -> None:
    config = config_for(alertmanager.url)
    starts = datetime.now(UTC) - timedelta(minutes=5)
    fire(journal, config, "cart", starts)
    fire(journal, config, "search", starts)
    alertmanager.answer(status(AN_HOUR_AGO), Reply.json(200, [held("search", starts)]))

    decision = Reconciler(Source(config), journal).run_once(settings_of(config))

    assert decision is not None and decision.failed is None
    by_service = {i["labels"]["service"]: i for i in all_incidents(journal)}
    assert by_service["search"]["status"] == "firing"
    cart = by_service["cart"]
    assert (cart["status"], cart["close_reason"]) == ("resolved", REASON.format(alertmanager.url))
    plans = {a["incident_id"]: a for a in all_actions(journal)}
    assert (plans[cart["id"]]["status"], plans[cart["id"]]["reason"]) == ("cancelled", CANCELLED)
    assert plans[by_service["search"]["id"]]["status"] == "planned"
    assert runs(journal) == {"ok": 1, "failed": 0, "reconciled": 1}


def test_no_candidate_asks_nothing(journal: Any, alertmanager: ScriptedServer) -> None:
    """Incidents of another Alertmanager are not ours to close: it is not even asked."""
    config = config_for(alertmanager.url)
    body = notification(alert(starts_at=iso(datetime.now(UTC)), service="cart"))
    body["externalURL"] = "http://another-alertmanager.test:9093"
    ingest(journal, config, parse_notification(body), 0.0)

    assert Reconciler(Source(config), journal).run_once(settings_of(config)) is None
    assert alertmanager.received == []
    assert [i["status"] for i in all_incidents(journal)] == ["firing"]


def test_an_alertmanager_restarted_within_the_grace_closes_nothing(
    journal: Any, alertmanager: ScriptedServer
) -> None:
    """It keeps alerts in memory only: just restarted, it holds only those Prometheus
    has sent again since, not every alert that fires."""
    config = config_for(alertmanager.url, grace="10m")
    fire(journal, config, "cart", datetime.now(UTC) - timedelta(hours=2))
    restarted = datetime.now(UTC) - timedelta(minutes=1)
    alertmanager.answer(status(restarted), Reply.json(200, []))

    reconciler = Reconciler(Source(config), journal, clock=lambda: restarted.timestamp() + 60)
    decision = reconciler.run_once(settings_of(config))

    assert decision is not None and decision.failed is not None
    assert "within reconcile_grace (600s)" in decision.failed
    assert [i["status"] for i in all_incidents(journal)] == ["firing"]
    assert runs(journal) == {"ok": 0, "failed": 1, "reconciled": 0}
