"""Issue 11 item 7: every label of every exported series is bounded.

`service`, `target` and `strategy` keep at most limits.max_label_values values; later
values are journaled and exported as `other`, counted by
remediator_label_values_folded_total{label}. Through a real `remediator serve`, and on
the journal itself on SQLite and PostgreSQL (admissions stable across a reopen).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from receiver.config import Limits, parse_config
from receiver.metrics import JournalCollector
from receiver.store import open_store, totals
from receiver.store.base import NewIncident
from receiver.store.labels import FOLDED_METRIC, OTHER
from receiver.store.totals import DURATION_BUCKETS
from tests.support.journal import open_journal, post_webhook, settle
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

DURATION = "remediator_incident_duration_seconds"
PER_SERVICE = (
    DURATION,
    "remediator_mttr_seconds",
    "remediator_availability_ratio",
    "remediator_service_health",
)
START = "2026-11-21T10:00:00Z"
END = "2026-11-21T10:05:00Z"
T0 = 1_800_000_000.0


def config_text(max_label_values: int | None) -> str:
    limits = (
        "" if max_label_values is None else f"limits: {{max_label_values: {max_label_values}}}\n"
    )
    return AUTH_SERVER + "  max_body_bytes: 4194304\n" + limits + LOG_RESTART


def scrape(url: str) -> dict[str, list[Any]]:
    """family name -> its samples, from a real scrape of /metrics."""
    response = requests.get(f"{url}/metrics", timeout=60)
    assert response.status_code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def values_of(samples: list[Any], label: str) -> set[str]:
    return {sample.labels[label] for sample in samples}


def folded(families: dict[str, list[Any]], label: str) -> float:
    (sample,) = [
        s
        for s in families[FOLDED_METRIC.removesuffix("_total")]
        if s.name == FOLDED_METRIC and s.labels["label"] == label
    ]
    return sample.value


# ---------------------------------------------------------------- a real server


def test_thirty_services_at_a_bound_of_ten_export_ten_and_other(tmp_path: Path) -> None:
    bound, services = 10, [f"svc{n:02d}" for n in range(30)]
    config = write_config(tmp_path, config_text(bound))
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as server:
        firing = [alert("ServiceDown", service=s, starts_at=START) for s in services]
        assert post_webhook(server.url, notification(*firing)).status_code == 200
        journal = open_journal(store_url)
        settle(journal, len(services))  # the restarts ran: their breakers exist
        resolved = [
            alert("ServiceDown", service=s, status="resolved", starts_at=START, ends_at=END)
            for s in services
        ]
        assert post_webhook(server.url, notification(*resolved)).status_code == 200
        families = scrape(server.url)
        breakers = journal.list_breakers()
        journal.close()
    first = set(services[:bound])  # the first values seen keep their own series
    for family in PER_SERVICE:
        assert values_of(families[family], "service") == first | {OTHER}, family
    other_count = [
        s.value
        for s in families[DURATION]
        if s.name == f"{DURATION}_count" and s.labels["service"] == OTHER
    ]
    assert other_count == [len(services) - bound]
    assert folded(families, "service") == len(services) - bound
    # targets come from the same label through the template: bounded the same way
    targets = values_of(families["remediator_breaker_state"], "target")
    assert len(breakers) == len(services)
    assert len(targets) == bound + 1 and OTHER in targets
    assert folded(families, "target") == len(services) - bound
    folded_breakers = [
        s.value
        for s in families["remediator_breaker_state"]
        if s.labels["target"] == OTHER and s.labels["state"] == "closed"
    ]
    assert folded_breakers == [len(services) - bound]  # how many folded breakers are closed


def test_three_thousand_services_at_the_default_bound(tmp_path: Path) -> None:
    """The issue's case: 3,000 services gave 48,000 incident-duration series."""
    services = [f"svc{n:04d}" for n in range(3000)]
    bound = Limits().max_label_values
    config = write_config(tmp_path, config_text(None))
    with remediator(tmp_path, config, f"sqlite:///{tmp_path / 'journal.db'}") as server:
        for start in range(0, len(services), 500):
            resolved = [
                alert("Unrouted", service=s, status="resolved", starts_at=START, ends_at=END)
                for s in services[start : start + 500]
            ]
            assert post_webhook(server.url, notification(*resolved)).status_code == 200
        families = scrape(server.url)
    samples = families[DURATION]
    per_series = len(DURATION_BUCKETS) + 1 + 2  # the buckets, +Inf, _count and _sum
    assert len(samples) == (bound + 1) * per_series
    assert len(values_of(samples, "service")) == bound + 1
    assert folded(families, "service") == len(services) - bound


# ---------------------------------------------------------------- the journal itself


@pytest.fixture
def journal(store_url: str) -> Iterator[Any]:
    store = open_store(store_url)
    yield store
    store.close()


def closed_incident(service: str, n: int) -> NewIncident:
    return NewIncident(
        f"fp-{next(SERIAL)}", f"2026-01-01T00:00:{n:02d}.000000Z", T0 + n, "Down", service,
        "resolved", {"service": service}, {}, "", T0 + n, False,
        ends_at="2026-01-01T01:00:00.000000Z", ends_at_ts=T0 + n + 60,
    )  # fmt: skip


SERIAL = itertools.count()  # incident keys never repeat across writes


def write_closed(store: Any, services: list[str]) -> None:
    incidents = [closed_incident(s, next(SERIAL) % 60) for s in services]
    store.write(lambda tx: [tx.insert_incident(i) for i in incidents])


def duration_counts(store: Any) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    config = parse_config("executors: {}\nstrategies: []\n")
    registry.register(JournalCollector(store, lambda: config, clock=lambda: T0 + 3600))
    families = {
        f.name: f.samples
        for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    return {
        s.labels["service"]: s.value for s in families[DURATION] if s.name == f"{DURATION}_count"
    }


def test_the_first_values_keep_their_series_and_the_rest_fold(journal: Any) -> None:
    journal.apply_limits(Limits(max_label_values=3))
    write_closed(journal, ["a", "b", "c", "d", "e", "a", OTHER])
    assert journal.admitted_label_values()["service"] == {"a", "b", "c"}
    assert duration_counts(journal) == {"a": 2, "b": 1, "c": 1, OTHER: 3}
    totals = journal.metric_totals()[FOLDED_METRIC]
    assert [v for labels, v in totals if labels == {"label": "service"}] == [2]  # d, e
    stored = {labels.get("service") for labels, _ in journal.metric_totals()[f"{DURATION}_count"]}
    assert stored == {"a", "b", "c", OTHER}  # the journal's totals are bounded too


def test_admissions_are_stable_across_a_reopen_and_a_lower_bound(
    journal: Any, store_url: str
) -> None:
    journal.apply_limits(Limits(max_label_values=3))
    write_closed(journal, ["c", "a", "b"])
    reopened = open_store(store_url)
    try:
        reopened.apply_limits(Limits(max_label_values=3))
        write_closed(reopened, ["z", "a"])  # z arrives last: it folds, a keeps its series
        assert duration_counts(reopened) == {"a": 2, "b": 1, "c": 1, OTHER: 1}
        reopened.apply_limits(Limits(max_label_values=2))  # b arrived last of the three
        assert duration_counts(reopened) == {"c": 1, "a": 2, OTHER: 2}
    finally:
        reopened.close()


#: the tables of the schema revisions after the baseline (0002, 0003)
LATER_TABLES = (
    "metric_total_shards",
    "action_slots",
    "incident_window_services",
    "incident_window_buckets",
    "incident_downtime_segments",
)


def test_a_journal_from_before_the_bound_exports_bounded(journal: Any, store_url: str) -> None:
    """Totals written before the bound existed are admitted in sorted order, once."""
    write_closed(journal, [f"s{n}" for n in range(5)])
    with journal.transaction() as tx:  # as a journal of a release before the bound:
        tx.execute("DELETE FROM metric_label_values")
        # its totals all in metric_totals (the shards came with schema revision 0002)
        tx.execute(
            "INSERT INTO metric_totals (metric, labels, value) "
            "SELECT metric, labels, SUM(value) FROM metric_total_shards "
            "GROUP BY metric, labels ON CONFLICT (metric, labels) "
            "DO UPDATE SET value = metric_totals.value + excluded.value"
        )
        # its histogram buckets cumulative, as releases before schema revision 0005
        # stored them (read_totals turns the stored per-bucket rows into those)
        stored = tx.execute("SELECT metric, labels, value FROM metric_totals").fetchall()
        for metric, series in totals.read_totals(stored).items():
            for labels, value in series if metric.endswith("_bucket") else ():
                tx.execute(
                    "UPDATE metric_totals SET value = ? WHERE metric = ? AND labels = ?",
                    (value, metric, totals.canonical_json(labels)),
                )
        for table in LATER_TABLES:  # and none of the later revisions' tables
            tx.execute(f"DROP TABLE {table}")
        tx.execute("DROP TABLE alembic_version")
    reopened = open_store(store_url)
    try:
        reopened.apply_limits(Limits(max_label_values=2))
        assert duration_counts(reopened) == {"s0": 1, "s1": 1, OTHER: 3}
    finally:
        reopened.close()


def seqs(store: Any) -> dict[str, int]:
    rows = store._read("SELECT value, seq FROM metric_label_values WHERE label = 'service'")
    return dict(rows)


def test_two_processes_number_a_labels_values_in_one_sequence(journal: Any, store_url: str) -> None:
    """Each process caches what it learnt; another process's admissions still count: a
    value it admitted keeps its number, the next value takes the number after it, and
    the bound is reached when the values of both processes reach it."""
    journal.apply_limits(Limits(max_label_values=4))
    write_closed(journal, ["a", "b"])
    other = open_store(store_url)  # as a second process: its own cache, empty
    try:
        other.apply_limits(Limits(max_label_values=4))
        write_closed(other, ["c", "a"])
        write_closed(journal, ["d", "c", "e"])  # `journal` never saw c; e is the fifth
        write_closed(other, ["f", "b"])
        assert seqs(journal) == {"a": 0, "b": 1, "c": 2, "d": 3}
        assert duration_counts(other) == {"a": 2, "b": 2, "c": 2, "d": 1, OTHER: 2}
    finally:
        other.close()
