"""An action's steps in the journal when the dispatcher folds one into its outcome's
transaction (receiver/dispatcher.py `_outcome`): on a real SQLite journal, the real
dispatcher (run in the test's thread) and the `log` executor."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import open_store
from tests.support.configs import RESTART_ON_SERVICE_DOWN
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG = parse_config(RESTART_ON_SERVICE_DOWN)
T = 1_800_000_000.0


@pytest.fixture
def store(tmp_path) -> Any:
    opened = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    yield opened
    opened.close()


def test_without_verification_the_executed_step_commits_with_the_outcome(store, monkeypatch):
    ingest(store, CONFIG, parse_notification(notification(alert(service="web"))), T)
    ticks = iter(T + 1 + i for i in range(100))
    dispatcher = Dispatcher(SimpleNamespace(config=CONFIG), store, clock=lambda: next(ticks))
    notes: list[tuple[int, float, str]] = []
    note = store.note
    monkeypatch.setattr(store, "note", lambda *args: notes.append(args) or note(*args))

    assert dispatcher.run_once() is True

    (action,) = store.list_actions(limit=10).items
    assert action["status"] == "succeeded"
    steps = [(e["status"], e["reason"]) for e in action["events"]]
    assert steps == [
        ("planned", "matched strategy restart"),
        ("running", f"claimed by {dispatcher.worker}: all gates passed"),
        ("running", f"executed: {action['reason']}"),
        ("succeeded", action["reason"]),
    ]
    times = [e["at"] for e in action["events"]]
    assert times == sorted(times)  # the step keeps its own time, before the outcome's
    assert times[2] < times[3]
    assert notes == []  # no transaction of its own
