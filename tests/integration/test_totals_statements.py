"""The running totals written several series per statement (totals.upserts) make the
same journal, and so the same /metrics, as one statement per series did: one sequence of
transactions is written to two journals, once each way, on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from receiver.config import Limits, parse_config
from receiver.metrics import JournalCollector
from receiver.store import open_store, totals
from receiver.store.base import NewIncident
from receiver.store.totals import ActionFacts
from tests.support.journals import Journal
from tests.support.stores import BACKENDS, journal_url

T0 = 1_800_000_000.0
BOUND = 3  # limits.max_label_values: the later services fold into `other`
SERVICES = ["web", "db", "cache", "queue", "web", "search"]
#: finished actions: (status, seconds it ran), each of strategy restart, action run
ACTIONS = [("succeeded", 0.3), ("succeeded", 40.0), ("failed", 2.0), ("skipped", 0.0)] * 3
TABLES = ("metric_totals", "metric_total_shards", "metric_label_values")


def incident(serial: int, service: str) -> NewIncident:
    return NewIncident(
        f"fp-{serial}", f"2026-01-01T00:00:{serial:02d}.000000Z", T0 + serial, "Down",
        service, "resolved", {"service": service}, {}, "", T0 + serial, False,
        ends_at="2026-01-01T01:00:00.000000Z", ends_at_ts=T0 + serial + 90,
    )  # fmt: skip


def count_actions(tx: Any) -> None:
    """Every finished action of ACTIONS, in one transaction: the same series many times."""
    for n, (status, seconds) in enumerate(ACTIONS):
        started = T0 + 100 + n
        facts = ActionFacts("restart", "run", started, started + seconds, T0, 1, 7)
        totals.count_action_final(tx, n + 1, status, "cooldown: 60s", facts)
        totals.count_run_end(tx, "restart", "cured" if status == "succeeded" else "uncured")


def build(url: str) -> bytes:
    """Write the sequence to the journal at `url`; its /metrics, read at a fixed time."""
    store = open_store(url)
    try:
        store.apply_limits(Limits(max_label_values=BOUND))
        # more series in one transaction than one statement takes
        store.seed_metrics([("restart", "run"), ("scale", "http")], [("restart", 2)], ["scale"])
        store.write(lambda tx: totals.count_alerts(tx, 3, 0))
        store.write(lambda tx: [tx.insert_incident(incident(n, s)) for n, s in enumerate(SERVICES)])
        store.write(count_actions)
        store.write(lambda tx: totals.count_intake(tx, {"invalid_alert": 2}, 1))
        store.write(lambda tx: totals.count_alerts(tx, 1, 2))
        return scrape(store)
    finally:
        store.close()


def scrape(store: Any) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    config = parse_config("executors: {}\nstrategies: []\n")
    registry.register(JournalCollector(store, lambda: config, clock=lambda: T0 + 3600))
    return generate_latest(registry)


@pytest.fixture(params=BACKENDS)
def two_journals(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        journal_url(request.param, tmp_path / "a") as a,
        journal_url(request.param, tmp_path / "b") as b,
    ):
        yield a, b


def test_a_journal_written_several_series_a_statement_is_the_one_written_one_a_statement(
    two_journals: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    batched, single = two_journals
    batched_metrics = build(batched)
    monkeypatch.setattr(totals, "UPSERT_ROWS", 1)  # one statement per series, as before
    single_metrics = build(single)
    backend = "sqlite" if batched.startswith("sqlite") else "postgres"
    batched_rows = {
        t: Journal(backend, batched).query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES
    }
    single_rows = {
        t: Journal(backend, single).query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES
    }
    assert batched_rows == single_rows
    assert batched_metrics == single_metrics
    # and what both say is the sequence's own count, not two empty journals alike
    runs = sum(1 for status, _ in ACTIONS if status == "succeeded")
    series = 'remediator_actions_total{action="run",outcome="succeeded",strategy="restart"}'
    assert f"{series} {runs:.1f}\n".encode() in batched_metrics
