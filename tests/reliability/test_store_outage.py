"""Store outage: the journal cannot write -> 503 (so Alertmanager retries), nothing
half-written, and recovery as soon as it can write again.

How the outage is made, for real, although the tests run as root (root ignores chmod):

- disk full: the SQLite journal lives on a small ext4 filesystem, loop-mounted for the
  test (tests/support/loopfs.py); a filler file takes every free block. A notification
  that needs the write-ahead log to grow then fails with SQLITE_FULL.
- read-only: `chattr +i` on the database and its WAL, on that same ext4 filesystem; ext4
  refuses writes to immutable files even through descriptors opened before. (A tmpfs
  `mount -o remount,ro` is refused while the server holds the files open for writing,
  and tmpfs does not enforce +i on open files; the -shm file is left alone because it is
  memory-mapped, and a write fault there is a SIGBUS, not an error SQLite can report.)
- write lock: another connection holds SQLite's write lock past the busy timeout (works
  without mount, e.g. another process or a backup holding the journal).

The disk-full and read-only cases need `mount -o loop` (root, loop devices) and are
skipped with the reason where that is not permitted; the write-lock case always runs.
After the outage every check compares the journal with exactly the notifications that
got a 200: row counts, incident keys, one action per incident, and SQLite's
integrity_check.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from receiver.alerts import format_timestamp, parse_timestamp
from tests.support.journal import (
    all_incidents,
    incident_keys,
    open_journal,
    post_webhook,
    settle,
    wait_for,
)
from tests.support.payloads import alert, notification
from tests.support.processes import Running, alertmanager, alertmanager_config, remediator
from tests.support.receiver import write_config

CONFIG = """
server:
  auth: {bearer_token_file: token}
  max_body_bytes: 8388608
defaults:
  cooldown: 0s
executors:
  logger: {type: log}
strategies:
  - name: restart-any
    matchers: ['alertname=~".+"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
"""


def outage_alert(instance: str, **labels: str) -> dict[str, Any]:
    return alert("Outage", instance=instance, starts_at="2026-08-01T00:00:00Z", **labels)


def big_notification(prefix: str, alerts: int = 24) -> dict[str, Any]:
    """About 3 MB of labels: more than the write-ahead log has room for, so it must grow."""
    blob = {f"blob{i}": "x" * 16000 for i in range(8)}
    return notification(*(outage_alert(f"{prefix}-{n}", **blob) for n in range(alerts)))


class Ledger:
    """Every POST and its answer, to compare the journal with what got a 200."""

    def __init__(self, server: Running) -> None:
        self.server = server
        self.accepted: list[dict[str, Any]] = []
        self.answers: list[int] = []

    def post(self, body: dict[str, Any]) -> requests.Response:
        response = post_webhook(self.server.url, body, timeout=30)
        self.answers.append(response.status_code)
        if response.status_code == 200:
            self.accepted.append(body)
        return response

    def expected_keys(self) -> set[tuple[str, str]]:
        return {
            (a["fingerprint"], iso_key(a["startsAt"])) for b in self.accepted for a in b["alerts"]
        }


def iso_key(starts_at: str) -> str:
    return format_timestamp(parse_timestamp(starts_at, "startsAt"))


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"status": "error", "error": "journal unavailable, retry later"}


def assert_journal_matches(ledger: Ledger, journal: Any, db: Path) -> None:
    """The journal holds exactly what got a 200: nothing lost, nothing half-written."""
    counts = journal.counts()
    assert counts["notifications"] == len(ledger.accepted)
    keys = incident_keys(journal)
    assert set(keys) == ledger.expected_keys()
    assert set(keys.values()) == {1}
    actions = settle(journal, expected=len(keys), timeout=30)
    assert sorted(a["incident_id"] for a in actions) == sorted(
        i["id"] for i in all_incidents(journal)
    )
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


@contextmanager
def journal_server(directory: Path, workdir: Path) -> Iterator[tuple[Running, Any, Path]]:
    config = write_config(workdir, CONFIG)
    db = directory / "journal.db"
    store_url = f"sqlite:///{db}"
    journal = open_journal(store_url)
    try:
        with remediator(workdir, config, store_url) as server:
            yield server, journal, db
    finally:
        journal.close()  # the test's own connection must not keep the filesystem busy


def test_disk_full_is_503_and_nothing_half_written(tmp_path: Path, loopfs) -> None:
    with journal_server(loopfs.path, tmp_path) as (server, journal, db):
        ledger = Ledger(server)
        assert ledger.post(notification(outage_alert("before-1"), outage_alert("before-2"))).ok
        settle(journal, expected=2)

        wal = Path(f"{db}-wal").stat().st_size
        big = big_notification("big")
        assert len(str(big)) > wal + (1 << 20)  # it cannot fit in the log's current size
        written = loopfs.fill()
        assert written > 0 and loopfs.free_bytes() < 64 * 1024
        assert_unavailable(ledger.post(big))
        assert_unavailable(ledger.post(big))  # Alertmanager's retry, still full
        never_retried = big_notification("lost", alerts=20)
        assert_unavailable(ledger.post(never_retried))
        assert server.process.poll() is None

        loopfs.unfill()
        assert ledger.post(big).status_code == 200
        assert ledger.post(notification(outage_alert("after-1"))).status_code == 200
        assert server.process.poll() is None
        assert_journal_matches(ledger, journal, db)
        assert not any(i["labels"]["instance"].startswith("lost-") for i in all_incidents(journal))


def test_read_only_journal_is_503_then_recovers(tmp_path: Path, loopfs) -> None:
    with journal_server(loopfs.path, tmp_path) as (server, journal, db):
        ledger = Ledger(server)
        first = notification(outage_alert("ro-1"), outage_alert("ro-2"))
        assert ledger.post(first).status_code == 200
        settle(journal, expected=2)

        loopfs.freeze("journal.db", "journal.db-wal")
        pending = notification(outage_alert("ro-3"), outage_alert("ro-1"))
        for _ in range(12):  # more than the server's threads: each one meets the outage
            assert_unavailable(ledger.post(pending))
        assert_unavailable(ledger.post(first))  # even a duplicate cannot be journaled
        assert_unavailable(ledger.post(notification(outage_alert("ro-lost"))))
        assert server.process.poll() is None

        loopfs.thaw()
        for _ in range(12):  # every thread writes again, none kept a read-only connection
            assert ledger.post(pending).status_code == 200
        assert ledger.post(notification(outage_alert("ro-4"))).status_code == 200
        assert_journal_matches(ledger, journal, db)


def test_write_lock_held_elsewhere_is_503_then_recovers(tmp_path: Path) -> None:
    """Works without mount: another connection holds SQLite's write lock (BEGIN
    IMMEDIATE) longer than the server's busy timeout (5 s)."""
    with journal_server(tmp_path, tmp_path) as (server, journal, db):
        ledger = Ledger(server)
        assert ledger.post(notification(outage_alert("lock-1"))).status_code == 200
        settle(journal, expected=1)
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            assert_unavailable(ledger.post(notification(outage_alert("lock-2"))))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert ledger.post(notification(outage_alert("lock-2"))).status_code == 200
        assert_journal_matches(ledger, journal, db)


def test_alertmanager_retries_through_a_read_only_journal(tmp_path: Path, loopfs) -> None:
    """The point of the 503: a real Alertmanager keeps the notification and delivers it
    once the journal can write again, exactly once."""
    with journal_server(loopfs.path, tmp_path) as (server, journal, db):
        am_config = alertmanager_config(
            f"{server.url}/webhook", credentials_file=tmp_path / "token"
        )
        with alertmanager(tmp_path / "am", am_config) as am:
            loopfs.freeze("journal.db", "journal.db-wal")
            started = "2026-08-02T00:00:00Z"
            sent = [{"labels": {"alertname": "Outage", "instance": "am-1"}, "startsAt": started}]
            assert requests.post(f"{am.url}/api/v2/alerts", json=sent, timeout=5).ok
            wait_for(lambda: failed_deliveries(am) >= 1, 20, "Alertmanager to meet the 503")
            assert journal.counts()["notifications"] == 0
            loopfs.thaw()
            wait_for(lambda: journal.counts()["notifications"] >= 1, 30, "the retried delivery")
            time.sleep(2)  # group_interval 1s: later flushes must add no incident
        incidents = all_incidents(journal)
        assert [(i["labels"]["instance"], i["status"]) for i in incidents] == [("am-1", "firing")]
        assert len(settle(journal, expected=1)) == 1
        with sqlite3.connect(db) as check:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def failed_deliveries(am: Running) -> float:
    text = requests.get(f"{am.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("alertmanager_notifications_failed_total")
        and 'integration="webhook"' in line
    )
