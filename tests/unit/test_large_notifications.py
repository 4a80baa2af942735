"""Large notifications journaled in chunks (issue 11, item 3): the pure pieces.

- the worker skips PROGRESS replies however they arrive, so a wait that the writer
  keeps advancing never becomes a timeout (receiver/writer/protocol.py);
- a notification journaled chunk by chunk writes what it would have written whole,
  and running a chunk again adds nothing (receiver/engine.py journal_work);
- a chunk that fails after the notification was spooled is accepted, saying how many
  alerts are queued (receiver/intake.py queued);
- the spool's claims and advances (receiver/store/spool.py): who may take a row, and
  that only the writer holding a row at the expected alert can advance it.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.engine import IngestSummary, journal_work
from receiver.intake import Answer, queued
from receiver.store import spool
from receiver.store.sqlite import SqliteStore
from receiver.writer.protocol import pack_progress, pack_reply, read_reply

CONFIG = """
executors: {logger: {type: log}}
strategies:
  - name: restart
    matchers: ['alertname="Down"']
    action: restart
    executor: logger
    target: '{{ labels.n }}'
"""


def _send_in_two(sock: socket.socket, data: bytes, cut: int) -> None:
    sock.sendall(data[:cut])
    threading.Event().wait(0.01)
    sock.sendall(data[cut:])


@pytest.mark.parametrize("cut", [1, 5, 10, 25, 35, -1])
def test_progress_replies_are_skipped_whether_they_arrive_alone_or_with_the_answer(cut):
    answer = Answer(200, b'{"status": "ok"}' * 5000, 0)
    stream = pack_progress() * 3 + pack_reply(answer)
    progress: list[int] = []
    left, right = socket.socketpair()
    with left, right:
        sender = threading.Thread(target=_send_in_two, args=(left, stream, cut))
        sender.start()
        assert read_reply(right, progress.append) == answer
        sender.join()
    assert progress == [b""] * 3


def test_a_progress_reply_carries_the_fallback_answer_once_spooled():
    """Before the spool, a progress reply's body is empty; after, the 200 already true."""
    fallback = queued(IngestSummary(alerts=500, new_incidents=500), 700).body
    answer = Answer(200, b'{"status": "ok"}')
    stream = pack_progress() + pack_progress(fallback) * 2 + pack_reply(answer)
    seen: list[bytes] = []
    left, right = socket.socketpair()
    with left, right:
        left.sendall(stream)
        assert read_reply(right, seen.append) == answer
    assert seen == [b"", fallback, fallback]
    assert json.loads(seen[-1])["queued_alerts"] == 700


def test_each_progress_reply_restarts_the_receive_timeout():
    """Receive timeout 0.5 s, the answer after 1.5 s with progress every 0.2 s."""
    left, right = socket.socketpair()
    with left, right:
        right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 500_000))

        def slow() -> None:
            for _ in range(7):
                left.sendall(pack_progress())
                threading.Event().wait(0.2)
            left.sendall(pack_reply(Answer(200, b"{}")))

        sender = threading.Thread(target=slow)
        sender.start()
        assert read_reply(right) == Answer(200, b"{}")
        sender.join()


def test_silence_longer_than_the_receive_timeout_is_still_an_error():
    left, right = socket.socketpair()
    with left, right:
        right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        left.sendall(pack_progress())
        with pytest.raises(OSError):
            read_reply(right)


def _notification(count: int, status: str = "firing"):
    alerts = [
        {
            "status": status,
            "labels": {"alertname": "Down", "n": f"n{i}"},
            "startsAt": "2026-11-21T10:00:00Z",
            "endsAt": "2026-11-21T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        }
        for i in range(count)
    ]
    return parse_notification({"alerts": alerts, "status": status})


def _chunked(store, config, notification, size: int) -> IngestSummary:
    summary = IngestSummary()
    for start in range(0, len(notification.alerts), size):
        part = slice(start, min(start + size, len(notification.alerts)))
        work = journal_work(config, notification, 1.0, part, summary)
        summary = summary.plus(store.write(work))
    return summary


@pytest.fixture
def journals(tmp_path: Path):
    stores = [SqliteStore(f"sqlite:///{tmp_path / name}.db") for name in ("whole", "chunked")]
    yield stores
    for store in stores:
        store.close()


def test_chunks_journal_what_one_transaction_would(journals):
    whole_store, chunked_store = journals
    config = parse_config(CONFIG)
    notification = _notification(23)
    whole = whole_store.write(journal_work(config, notification, 1.0))
    chunked = _chunked(chunked_store, config, notification, 5)
    assert chunked == whole
    assert chunked.alerts == 23 and chunked.actions_planned == 23
    assert chunked_store.counts() == whole_store.counts()
    assert chunked_store.counts()["notifications"] == 1  # recorded once, by the last chunk
    assert chunked_store.metric_totals() == whole_store.metric_totals()


def test_the_notification_row_holds_the_whole_counts(journals):
    _, store = journals
    config = parse_config(CONFIG)
    _chunked(store, config, _notification(12, "resolved"), 5)
    with store.transaction(write=False) as tx:
        sql = "SELECT alerts, firing, resolved, summary FROM notifications"
        ((alerts, firing, resolved, summary),) = tx.execute(sql).fetchall()
    assert (alerts, firing, resolved) == (12, 0, 12)
    assert json.loads(summary)["resolved"] == 12


def test_a_chunk_run_again_plans_nothing_new(journals):
    _, store = journals
    config = parse_config(CONFIG)
    notification = _notification(10)
    first = store.write(journal_work(config, notification, 1.0, slice(0, 5)))
    again = store.write(journal_work(config, notification, 2.0, slice(0, 5)))
    assert (first.new_incidents, first.actions_planned) == (5, 5)
    assert (again.new_incidents, again.duplicates, again.actions_planned) == (0, 5, 0)
    assert store.counts()["actions"] == 5


def test_a_failed_chunk_of_a_spooled_notification_is_accepted_with_the_rest_queued():
    journaled = IngestSummary(alerts=1500, new_incidents=1400, duplicates=100, actions_planned=7)
    answer = queued(journaled, 46493 - 1500)
    body = json.loads(answer.body)
    assert answer.status == 200
    assert (body["alerts"], body["queued_alerts"]) == (1500, 46493 - 1500)
    assert {k: body[k] for k in journaled.as_dict()} == journaled.as_dict()
    assert answer.actions_planned == 7
    assert "queued durably" in body["message"]


ME, OTHER = "host-a:100:aaaa", "host-b:200:bbbb"


@pytest.mark.parametrize(
    ("claimed_by", "heartbeat_at", "gone", "expected"),
    [
        (None, None, False, True),  # spooled by nobody alive: anyone
        (ME, 999.0, False, True),  # its own, e.g. after a failed chunk
        (OTHER, 1000.0 - spool.STALE_AFTER_S + 1, False, False),  # held, fresh
        (OTHER, 1000.0 - spool.STALE_AFTER_S - 1, False, True),  # held, stale
        (OTHER, 999.0, True, True),  # its owner died on this host
    ],
)
def test_who_may_claim_a_spool_row(claimed_by, heartbeat_at, gone, expected):
    assert spool.claimable(claimed_by, heartbeat_at, ME, 1000.0, gone) is expected


@pytest.mark.parametrize(
    ("claimed_by", "alive", "expected"),
    [
        ("host-a:100:x", False, True),
        ("host-a:100:x", True, False),
        ("host-b:100:x", False, False),  # another host: only its heartbeat tells
        ("garbage", False, False),
    ],
)
def test_an_owner_is_gone_only_when_its_process_on_this_host_is(claimed_by, alive, expected):
    assert spool.owner_gone(claimed_by, "host-a", lambda pid: alive) is expected


def test_this_process_is_alive_and_a_reaped_child_is_not():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert spool.pid_alive(os.getpid())
    assert not spool.pid_alive(int(child.stdout))


@pytest.fixture
def journal(tmp_path: Path):
    store = SqliteStore(f"sqlite:///{tmp_path / 'spool.db'}")
    yield store
    store.close()


def _spooled(store) -> list[tuple]:
    with store.transaction(write=False) as tx:
        sql = "SELECT id, next_alert, summary, claimed_by FROM spooled_notifications"
        return [tuple(row) for row in tx.execute(sql).fetchall()]


def test_each_chunk_advances_the_spool_row_and_the_last_deletes_it(journal):
    with journal.transaction() as tx:
        row_id = spool.insert(tx, 5.0, b'{"alerts": []}', 1200, ME, 10.0)
    for start, stop in [(0, 500), (500, 1000)]:
        with journal.transaction() as tx:
            spool.advance(tx, row_id, ME, start, stop, 1200, {"alerts": stop}, 11.0)
    assert _spooled(journal) == [(row_id, 1000, '{"alerts": 1000}', ME)]
    with journal.transaction() as tx:
        spool.advance(tx, row_id, ME, 1000, 1200, 1200, {"alerts": 1200}, 12.0)
    assert _spooled(journal) == []


@pytest.mark.parametrize(("owner", "start"), [(OTHER, 0), (ME, 500)])
def test_only_the_holder_at_the_expected_alert_advances_a_row(journal, owner, start):
    with journal.transaction() as tx:
        row_id = spool.insert(tx, 5.0, b"{}", 1200, ME, 10.0)
    with pytest.raises(spool.ClaimLost), journal.transaction() as tx:
        spool.advance(tx, row_id, owner, start, start + 500, 1200, {}, 11.0)
    assert _spooled(journal) == [(row_id, 0, "{}", ME)]


def test_a_claim_is_taken_only_if_unchanged_since_it_was_read(journal):
    with journal.transaction() as tx:
        row_id = spool.insert(tx, 5.0, b"body", 1200, OTHER, 10.0)
    with journal.transaction() as tx:
        ((_, was, beat),) = spool.candidates(tx)
    with journal.transaction() as tx:  # someone else moves it meanwhile
        spool.advance(tx, row_id, OTHER, 0, 500, 1200, {"alerts": 500}, 11.0)
    with journal.transaction() as tx:
        assert spool.claim(tx, row_id, was, beat, ME, 30.0) is None
    with journal.transaction() as tx:
        ((_, was, beat),) = spool.candidates(tx)
        row = spool.claim(tx, row_id, was, beat, ME, 30.0)
    assert row == spool.SpooledRow(row_id, 5.0, b"body", 1200, 500, {"alerts": 500})
    assert _spooled(journal)[0][3] == ME
