"""Waking the dispatcher (receiver/dispatcher.py) on a real SQLite journal: planned
actions wake one idle thread, not the whole pool, because every woken thread costs a
claim transaction that queues with the webhook's writes; that thread claims them for
itself and the idle threads in one transaction and hands them over."""

from __future__ import annotations

import logging
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
from tests.support.configs import restart_on_service_down
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG_TEXT = restart_on_service_down(max_concurrent_actions=4)
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
    claim_due = store.claim_due  # every claim the dispatcher makes

    def counting_claim(*args: Any, **kwargs: Any) -> Any:
        with lock:
            claims[0] += 1
        return claim_due(*args, **kwargs)

    monkeypatch.setattr(store, "claim_due", counting_claim)
    dispatcher = Dispatcher(Source(CONFIG), store)
    dispatcher.start()
    # the threads' first looks (queued behind one another: one or two claims) found
    # nothing; then they sleep
    wait_for(lambda: claims[0] >= 1)
    time.sleep(0.3)
    assert 1 <= claims[0] <= 4
    claims[0] = 0
    yield store, dispatcher, claims
    dispatcher.stop()
    store.close()


def finished(store: Any, count: int) -> bool:
    done = store.list_actions(status="succeeded", limit=100).items
    return len(done) == count


def claimed_events(action: dict[str, Any]) -> int:
    return sum(e["reason"].startswith("claimed by ") for e in action["events"])


def test_one_planned_action_wakes_one_thread(counted):
    store, dispatcher, claims = counted
    summary = ingest(store, CONFIG, parse_notification(notification(alert(service="web"))), 1.0)
    dispatcher.wake(summary.actions_planned)
    wait_for(lambda: finished(store, 1))
    time.sleep(0.3)
    # the woken thread's claim saw every due action (it took fewer than it could): it
    # does not look again until woken
    assert claims[0] == 1


def test_several_planned_actions_are_claimed_in_one_transaction(counted, caplog):
    store, dispatcher, claims = counted
    caplog.set_level(logging.INFO, logger="receiver.executors.log")
    services = ("a", "b", "c")
    body = notification(*(alert(service=s) for s in services))
    summary = ingest(store, CONFIG, parse_notification(body), 1.0)
    assert summary.actions_planned == 3
    dispatcher.wake(summary.actions_planned)
    wait_for(lambda: finished(store, 3))
    time.sleep(0.3)
    assert claims[0] == 1  # one woken thread claimed for itself and two idle ones
    done = store.list_actions(status="succeeded", limit=10).items
    assert len({a["started_at"] for a in done}) == 1  # one claim: one start time
    assert [claimed_events(a) for a in done] == [1, 1, 1]
    # ...and each carried out by a thread of its own, as if it had claimed it itself
    starts = [r for r in caplog.records if r.getMessage().startswith("would restart")]
    assert len(starts) == 3
    assert len({r.threadName for r in starts}) == 3


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


def test_a_claim_takes_no_more_actions_than_threads_free_to_start_them(tmp_path):
    """run_once from a thread outside the pool, with no pool thread idle: one action
    claimed and carried out, the others left planned (not claimed to wait)."""
    store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    body = notification(*(alert(service=s) for s in ("a", "b", "c")))
    assert ingest(store, CONFIG, parse_notification(body), 1.0).actions_planned == 3
    dispatcher = Dispatcher(Source(CONFIG), store)
    assert dispatcher.run_once()
    assert store.list_actions(status="succeeded", limit=10).total == 1
    assert store.list_actions(status="planned", limit=10).total == 2
    store.close()


def test_a_backlog_is_carried_out_once_each_by_the_pool(counted):
    """More actions than threads, all woken at once: threads that end their actions
    together queue for one claim instead of claiming one each; every action is still
    claimed once and carried out."""
    store, dispatcher, _claims = counted
    count = 40
    body = notification(*(alert(service=f"svc-{n}") for n in range(count)))
    assert ingest(store, CONFIG, parse_notification(body), 1.0).actions_planned == count
    dispatcher.wake(count)
    wait_for(lambda: finished(store, count))
    done = store.list_actions(status="succeeded", limit=100).items
    assert [claimed_events(a) for a in done] == [1] * count
    assert store.list_actions(status="planned", limit=1).total == 0
