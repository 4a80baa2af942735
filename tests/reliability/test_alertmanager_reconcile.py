"""Issue 12, item 1, against a real Alertmanager: an occurrence replaced within one
group_interval ends superseded; reconciliation closes the firing incidents Alertmanager
no longer holds (and only those), and closes nothing while Alertmanager is down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.alerts import fingerprint_of
from receiver.reconcile import REASON
from receiver.store.sqlite import SqliteStore
from tests.support.journal import all_incidents, iso, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import Running, alertmanager, alertmanager_config, remediator, stop
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

#: What the Alertmanager advertises as externalURL (--web.external-url): not its address.
ADVERTISED = "http://alertmanager.test:9093"
OTHER_AM = "http://another-alertmanager.test:9093"


#: Silences the alert while it restarts the service (the dispatcher's `silence: true`).
SILENCING = """defaults: {escalation_executor: am}
executors:
  am: {type: alertmanager}
  logger: {type: log}
strategies:
  - name: restart-silenced
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    silence: true
"""


@contextmanager
def stack(
    tmp_path: Path,
    grace: str,
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    interval: str = "1s",
    tail: str = LOG_RESTART,
) -> Iterator[tuple[Running, Running, SqliteStore]]:
    """A real Alertmanager delivering to a real `remediator serve` that reconciles with
    it every second. The Alertmanager starts first (the receiver's config names it),
    then is pointed at the receiver and reloaded."""
    args = ["--cluster.listen-address=", f"--web.external-url={ADVERTISED}"]
    nowhere = alertmanager_config("http://127.0.0.1:9/webhook")
    with alertmanager(tmp_path / "am", nowhere, extra_args=args) as am:
        config = AUTH_SERVER + (
            f"alertmanager:\n  url: {am.url}\n  reconcile_interval: {interval}\n"
            f"  reconcile_grace: {grace}\n  external_urls: ['{ADVERTISED}']\n"
        ) + tail  # fmt: skip
        store_url = f"sqlite:///{tmp_path / 'journal.db'}"
        with remediator(tmp_path, write_config(tmp_path, config), store_url) as receiver:
            (tmp_path / "am" / "alertmanager.yml").write_text(
                alertmanager_config(
                    f"{receiver.url}/webhook",
                    credentials_file=tmp_path / "token",
                    group_interval=group_interval,
                    repeat_interval=repeat_interval,
                )
            )
            assert requests.post(f"{am.url}/-/reload", timeout=10).status_code == 200
            yield am, receiver, SqliteStore(store_url)


def post_alerts(am: Running, *alerts: dict[str, Any]) -> None:
    response = requests.post(f"{am.url}/api/v2/alerts", json=list(alerts), timeout=5)
    assert response.status_code == 200, response.text


def am_alert(service: str, starts: datetime, ends: datetime | None = None) -> dict[str, Any]:
    body = {"labels": labels(service), "startsAt": iso(starts)}
    if ends is not None:
        body["endsAt"] = iso(ends)
    return body


def labels(service: str) -> dict[str, str]:
    return {"alertname": "ServiceDown", "service": service}


def straight(starts: datetime, service: str, external_url: str) -> dict[str, Any]:
    """A notification POSTed straight to the webhook, as if from `external_url`."""
    body = notification(alert(starts_at=iso(starts), service=service))
    body["externalURL"] = external_url
    return body


def incidents_of(journal: SqliteStore, service: str) -> list[dict[str, Any]]:
    return sorted(
        (i for i in all_incidents(journal) if i["labels"].get("service") == service),
        key=lambda i: i["starts_at"],
    )


def counters(receiver: Running) -> dict[str, float]:
    text = requests.get(f"{receiver.url}/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "remediator_reconciliations_total":
                found[sample.labels["outcome"]] = sample.value
            if sample.name == "remediator_incidents_reconciled_total":
                found["reconciled"] = sample.value
    return found


def test_an_occurrence_replaced_within_one_group_interval_ends_superseded(tmp_path: Path) -> None:
    # A group_interval long enough that the replacement happens between two flushes; a
    # repeat_interval shorter, so that the next flush re-sends the (same-labelled) alert.
    with stack(tmp_path, grace="1h", group_interval="3s", repeat_interval="1s") as (am, _, journal):
        t1 = datetime.now(UTC) - timedelta(seconds=30)
        post_alerts(am, am_alert("cart", t1))
        wait_for(lambda: incidents_of(journal, "cart"), what="the first occurrence journaled")

        # Resolved and fired again in one request, so no flush falls between: Alertmanager
        # replaces the occurrence, and the first one's resolution is never sent.
        resolved = datetime.now(UTC) - timedelta(seconds=1)
        t3 = datetime.now(UTC)
        post_alerts(am, am_alert("cart", t1, resolved), am_alert("cart", t3))

        def replaced() -> list[dict[str, Any]] | None:
            found = incidents_of(journal, "cart")
            return found if len(found) == 2 else None

        first, second = wait_for(replaced, what="the second occurrence journaled")
    assert first["starts_at"] == iso(t1)
    assert first["status"] == "resolved"
    assert first["ends_at"] == iso(t3)
    assert first["close_reason"] == f"superseded by the occurrence starting {iso(t3)}"
    assert (second["starts_at"], second["status"]) == (iso(t3), "firing")
    assert journal.open_incident_count() == 1


def test_reconciliation_closes_what_alertmanager_no_longer_holds(tmp_path: Path) -> None:
    with stack(tmp_path, grace="0s") as (am, receiver, journal):
        now = datetime.now(UTC) - timedelta(seconds=10)
        post_alerts(am, am_alert("held", now))
        wait_for(lambda: incidents_of(journal, "held"), what="the held alert delivered")
        for service, url in (("lost", ADVERTISED), ("elsewhere", OTHER_AM)):
            response = post_webhook(receiver.url, straight(now, service, url))
            assert response.status_code == 200, response.text

        wait_for(
            lambda: incidents_of(journal, "lost")[0]["status"] == "resolved",
            what="the incident Alertmanager never had closed by reconciliation",
        )
        ok_runs = counters(receiver)["ok"]
        wait_for(lambda: counters(receiver)["ok"] >= ok_runs + 2, what="two more runs")
        tally = counters(receiver)

    lost = incidents_of(journal, "lost")[0]
    assert lost["close_reason"] == REASON.format(am.url)
    assert lost["ends_at"] is not None
    assert [i["status"] for i in incidents_of(journal, "held")] == ["firing"]
    assert [i["status"] for i in incidents_of(journal, "elsewhere")] == ["firing"]
    assert (tally["reconciled"], tally["failed"]) == (1, 0)
    assert lost["fingerprint"] == fingerprint_of(labels("lost"))


def test_alertmanager_down_closes_nothing_and_counts_the_failure(tmp_path: Path) -> None:
    with stack(tmp_path, grace="0s") as (am, receiver, journal):
        stop(am.process)
        before = counters(receiver)
        now = datetime.now(UTC) - timedelta(seconds=10)
        response = post_webhook(receiver.url, straight(now, "lost", ADVERTISED))
        assert response.status_code == 200, response.text

        wait_for(
            lambda: counters(receiver)["failed"] >= before["failed"] + 2,
            what="reconciliation failing while Alertmanager is down",
        )
        tally = counters(receiver)
    assert [i["status"] for i in incidents_of(journal, "lost")] == ["firing"]
    assert tally["reconciled"] == 0
    assert tally["ok"] == before["ok"]


def test_expiring_a_silence_of_its_own_reconciles_at_once(tmp_path: Path) -> None:
    """Periodic runs an hour apart: only the run after the silence can close it."""
    with stack(tmp_path, grace="0s", interval="1h", tail=SILENCING) as (am, receiver, journal):
        wait_for(lambda: counters(receiver).get("ok") is not None, what="metrics")
        response = post_webhook(receiver.url, straight(datetime.now(UTC), "lost", ADVERTISED))
        assert response.status_code == 200, response.text

        lost = wait_for(
            lambda: [i for i in incidents_of(journal, "lost") if i["status"] == "resolved"],
            what="the incident closed by the reconciliation after the silence",
        )[0]
        silences = requests.get(f"{am.url}/api/v2/silences", timeout=5).json()
        tally = counters(receiver)
    assert lost["close_reason"] == REASON.format(am.url)
    assert [s["status"]["state"] for s in silences] == ["expired"]
    assert (tally["ok"], tally["reconciled"]) == (1, 1)
