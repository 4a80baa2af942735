"""A real Alertmanager delivers to a real receiver: firing, repeats, resolution, auth."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from receiver.store.sqlite import SqliteStore
from tests.support.processes import alertmanager, alertmanager_config, remediator
from tests.support.receiver import hold_dispatcher, write_config


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post_alerts(am, *alerts) -> None:
    response = requests.post(f"{am.url}/api/v2/alerts", json=list(alerts), timeout=5)
    assert response.status_code == 200, response.text


def am_alert(service: str, starts_at: datetime, ends_at: datetime | None = None) -> dict:
    body = {
        "labels": {"alertname": "ServiceDown", "service": service, "severity": "ticket"},
        "annotations": {"summary": f"{service} is down"},
        "startsAt": _iso(starts_at),
    }
    if ends_at is not None:
        body["endsAt"] = _iso(ends_at)
    return body


def wait_for(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def failed_notifications(am) -> float:
    text = requests.get(f"{am.url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("alertmanager_notifications_failed_total") and "webhook" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def stack(tmp_path: Path):
    config = write_config(tmp_path)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as receiver:
        hold_dispatcher(receiver.url)  # so that planned actions stay visible as planned
        am_config = alertmanager_config(
            f"{receiver.url}/webhook", credentials_file=tmp_path / "token"
        )
        with alertmanager(tmp_path / "am", am_config) as am:
            yield receiver, am, SqliteStore(store_url)


def test_firing_repeats_and_resolution_through_alertmanager(stack):
    _receiver, am, journal = stack
    started = datetime.now(UTC) - timedelta(seconds=30)
    post_alerts(am, am_alert("web", started), am_alert("db", started))

    found = wait_for(
        lambda: journal.list_incidents(status="firing", alertname="ServiceDown").total == 2,
        what="two firing incidents",
    )
    assert found
    assert journal.list_actions(status="planned").total == 2

    # Alertmanager sees the same alerts again (a rule re-evaluated): nothing new may appear,
    # however many times the group is re-sent.
    for _ in range(3):
        post_alerts(am, am_alert("web", started), am_alert("db", started))
        time.sleep(1.2)
    counts = journal.counts()
    assert (counts["incidents"], counts["actions"]) == (3, 3)  # with the hold

    ended = datetime.now(UTC) - timedelta(seconds=1)
    post_alerts(am, am_alert("web", started, ended))
    wait_for(lambda: journal.list_incidents(status="resolved").total == 1, what="web resolved")
    web = journal.list_incidents(service="web").items[0]
    assert web["status"] == "resolved"
    assert web["duration_seconds"] == pytest.approx((ended - started).total_seconds(), abs=0.01)
    statuses = {a["target"]: a["status"] for a in journal.list_actions().items}
    assert statuses == {"web": "cancelled", "db": "planned", "hold": "running"}
    assert journal.counts()["incidents"] == 3


def test_alertmanager_without_credentials_is_refused(tmp_path: Path):
    config = write_config(tmp_path)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as receiver:
        am_config = alertmanager_config(f"{receiver.url}/webhook")  # no credentials_file
        with alertmanager(tmp_path / "am", am_config) as am:
            post_alerts(am, am_alert("web", datetime.now(UTC)))
            wait_for(lambda: failed_notifications(am) >= 1, what="a failed webhook delivery")
    assert SqliteStore(store_url).counts()["notifications"] == 0
