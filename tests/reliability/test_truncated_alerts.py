"""Alerts that Alertmanager dropped (issue 12, item 4), with a real Alertmanager.

A route whose webhook config has `max_alerts: 2` and 5 alerts of one group: Alertmanager
sends 2 and `truncatedAlerts: 3`. The 3 used to be mentioned nowhere an operator looks.
Now the receiver logs a WARNING naming the group key and the count,
`remediator_alerts_truncated_total` says 3, and the notification as
`GET /api/v1/notifications` lists it says `truncated_alerts: 3`; the webhook's answer
says it too (`truncated_alerts`), seen here by posting what Alertmanager sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.journal import bearer, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import alertmanager, remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

MAX_ALERTS = 2
SENT = 5
DROPPED = SENT - MAX_ALERTS


def am_config(webhook_url: str, token_file: Path) -> str:
    return f"""route:
  receiver: remediator
  group_by: ['alertname']
  group_wait: 5s
  group_interval: 1h
  repeat_interval: 1h
receivers:
  - name: remediator
    webhook_configs:
    - url: {webhook_url}
      max_alerts: {MAX_ALERTS}
      http_config:
        authorization:
          credentials_file: {token_file}
"""


def truncated_total(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "remediator_alerts_truncated":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("remediator_alerts_truncated_total is not exported")


def notifications(url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/api/v1/notifications", headers=bearer(), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_alerts_dropped_by_max_alerts_are_logged_counted_and_listed(tmp_path: Path) -> None:
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    # Started now, not earlier: Alertmanager flushes a group at once when an alert's
    # startsAt + group_wait is already past, and on a busy machine that flush could run
    # before the group's other alerts of the same POST were in it (one alert sent).
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    alerts = [
        {"labels": {"alertname": "ServiceDown", "service": f"s{i}"}, "startsAt": started}
        for i in range(SENT)
    ]
    with remediator(tmp_path, config, store_url) as server:
        webhook = f"{server.url}/webhook"
        with alertmanager(tmp_path / "am", am_config(webhook, tmp_path / "token")) as am:
            posted = requests.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=10)
            assert posted.status_code == 200, posted.text
            [row] = wait_for(lambda: notifications(server.url), what="the notification")
        counted = truncated_total(server.url)
        log = server.output()

        # What Alertmanager sent, posted again: the answer says what it dropped.
        body = notification(alert(service="s0"), alert(service="s1"), group_key=row["group_key"])
        body["truncatedAlerts"] = DROPPED
        answer = post_webhook(server.url, body)
        counted_again = truncated_total(server.url)

    assert (row["alerts"], row["truncated_alerts"]) == (MAX_ALERTS, DROPPED)
    assert row["summary"]["truncated_alerts"] == DROPPED
    assert counted == DROPPED
    warnings = [line for line in log.splitlines() if "WARNING" in line and "left" in line]
    assert len(warnings) == 1, warnings
    assert f"left {DROPPED} alerts out" in warnings[0]
    assert row["group_key"] in warnings[0].replace("\\", ""), warnings[0]
    assert answer.status_code == 200, answer.text
    assert answer.json()["truncated_alerts"] == DROPPED
    assert counted_again == 2 * DROPPED


def test_a_notification_with_nothing_dropped_counts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as server:
        answer = post_webhook(server.url, notification(alert(service="s0")))
        counted = truncated_total(server.url)
        [row] = notifications(server.url)
        log = server.output()
    assert answer.status_code == 200 and answer.json()["truncated_alerts"] == 0
    assert counted == 0
    assert row["truncated_alerts"] == 0
    assert "out of the notification of group key" not in log
