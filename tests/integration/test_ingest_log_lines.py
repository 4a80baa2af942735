"""What ingest logs for a new alert, journaled in a real SQLite journal: one line per
alert that plans an action, naming both the incident and the action."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.engine import ingest
from receiver.store import open_store
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG = parse_config(
    """\
executors: {logger: {type: log}}
strategies:
  - name: restart-it
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    continue: true
  - name: tell-it
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: 'told-{{ labels.service }}'
  - name: refuse-it
    matchers: ['alertname="Refused"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
)


@pytest.fixture
def store(tmp_path) -> Iterator[Any]:
    opened = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    yield opened
    opened.close()


def lines(store: Any, caplog: pytest.LogCaptureFixture, *alerts: dict[str, Any]) -> list[Any]:
    with caplog.at_level("INFO"):
        ingest(store, CONFIG, parse_notification(notification(*alerts)), 1_800_000_000.0)
    return [r for r in caplog.records if r.name.startswith("receiver.")]


def test_an_alert_that_plans_an_action_logs_one_line_naming_both(store, caplog) -> None:
    first, second = lines(store, caplog, alert(service="web", fingerprint="f1"))
    assert first.getMessage() == (
        "incident opened: ServiceDown; action planned: restart-it step 1 restart on web"
    )
    assert first.fingerprint == "f1"  # type: ignore[attr-defined]
    assert first.incident_id == second.incident_id  # type: ignore[attr-defined]
    # a second strategy's action (continue: true) is told alone: the incident was told
    assert second.getMessage() == "action planned: tell-it step 1 restart on told-web"
    assert first.action_id != second.action_id  # type: ignore[attr-defined]


def test_an_alert_that_plans_nothing_logs_its_opening_alone(store, caplog) -> None:
    (line,) = lines(store, caplog, alert("NothingMatches", service="web", fingerprint="f2"))
    assert line.getMessage() == "incident opened: NothingMatches"
    assert line.fingerprint == "f2"  # type: ignore[attr-defined]


def test_an_alert_whose_action_is_refused_still_logs_its_opening(store, caplog) -> None:
    messages = [r.getMessage() for r in lines(store, caplog, alert("Refused", service="a b"))]
    assert messages[-1] == "incident opened: Refused"
    assert any(m.startswith("action refused:") for m in messages)
