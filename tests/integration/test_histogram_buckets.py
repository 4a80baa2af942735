"""Histograms stored per bucket, on real journals (SQLite and the machine's PostgreSQL).

One script of observations (action durations, times to remediate, incident durations)
is written twice: by the store's own counting code (per bucket), and as the code before
schema revision 0005 wrote it (every cumulative bucket at or above the value; on
PostgreSQL spread over shard rows too) into a journal at revision 0004, which opening
the store then upgrades. Both journals' /metrics histograms must be the same text, byte
for byte, with the cumulative bucket counts computed here from the script."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from receiver.config import parse_config
from receiver.metrics import HISTOGRAMS, JournalCollector
from receiver.store import migrate, open_store, schema, totals
from tests.support.configs import RESTART_ON_SERVICE_DOWN
from tests.support.stores import BACKENDS, journal_url

pytestmark = pytest.mark.integration

CONFIG = parse_config(RESTART_ON_SERVICE_DOWN)
T = 1_800_000_000.0
STRATEGY, ACTION = "restart-web", "restart"
#: (action duration, time to remediate) of each succeeded action, in seconds: on a
#: bound, between bounds, below the first and above the last
ACTIONS = [(0.0, 3.0), (0.05, 15.0), (0.1, 15.5), (0.7, 100.0), (5.0, 600.0), (4000.0, 9e4)]
#: incident durations per service, seconds
INCIDENTS = {"web": [1.0, 20.0, 20.0, 7200.5], "db": [0.5, 100000.0]}
ACTION_METRIC = "remediator_action_duration_seconds"
REMEDIATE_METRIC = "remediator_time_to_remediate_seconds"
INCIDENT_METRIC = "remediator_incident_duration_seconds"


def action_facts(duration: float, remediate: float) -> totals.ActionFacts:
    """A succeeded action's row: started at 0 (exact durations), its alert `remediate`
    seconds before its end."""
    return totals.ActionFacts(STRATEGY, ACTION, 0.0, duration, duration - remediate, None, None)


def observations() -> list[tuple[str, dict[str, str], float, tuple[float, ...]]]:
    """The script: (histogram, labels, value, bounds) in order, each value as the
    counting code derives it from the action's row."""
    found = []
    for facts in (action_facts(*pair) for pair in ACTIONS):
        duration = facts.finished_at - facts.started_at
        remediate = facts.finished_at - facts.alert_start
        labels = {"strategy": STRATEGY, "action": ACTION}
        found.append((ACTION_METRIC, labels, duration, totals.ACTION_BUCKETS))
        found.append((REMEDIATE_METRIC, {"strategy": STRATEGY}, remediate, totals.DURATION_BUCKETS))
    for service, durations in INCIDENTS.items():
        for duration in durations:
            found.append((INCIDENT_METRIC, {"service": service}, duration, totals.DURATION_BUCKETS))
    return found


def write_per_bucket(store: Any) -> None:
    """The script through the store's own counting code, one transaction per event."""
    for duration, remediate in ACTIONS:
        with store.transaction() as tx:
            totals.count_action_final(tx, 0, "succeeded", "", action_facts(duration, remediate))
    for service, durations in INCIDENTS.items():
        for duration in durations:
            with store.transaction() as tx:
                totals.count_incident_closed(tx, service, duration)


@contextmanager
def connected(backend: str, url: str) -> Iterator[tuple[Any, str]]:
    """A plain driver connection to the journal and its placeholder."""
    if backend == "sqlite":
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        marker = "?"
    else:
        connection = psycopg.connect(url)
        marker = "%s"
    try:
        yield connection, marker
        connection.commit()
    finally:
        connection.close()


def write_cumulative(backend: str, url: str) -> None:
    """The script as the code before revision 0005 wrote it: an observation adds 1 to
    every bucket whose bound is >= its value (+Inf included), and to _sum and _count;
    the bounded label values admitted. On PostgreSQL the i-th observation's rows go to
    shard i % 3, every fourth to metric_totals (a journal older than the shards)."""
    with connected(backend, url) as (connection, marker):
        upsert_total = (
            f"INSERT INTO metric_totals (metric, labels, value) VALUES ({marker}, {marker}, "
            f"{marker}) ON CONFLICT (metric, labels) DO UPDATE "
            "SET value = metric_totals.value + excluded.value"
        )
        upsert_shard = (
            "INSERT INTO metric_total_shards (metric, labels, shard, value) VALUES "
            f"({marker}, {marker}, {marker}, {marker}) ON CONFLICT (metric, labels, shard) "
            "DO UPDATE SET value = metric_total_shards.value + excluded.value"
        )
        for index, (metric, labels, value, bounds) in enumerate(observations()):
            rows = [
                (f"{metric}_bucket", totals.canonical_json({**labels, "le": totals.le(b)}), 1.0)
                for b in (*bounds, math.inf)
                if value <= b
            ]
            rows.append((f"{metric}_sum", totals.canonical_json(labels), value))
            rows.append((f"{metric}_count", totals.canonical_json(labels), 1.0))
            if backend == "sqlite" or index % 4 == 0:
                connection.cursor().executemany(upsert_total, rows)
            else:
                sharded = [(metric, labels, index % 3, value) for metric, labels, value in rows]
                connection.cursor().executemany(upsert_shard, sharded)
        admitted = [("service", "db", 0), ("service", "web", 1), ("strategy", STRATEGY, 0)]
        connection.cursor().executemany(
            f"INSERT INTO metric_label_values (label, value, seq) VALUES ({marker}, {marker}, "
            f"{marker})",
            admitted,
        )


def histogram_text(store: Any) -> str:
    """The /metrics exposition's lines of the histograms (HELP, TYPE and samples)."""
    registry = CollectorRegistry()
    registry.register(JournalCollector(store, lambda: CONFIG, clock=lambda: T))
    text = generate_latest(registry).decode()
    return "\n".join(line for line in text.splitlines() if any(name in line for name in HISTOGRAMS))


def expected_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every histogram sample the script gives, by the rule: bucket `le` counts the
    observations <= le, _sum adds them up, _count counts them."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    script = observations()
    series = {
        (metric, tuple(sorted(labels.items())), bounds) for metric, labels, _, bounds in script
    }
    for metric, labels, bounds in series:
        values = [
            v for m, lab, v, _ in script if m == metric and tuple(sorted(lab.items())) == labels
        ]
        for bound in (*bounds, math.inf):
            key = tuple(sorted((*labels, ("le", totals.le(bound)))))
            found[f"{metric}_bucket", key] = float(sum(v <= bound for v in values))
        found[f"{metric}_sum", labels] = sum(values)
        found[f"{metric}_count", labels] = float(len(values))
    return found


def parsed_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text + "\n")
        for sample in family.samples
    }


@pytest.fixture(params=BACKENDS)
def two_journals(request, tmp_path: Path) -> Iterator[tuple[str, Any, Any, str]]:
    """(backend, a store written per bucket, a store upgraded from cumulative rows, the
    upgraded journal's URL)."""
    new_dir, old_dir = tmp_path / "new", tmp_path / "old"
    new_dir.mkdir()
    old_dir.mkdir()
    backend = request.param
    with journal_url(backend, new_dir) as new_url, journal_url(backend, old_dir) as old_url:
        new = open_store(new_url)
        write_per_bucket(new)
        migrate.upgrade(old_url, "0004")
        write_cumulative(backend, old_url)
        old = open_store(old_url)  # upgraded to head here
        try:
            yield backend, new, old, old_url
        finally:
            new.close()
            old.close()


def test_observations_export_the_cumulative_buckets_of_the_rule(two_journals) -> None:
    _, new, _, _ = two_journals
    assert parsed_samples(histogram_text(new)) == expected_samples()


def test_a_journal_of_cumulative_rows_upgraded_exports_the_same_text(two_journals) -> None:
    backend, new, old, old_url = two_journals
    assert old.schema_revision() == schema.HEAD
    assert histogram_text(old) == histogram_text(new)
    assert parsed_samples(histogram_text(old)) == expected_samples()
    with connected(backend, old_url) as (connection, _):
        shards = connection.cursor().execute(
            "SELECT COUNT(*) FROM metric_total_shards WHERE metric LIKE '%bucket'"
        )
        assert shards.fetchone()[0] == 0  # folded into metric_totals, per bucket


def test_the_upgraded_journal_counts_new_observations_as_the_new_one(two_journals) -> None:
    """After the upgrade each observation adds to one bucket row of either journal: the
    cumulative buckets go on growing alike."""
    _, new, old, _ = two_journals
    for store in (new, old):
        with store.transaction() as tx:
            totals.count_incident_closed(tx, "web", 45.0)
    text = histogram_text(old)
    assert text == histogram_text(new)
    found = parsed_samples(text)
    for bound in (*totals.DURATION_BUCKETS, math.inf):
        key = (("le", totals.le(bound)), ("service", "web"))
        before = sum(v <= bound for v in INCIDENTS["web"])
        assert found[f"{INCIDENT_METRIC}_bucket", key] == before + (bound >= 45.0)
