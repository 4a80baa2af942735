"""Waking the dispatcher (receiver/dispatcher.py) on a real SQLite journal: a planned
action wakes one idle thread, not the whole pool, because every woken thread costs a
claim transaction that queues with the webhook's writes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from receiver import dispatcher as dispatcher_module
from receiver.alerts import parse_notification
from receiver.config import Config, parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import open_store
from receiver.store.dispatch import CLAIM_SCAN_LIMIT
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG_TEXT = """
defaults: {max_concurrent_actions: 4, cooldown: 0s}
executors: {logger: {type: log}}
strategies:
  - name: restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
CONFIG = parse_config(CONFIG_TEXT)


@dataclass
class Source:
    config: Config


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """A started dispatcher whose threads are all idle, and its claim count."""
    monkeypatch.setattr(dispatcher_module, "IDLE_POLL", 30.0)  # no polling during the test
    store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    claims = [0]
    lock = threading.Lock()
    claim = store.claim

    def counting_claim(*args: Any, **kwargs: Any) -> Any:
        with lock:
            claims[0] += 1
        return claim(*args, **kwargs)

    monkeypatch.setattr(store, "claim", counting_claim)
    dispatcher = Dispatcher(Source(CONFIG), store)
    dispatcher.start()
    wait_for(lambda: claims[0] == 4)  # each thread looked once, found nothing, sleeps
    time.sleep(0.2)
    assert claims[0] == 4
    yield store, dispatcher, claims
    dispatcher.stop()
    store.close()


def finished(store: Any, count: int) -> bool:
    done = store.list_actions(status="succeeded", limit=100).items
    return len(done) == count


def test_one_planned_action_wakes_one_thread(counted):
    store, dispatcher, claims = counted
    summary = ingest(store, CONFIG, parse_notification(notification(alert(service="web"))), 1.0)
    dispatcher.wake(summary.actions_planned)
    wait_for(lambda: finished(store, 1))
    time.sleep(0.3)
    # the woken thread: the claim that got the action, then one that found nothing
    assert claims[0] - 4 == 2


def test_several_planned_actions_wake_as_many_threads(counted):
    store, dispatcher, claims = counted
    services = ("a", "b", "c")
    body = notification(*(alert(service=s) for s in services))
    summary = ingest(store, CONFIG, parse_notification(body), 1.0)
    assert summary.actions_planned == 3
    dispatcher.wake(summary.actions_planned)
    wait_for(lambda: finished(store, 3))
    time.sleep(0.3)
    assert 3 + 1 <= claims[0] - 4 <= 3 * 2  # never more than two claims per woken thread


def test_a_claim_that_only_delays_actions_keeps_the_thread_looking(tmp_path):
    """Issue 14 made cooldown delay an action instead of skipping it. A claim that only
    journaled delays did work, like one that journaled skips: the due actions behind the
    claim's scan limit must be judged now, not after a thread's idle poll."""
    config = parse_config(CONFIG_TEXT.replace("cooldown: 0s", "cooldown: 5m"))
    store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    count = CLAIM_SCAN_LIMIT + 10  # more than one claim looks at
    instances = [f"web-{n}" for n in range(count)]
    body = notification(*(alert(service="web", instance=i) for i in instances))
    assert ingest(store, config, parse_notification(body), 1.0).actions_planned == count
    dispatcher = Dispatcher(Source(config), store)
    while dispatcher.run_once():
        pass
    # one ran; every other one was judged and waits for the cooldown, none left unjudged
    assert store.waiting_counts() == {"cooldown": count - 1}
    assert len(store.list_actions(status="succeeded", limit=10).items) == 1
    store.close()
