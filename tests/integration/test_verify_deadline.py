"""Verification polls a real Prometheus up to and including its deadline: with a 3 s
timeout and a 1 s interval it asks at 0, 1, 2 and 3 s, four times, not three (the last
poll used to be skipped when a whole interval no longer fitted before the deadline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import open_store
from tests.support.payloads import alert, notification
from tests.support.processes import prometheus
from tests.support.receiver import PROMETHEUS_CONFIG

pytestmark = pytest.mark.integration


def queries_answered(url: str) -> float:
    """Prometheus's own count of instant queries it answered."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "prometheus_http_requests_total"
        and sample.labels.get("handler") == "/api/v1/query"
    )


class Source:
    def __init__(self, config) -> None:
        self.config = config


def test_the_last_poll_falls_on_the_deadline(tmp_path: Path) -> None:
    with prometheus(tmp_path / "prometheus", PROMETHEUS_CONFIG) as server:
        config = parse_config(
            f"prometheus: {{url: '{server.url}'}}\n"
            "executors: {logger: {type: log}}\n"
            "strategies:\n"
            "  - name: never\n"
            "    matchers: ['alertname=\"ServiceDown\"']\n"
            "    action: restart\n"
            "    executor: logger\n"
            "    target: '{{ labels.service }}'\n"
            "    verify: {query: 'vector(0) > 0', timeout: 3s, interval: 1s}\n"
        )
        store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
        try:
            ingest(store, config, parse_notification(notification(alert(service="web"))), 0.0)
            before = queries_answered(server.url)
            assert Dispatcher(Source(config), store).run_once()
            asked = queries_answered(server.url) - before
            [action] = store.list_actions(limit=10).items
        finally:
            store.close()
    assert action["status"] == "failed"
    assert action["reason"].endswith("verification failed: 'vector(0) > 0' not true within 3s")
    assert asked == 4
