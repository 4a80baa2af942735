"""What a scrape's MTTR, availability and health cost does not grow with the incidents
in the window: two real SQLite journals, one with ten times the closed incidents of the
other (in and before the window), the same services, the same firing incidents and the
same closings in the window's partial edge bucket. The statements are counted with
SQLite's trace callback and the work with its progress handler (a call every 100
virtual-machine instructions): a deterministic measure, no clock.

The same measure applied to the query /metrics ran before the aggregates grows with the
journal, which shows that it would see a scan."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from receiver.store import open_store
from receiver.store.servicewindows import BUCKET_SECONDS
from tests.integration.test_service_windows import DAY, T, assert_same_figures, new_incident

pytestmark = pytest.mark.integration

NOW = T + 150.0  # the window starts 150 s into a bucket: a partial edge bucket
SINCE = NOW - DAY
SERVICES = ("api", "db", "web", "cache")
INSTRUCTIONS_PER_CALL = 100


def build(path: Path, closed_per_service: int) -> Any:
    """A journal: `closed_per_service` short incidents per service ending well inside the
    window and as many before it, plus the same edge closings and firing incidents."""
    store = open_store(f"sqlite:///{path}")
    rng = random.Random(3)
    number = 0
    with store.transaction() as tx:
        for index, service in enumerate(SERVICES):
            for _ in range(closed_per_service):
                for low, high in ((SINCE + 2 * BUCKET_SECONDS, NOW - 600), (SINCE - DAY, SINCE)):
                    end = rng.uniform(low, high)
                    number += 1
                    tx.insert_incident(
                        new_incident(number, service, end - rng.uniform(1, 600), end)
                    )
            for k in range(3):  # the edge bucket's closings: the same in both journals
                end = SINCE + 10 + 40 * k
                tx.insert_incident(new_incident(10**6 + 10 * k + index, service, end - 60, end))
        for k, service in enumerate(SERVICES[:2]):  # firing: the same in both
            tx.insert_incident(new_incident(2 * 10**6 + k, service, NOW - 900 - k, None))
    return store


def measured(store: Any, read: Callable[[], Any]) -> tuple[int, int]:
    """(statements, progress-handler calls) of `read` on the store's connection."""
    connection = store._connection()
    statements, steps = [0], [0]

    def count_step() -> int:
        steps[0] += 1
        return 0  # go on

    connection.set_trace_callback(lambda sql: statements.__setitem__(0, statements[0] + 1))
    connection.set_progress_handler(count_step, INSTRUCTIONS_PER_CALL)
    try:
        read()
    finally:
        connection.set_trace_callback(None)
        connection.set_progress_handler(None, 0)
    return statements[0], steps[0]


def scrape(store: Any) -> Callable[[], Any]:
    admitted = store.admitted_label_values()
    return lambda: store.service_facts(SINCE, NOW, admitted)


def old_scrape(store: Any) -> Callable[[], Any]:
    """The query MTTR and availability were computed from before the aggregates."""
    return lambda: store._read(
        "SELECT service, starts_at_ts, ends_at_ts FROM incidents "
        "WHERE status = 'firing' OR ends_at_ts >= ?",
        (SINCE,),
    )


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    root = tmp_path_factory.mktemp("journals")
    small, large = build(root / "small.db", 100), build(root / "large.db", 1000)
    yield small, large
    small.close()
    large.close()


def test_the_journals_differ_tenfold_and_give_the_same_figures_as_every_incident(journals):
    small, large = journals
    assert large.counts()["incidents"] > 9 * small.counts()["incidents"]
    for store in (small, large):
        assert_same_figures(store, DAY, NOW)


def test_a_scrape_runs_the_same_statements_whatever_the_journal_holds(journals):
    small, large = journals
    assert measured(small, scrape(small))[0] == measured(large, scrape(large))[0]


def test_a_scrape_does_the_same_work_on_ten_times_the_incidents(journals):
    small, large = journals
    _, small_steps = measured(small, scrape(small))
    _, large_steps = measured(large, scrape(large))
    # index seeks are one level deeper in the larger journal, nothing more
    assert large_steps <= 1.25 * small_steps, (small_steps, large_steps)


def test_the_measure_sees_the_scan_the_old_query_did(journals):
    small, large = journals
    _, small_steps = measured(small, old_scrape(small))
    _, large_steps = measured(large, old_scrape(large))
    assert large_steps >= 5 * small_steps, (small_steps, large_steps)
