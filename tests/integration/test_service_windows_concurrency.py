"""Replicas closing incidents of one service at the same moment on PostgreSQL: the
per-service window aggregates (store/servicewindows.py) stay exact and never deadlock,
without any journal-wide lock.

Each "replica" is its own connection running the journal's own SqlTransaction (what a
store's write transaction wraps) on the machine's PostgreSQL, without the store's
journal-wide advisory lock: only the aggregates' own row lock per service orders them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from receiver.store import open_store
from receiver.store.sql import SqlTransaction, iso
from tests.integration.test_service_windows import DAY, T, assert_same_figures, new_incident
from tests.support.postgres import postgres_schema

pytestmark = pytest.mark.integration

HOLD = 0.6  # seconds the first replica keeps its transaction open after its closings


@pytest.fixture
def journal() -> Iterator[tuple[Any, str]]:
    with postgres_schema() as url:
        store = open_store(url)
        try:
            yield store, url
        finally:
            store.close()


def open_incidents(store: Any, spans: list[tuple[str, float, float]]) -> list[tuple[int, float]]:
    """Journal firing incidents; (id, its end to come) for each."""
    found = []
    with store.transaction() as tx:
        for number, (service, start, end) in enumerate(spans):
            found.append((tx.insert_incident(new_incident(number, service, start, None)), end))
    return found


def close_in_replica(
    url: str, closings: list[tuple[int, float]], started: threading.Event | None, hold: float
) -> float:
    """Close incidents in one transaction of a connection of its own; returns how long
    its commit phase (aggregates written, then commit) took, seconds."""
    with psycopg.connect(url) as connection:
        tx = SqlTransaction(connection.cursor(), "%s")
        for incident_id, end in closings:
            tx.resolve_incident(incident_id, iso(end) or "", end, end)
        began = time.monotonic()
        tx.flush_totals()  # the aggregates: takes each service's row lock
        if started is not None:
            started.set()
        time.sleep(hold)
        connection.commit()
        return time.monotonic() - began


def run_both(url: str, first: list, second: list) -> tuple[float, float]:
    started = threading.Event()
    took: dict[str, float] = {}

    def replica_one() -> None:
        took["one"] = close_in_replica(url, first, started, HOLD)

    one = threading.Thread(target=replica_one)
    one.start()
    assert started.wait(10)
    took["two"] = close_in_replica(url, second, None, 0.0)
    one.join(10)
    return took["one"], took["two"]


def test_two_replicas_closing_overlapping_incidents_of_one_service_count_each_once(journal):
    store, url = journal
    spans = [("api", T - 7200 + 300 * k, T - 5400 + 280 * k) for k in range(13)]
    opened = open_incidents(store, spans)
    close_in_replica(url, opened[-1:], None, 0.0)  # the service's aggregates exist already
    _, second_took = run_both(url, opened[0:-1:2], opened[1:-1:2])
    # the second waited for the first's commit: the service's row lock ordered them
    assert second_took >= HOLD * 0.8
    for now in (T, T + 150.0):
        assert_same_figures(store, DAY, now)


def test_replicas_closing_services_in_opposite_orders_do_not_deadlock(journal):
    """Rounds of two transactions started together, each closing incidents of ten
    services, in opposite orders: locks taken in the transactions' order would deadlock
    (PostgreSQL would abort one); the aggregates lock in sorted order."""
    store, url = journal
    services = [f"svc-{k}" for k in range(10)]
    rounds, per_service = 6, 4
    spans = [
        (service, T - 3600 - 60 * r - k, T - 1800 + 30 * r + k)
        for r in range(rounds)
        for service in services
        for k in range(2 * per_service)
    ]
    opened = open_incidents(store, spans)
    per_round = 2 * per_service * len(services)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def replica(closings_per_round: list[list[tuple[int, float]]]) -> None:
        try:
            with psycopg.connect(url) as connection:
                for closings in closings_per_round:
                    barrier.wait(10)
                    tx = SqlTransaction(connection.cursor(), "%s")
                    for incident_id, end in closings:
                        tx.resolve_incident(incident_id, iso(end) or "", end, end)
                    tx.flush_totals()
                    connection.commit()
        except BaseException as exc:  # reported below, with the round's state
            errors.append(exc)
            barrier.abort()

    rounds_one, rounds_two = [], []
    for r in range(rounds):
        chunk = opened[r * per_round : (r + 1) * per_round]
        rounds_one.append(chunk[0::2])  # half of each service's, services ascending
        rounds_two.append(list(reversed(chunk[1::2])))  # the others, services descending
    threads = [threading.Thread(target=replica, args=(x,)) for x in (rounds_one, rounds_two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for now in (T, T + 150.0):
        assert_same_figures(store, DAY, now)
