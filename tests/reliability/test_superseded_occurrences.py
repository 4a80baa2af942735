"""Issue 12, item 1 (ingest half): a new occurrence of a fingerprint supersedes the older
one still firing, whose resolution Alertmanager never sends. Through a real
`remediator serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.engine import CANCELLED_BY_SUPERSEDING
from tests.support.journal import (
    all_actions,
    all_incidents,
    iso,
    open_journal,
    post_webhook,
    wait_for,
)
from tests.support.journal import settle as settle_actions
from tests.support.payloads import alert, notification
from tests.support.processes import Running, remediator
from tests.support.receiver import AUTH_SERVER, write_config

FINGERPRINT = "1470b5e6f638f8ce"  # the issue's
CONFIG = (
    AUTH_SERVER
    + """executors:
  logger: {type: log}
strategies:
  - name: restart-service
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
  - name: clean-disk
    matchers: ['alertname="DiskFilling"']
    action: run
    executor: logger
    target: '{{ labels.service }}'
    cooldown: 0s
    preconditions:
      - alert_not_firing: ['alertname="ServiceDown"', 'service="{{ labels.service }}"']
"""
)


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[tuple[Running, Any]]:
    config = write_config(tmp_path, CONFIG)
    with remediator(tmp_path, config, store_url) as running:
        yield running, open_journal(store_url)


def post(server: Running, *alerts: dict[str, Any]) -> dict[str, Any]:
    response = post_webhook(server.url, notification(*alerts))
    assert response.status_code == 200, response.text
    return response.json()


def figures(server: Running) -> tuple[float, set[str]]:
    """remediator_open_incidents and the health statuses of service `cart` now."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    open_incidents = families["remediator_open_incidents"].samples[0].value
    health = {
        s.labels["status"]
        for s in families["remediator_service_health"].samples
        if s.labels["service"] == "cart" and s.value == 1
    }
    return open_incidents, health


def disk_filling(starts: datetime, status: str = "firing") -> dict[str, Any]:
    ends = iso(starts + timedelta(seconds=1)) if status == "resolved" else "0001-01-01T00:00:00Z"
    return alert("DiskFilling", status=status, starts_at=iso(starts), ends_at=ends, service="cart")


def test_a_later_resolved_occurrence_closes_the_firing_one_it_replaced(server) -> None:
    running, journal = server
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t3 = now - timedelta(minutes=5), now - timedelta(minutes=1)
    open_before, _ = figures(running)

    post(
        running, alert(status="firing", starts_at=iso(t1), fingerprint=FINGERPRINT, service="cart")
    )
    assert figures(running)[0] == open_before + 1
    # While it fires, the precondition holds other remediation of cart back.
    post(running, disk_filling(now - timedelta(minutes=4)))
    blocked = settle_actions(journal, 2)[-1]
    assert (blocked["strategy"], blocked["status"]) == ("clean-disk", "skipped")
    assert blocked["reason"].startswith("precondition")
    post(running, disk_filling(now - timedelta(minutes=4), "resolved"))

    answer = post(
        running,
        alert(
            status="resolved",
            starts_at=iso(t3),
            ends_at=iso(t3 + timedelta(seconds=5)),
            fingerprint=FINGERPRINT,
            service="cart",
        ),
    )
    assert answer["resolved"] == 1

    incidents = {
        i["starts_at"]: i for i in all_incidents(journal) if i["fingerprint"] == FINGERPRINT
    }
    assert [i for i in incidents.values() if i["status"] == "firing"] == []
    first, second = incidents[iso(t1)], incidents[iso(t3)]
    assert first["status"] == "resolved"
    assert first["ends_at"] == iso(t3)  # it cannot have fired past the next occurrence
    assert first["duration_seconds"] == pytest.approx((t3 - t1).total_seconds())
    assert first["close_reason"] == f"superseded by the occurrence starting {iso(t3)}"
    assert (second["status"], second["ends_at"]) == ("resolved", iso(t3 + timedelta(seconds=5)))
    assert second["duration_seconds"] == pytest.approx(5.0)
    assert second["close_reason"] is None  # a resolution, as Alertmanager sent it

    open_after, health = figures(running)
    assert open_after == open_before
    assert health == {"healthy"}

    # The precondition passes again: the next DiskFilling of cart is acted on.
    post(running, disk_filling(now))
    actions = settle_actions(journal, 3)
    assert (actions[-1]["strategy"], actions[-1]["status"]) == ("clean-disk", "succeeded")


def test_a_later_firing_occurrence_cancels_what_the_replaced_one_planned(server) -> None:
    """The replaced occurrence's planned actions are cancelled, as for a resolution."""
    running, journal = server
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t3 = now - timedelta(minutes=5), now - timedelta(minutes=1)
    # One notification, one transaction: the first occurrence plans its restart, and the
    # second replaces it before any dispatcher thread can claim that restart.
    summary = post(
        running,
        alert(starts_at=iso(t1), fingerprint=FINGERPRINT, service="cart"),
        alert(starts_at=iso(t3), fingerprint=FINGERPRINT, service="cart"),
    )
    assert (summary["new_incidents"], summary["actions_cancelled"]) == (2, 1)
    incidents = {i["starts_at"]: i for i in all_incidents(journal)}
    assert incidents[iso(t1)]["status"] == "resolved"
    assert incidents[iso(t3)]["status"] == "firing"
    actions = {a["incident_id"]: a for a in settle_actions(journal, 2)}
    replaced = actions[incidents[iso(t1)]["id"]]
    assert replaced["status"] == "cancelled"
    assert replaced["reason"] == CANCELLED_BY_SUPERSEDING.format(iso(t3))
    assert actions[incidents[iso(t3)]["id"]]["status"] == "succeeded"


def test_an_older_occurrence_arriving_late_is_recorded_closed_and_opens_nothing(server) -> None:
    """An HA pair can send an earlier startsAt than the one journaled: the newer stays."""
    running, journal = server
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t3 = now - timedelta(minutes=5), now - timedelta(minutes=1)
    post(running, alert(starts_at=iso(t3), fingerprint=FINGERPRINT, service="cart"))
    summary = post(running, alert(starts_at=iso(t1), fingerprint=FINGERPRINT, service="cart"))
    assert (summary["new_incidents"], summary["actions_planned"]) == (0, 0)

    incidents = {i["starts_at"]: i for i in all_incidents(journal)}
    assert incidents[iso(t3)]["status"] == "firing"
    late = incidents[iso(t1)]
    assert (late["status"], late["ends_at"]) == ("resolved", iso(t3))
    assert late["close_reason"] == f"superseded by the occurrence starting {iso(t3)}"
    assert [a["incident_id"] for a in all_actions(journal)] == [incidents[iso(t3)]["id"]]
    wait_for(lambda: figures(running)[0] == 1, what="one open incident")
