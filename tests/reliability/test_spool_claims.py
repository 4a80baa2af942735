"""Journal writers sharing one PostgreSQL journal (replicas) never both resume one spooled
notification (issue 11, item 3; receiver/store/spool.py).

Two real JournalWriters, each with its own store on one throwaway PostgreSQL schema,
driven turn by turn (`journal`, `resume_spooled`) as their loops would. Chunks of 10
alerts. Writer A spools a notification of 35 alerts and journals its first chunk, then
goes quiet. While A's claim is fresh, B leaves the row alone; once it is stale (no chunk
for spool.STALE_AFTER_S, waited for real), B takes it and journals the rest. A's next
chunk then finds the row no longer its own: its transaction is rolled back, its sender
gets 200 with the rest queued (true: B journals it), and A does not retry it. The
journal ends with every alert once and one notification row; the spool is empty. B runs
another config than A (its strategy has another name): what B resumes is planned under
B's config, the config the resuming writer runs.

And a spooled notification that the resuming writer's config refuses is dropped with an
ERROR naming the field, not retried forever.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.config import parse_config
from receiver.store import open_store, spool
from receiver.writer.process import JournalWriter
from receiver.writer.protocol import NOTIFY, Request
from tests.support.payloads import alert, notification
from tests.support.postgres import postgres_schema

CONFIG = """
limits: {notification_chunk_alerts: 10}
executors: {logger: {type: log}}
strategies:
  - name: note
    matchers: ['alertname="Big"']
    action: escalate
    executor: logger
    target: '{{ labels.n }}'
"""
ALERTS = 35


@pytest.fixture
def writers() -> Iterator[tuple[JournalWriter, JournalWriter, Any]]:
    configs = [parse_config(CONFIG), parse_config(CONFIG.replace("name: note", "name: note-b"))]
    with postgres_schema() as url:
        stores = [open_store(url) for _ in range(3)]
        try:
            a, b = (
                JournalWriter("remediation.yml", {}, config, store)
                for config, store in zip(configs, stores, strict=False)
            )
            yield a, b, stores[2]
        finally:
            for store in stores:
                store.close()


def select(journal: Any, sql: str) -> list[tuple[Any, ...]]:
    with journal.transaction(write=False) as tx:
        return [tuple(row) for row in tx.execute(sql).fetchall()]


def turns_until_done(writer: JournalWriter, limit: int = 50) -> list[tuple[Any, Any]]:
    replies: list[tuple[Any, Any]] = []
    for _ in range(limit):
        if not writer._large:
            return replies
        replies += writer.journal([])
    raise AssertionError(f"still {len(writer._large)} large notifications after {limit} turns")


def test_a_stale_claim_moves_to_another_writer_and_the_first_lets_go(writers) -> None:
    a, b, journal = writers
    body = notification(*(alert("Big", n=str(n)) for n in range(ALERTS)), group_key="big")
    request = Request(NOTIFY, time.time(), json.dumps(body).encode())

    assert a.journal([("sender", request)]) == []  # parsed
    assert a.journal([]) == []  # spooled
    assert a.journal([]) == []  # alerts 0..9
    assert select(journal, "SELECT next_alert, claimed_by FROM spooled_notifications") == [
        (10, a.owner)
    ]
    assert b.resume_spooled() is None  # A's claim is fresh

    time.sleep(spool.STALE_AFTER_S + 0.5)
    resumed = b.resume_spooled()
    assert resumed is not None and resumed.done == 10

    ((sender, answer),) = a.journal([])  # A's chunk 10..19: no longer its row
    said = json.loads(answer.body)
    assert (sender, answer.status) == ("sender", 200)
    assert (said["alerts"], said["queued_alerts"]) == (10, ALERTS - 10)
    assert a._large == [] and a.resume_spooled() is None  # held by B: A leaves it

    assert turns_until_done(b) == []  # resumed: nobody waits for its answer
    assert journal.counts()["incidents"] == ALERTS
    assert select(journal, "SELECT COUNT(DISTINCT fingerprint) FROM incidents") == [(ALERTS,)]
    assert journal.counts()["actions"] == ALERTS  # one per alert, none planned twice
    by_strategy = select(journal, "SELECT strategy, COUNT(*) FROM actions GROUP BY strategy")
    assert sorted(by_strategy) == [("note", 10), ("note-b", ALERTS - 10)]
    ((alerts, summary),) = select(journal, "SELECT alerts, summary FROM notifications")
    assert (alerts, json.loads(summary)) == (ALERTS, _whole_summary())
    assert journal.counts()["spooled_notifications"] == 0


def _whole_summary() -> dict[str, int]:
    """What the notification row must say: every alert new, each planning one action."""
    return {
        "actions_cancelled": 0,
        "actions_planned": ALERTS,
        "actions_refused": 0,
        "alerts": ALERTS,
        "duplicates": 0,
        "new_incidents": ALERTS,
        "resolved": 0,
        "unmatched": 0,
        "truncated": 0,
        "refused": 0,
        "truncated_alerts": 0,
    }


def test_a_spooled_notification_the_current_config_refuses_is_dropped_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Spooled under a config whose service label is `service`, resumed by a writer whose
    service label is `team`, which the journal keeps as a column and so refuses a NUL in
    (see receiver/alerts.py). It could never be journaled under this config: the writer
    drops the row, saying so, instead of failing it every few seconds."""
    config = parse_config(CONFIG + "defaults: {service_label: team}\n")
    store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    try:
        writer = JournalWriter("remediation.yml", {}, config, store)
        # Every alert: one bad alert alone would be refused alone and the rest journaled.
        alerts = [alert("Big", n=str(n), team="a\x00b") for n in range(ALERTS)]
        body = json.dumps(notification(*alerts)).encode()
        with store.transaction() as tx:  # as a writer under the old config left it
            spool.insert(tx, time.time(), body, ALERTS, writer.owner, time.time())

        resumed = writer.resume_spooled()
        assert resumed is not None
        assert turns_until_done(writer) == []  # refused while parsing: nobody to answer

        assert store.counts()["spooled_notifications"] == 0
        assert store.counts()["incidents"] == 0
        assert "alerts[0].labels.team" in caplog.text  # the ERROR says why
        assert writer.resume_spooled() is None
    finally:
        store.close()
