"""Large notifications journaled in chunks (issue 11, item 3): the pure pieces.

- the worker skips PROGRESS replies however they arrive, so a wait that the writer
  keeps advancing never becomes a timeout (receiver/writer/protocol.py);
- a notification journaled chunk by chunk writes what it would have written whole,
  and running a chunk again adds nothing (receiver/engine.py journal_work);
- a chunk that fails is answered with what was journaled (receiver/intake.py).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.engine import IngestSummary, journal_work
from receiver.intake import Answer, partly_failed
from receiver.store import StoreUnavailable
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
        assert read_reply(right, lambda: progress.append(1)) == answer
        sender.join()
    assert len(progress) == 3


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


def test_a_failed_chunk_says_what_was_journaled():
    answer = partly_failed(StoreUnavailable("disk full"), 1500, 46493)
    body = json.loads(answer.body)
    assert answer.status == 503
    assert (body["journaled_alerts"], body["alerts"]) == (1500, 46493)
    assert "alerts[0] to alerts[1499]" in body["error"]


def test_a_first_chunk_that_fails_is_a_plain_503():
    answer = partly_failed(StoreUnavailable("disk full"), 0, 46493)
    assert answer.status == 503
    assert "journaled_alerts" not in json.loads(answer.body)
