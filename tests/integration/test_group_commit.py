"""Group commit (receiver/store/group.py) on real SQLite files and a real PostgreSQL
server: writers that arrive together share one transaction, each gets its own result
only once it is committed, and one failing piece of work never takes the others down
or leaves anything half-written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.engine import ingest
from receiver.store import StoreUnavailable
from receiver.store.base import NewIncident
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG = parse_config("executors: {logger: {type: log}}\nstrategies: []\n")
T = 1_800_000_000.0


def incident(name: str, service: str = "api") -> NewIncident:
    return NewIncident(
        fingerprint=name,
        starts_at="2026-01-01T00:00:00.000000Z",
        starts_at_ts=T,
        alertname="Test",
        service=service,
        status="firing",
        labels={"alertname": "Test"},
        annotations={},
        generator_url="",
        seen_at=T,
        matched=False,
    )


def insert(name: str, service: str = "api") -> Callable[[Any], int]:
    return lambda tx: tx.insert_incident(incident(name, service))


def fingerprints(store: Any) -> set[str]:
    return {i["fingerprint"] for i in store.list_incidents(limit=1000).items}


def totals(store: Any, metric: str) -> dict[str, float]:
    return {
        ",".join(f"{k}={v}" for k, v in sorted(labels.items())): value
        for labels, value in store.metric_totals().get(metric, [])
    }


class Writers:
    """Threads that each call store.write once; a first, slow one holds its batch open
    until the others are queued behind it, so the test decides how writes group."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.release = threading.Event()
        self.results: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, work: Callable[[Any], Any]) -> None:
        def run() -> None:
            try:
                self.results[name] = self.store.write(work)
            except Exception as exc:  # the outcome under test
                self.results[name] = exc

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def hold_first_batch(self) -> None:
        entered = threading.Event()

        def slow(tx: Any) -> int:
            entered.set()
            assert self.release.wait(10)
            return tx.insert_incident(incident("first"))

        self.start("first", slow)
        assert entered.wait(10)

    def queue(self, works: dict[str, Callable[[Any], Any]]) -> None:
        for name, work in works.items():
            self.start(name, work)
        deadline = time.monotonic() + 10
        while self.store.writes.waiting < len(works):
            assert time.monotonic() < deadline, "writers never queued"
            time.sleep(0.005)

    def finish(self) -> dict[str, Any]:
        self.release.set()
        for thread in self.threads:
            thread.join(10)
        return self.results


def test_writers_that_arrive_together_share_one_commit(store):
    writers = Writers(store)
    writers.hold_first_batch()
    writers.queue({f"w{i}": insert(f"w{i}") for i in range(5)})
    before = store.writes.batches
    assert fingerprints(store) == set()  # nothing visible while the first batch is open
    results = writers.finish()
    assert store.writes.batches - before == 1  # the five queued writes: one commit
    assert all(isinstance(r, int) for r in results.values()), results
    assert len(set(results.values())) == 6  # each writer got its own incident id
    assert fingerprints(store) == {"first", "w0", "w1", "w2", "w3", "w4"}


def test_a_failing_write_fails_alone_and_leaves_nothing(store):
    def broken(tx: Any) -> int:
        tx.insert_incident(incident("half"))  # written, then rolled back with the failure
        raise ValueError("bug in this piece of work")

    def bad_sql(tx: Any) -> None:
        tx.insert_incident(incident("half-too"))
        tx.execute("INSERT INTO no_such_table VALUES (1)")

    writers = Writers(store)
    writers.hold_first_batch()
    writers.queue(
        {"ok1": insert("ok1"), "broken": broken, "bad_sql": bad_sql, "ok2": insert("ok2")}
    )
    results = writers.finish()
    assert isinstance(results["broken"], ValueError)
    assert isinstance(results["bad_sql"], StoreUnavailable)  # a driver error: 503, retry
    assert isinstance(results["ok1"], int) and isinstance(results["ok2"], int)
    assert fingerprints(store) == {"first", "ok1", "ok2"}


def counting(firing: int) -> Callable[[Any], None]:
    return lambda tx: tx.count_alerts(firing=firing, resolved=1)


def test_running_totals_from_a_shared_commit_add_up(store):
    writers = Writers(store)
    writers.hold_first_batch()
    works = {f"n{i}": counting(firing=i) for i in range(4)}
    writers.queue(works)
    writers.finish()
    counted = totals(store, "remediator_alerts_received_total")
    assert counted == {"status=firing": 0 + 1 + 2 + 3, "status=resolved": 4}


def test_a_rolled_back_service_is_seeded_again(store):
    """The in-process memory of seeded services only learns from committed work."""

    def fails_after_seeding(tx: Any) -> None:
        tx.insert_incident(incident("gone", service="billing"))
        raise ValueError("rolled back")

    with pytest.raises(ValueError):
        store.write(fails_after_seeding)
    assert "service=billing" not in str(totals(store, "remediator_incident_duration_seconds_count"))
    store.write(insert("kept", service="billing"))
    counts = totals(store, "remediator_incident_duration_seconds_count")
    assert counts == {"service=billing": 0.0}  # the zero series exists for rate()


def test_concurrent_webhook_ingest_journals_every_notification_once(store):
    """Many threads ingesting at once (as gunicorn's do): every notification whole,
    once, whatever batches they fell into."""
    per_thread, threads = 25, 8

    def send(t: int) -> None:
        for i in range(per_thread):
            body = notification(
                alert(service=f"s{t}", instance=f"i{i}", starts_at="2026-01-01T00:00:00Z"),
                alert(service=f"s{t}", instance=f"j{i}", starts_at="2026-01-01T00:00:00Z"),
            )
            summary = ingest(store, CONFIG, parse_notification(body), T)
            assert summary.new_incidents == 2

    workers = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    counts = store.counts()
    assert counts["notifications"] == per_thread * threads
    assert counts["incidents"] == 2 * per_thread * threads
    received = totals(store, "remediator_alerts_received_total")
    assert received["status=firing"] == 2 * per_thread * threads
