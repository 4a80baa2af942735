"""MTTR and availability from the journal's per-service window aggregates
(store/servicewindows.py) equal the figures computed from every incident, on real
SQLite and PostgreSQL journals.

The reference is the computation /metrics ran before the aggregates: every incident
firing or ending in the window, read from the incidents table, passed to
reliability.figures (the definition). Incidents are random: overlapping, nested, long,
firing, ending on bucket edges and on the window's edge, ending before they start,
starting after the scrape's `now`, and closed out of order, by every close path the
journal has (a resolution, recorded closed, several in one transaction)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver import reliability
from receiver.store import open_store
from receiver.store.base import NewIncident
from receiver.store.labels import OTHER, fold_label_set
from receiver.store.servicewindows import BUCKET_SECONDS
from receiver.store.sql import iso

pytestmark = pytest.mark.integration

DAY = 86400.0
#: a bucket edge, so that windows ending near it put `since` on and around edges
T = 1_800_000_000.0 - (1_800_000_000.0 % BUCKET_SECONDS)


def new_incident(number: int, service: str, start: float, end: float | None) -> NewIncident:
    return NewIncident(
        fingerprint=f"fp-{number}",
        starts_at=iso(start) or "",
        starts_at_ts=start,
        alertname="Down",
        service=service,
        status="firing" if end is None else "resolved",
        labels={"alertname": "Down", "service": service},
        annotations={},
        generator_url="",
        seen_at=start,
        matched=False,
        ends_at=iso(end),
        ends_at_ts=end,
    )


def reference(store: Any, window: float, now: float) -> dict[str, reliability.ServiceFigures]:
    """The figures as /metrics computed them from every incident of the window."""
    admitted = store.admitted_label_values()
    rows = store._read(
        "SELECT service, starts_at_ts, ends_at_ts FROM incidents "
        "WHERE status = 'firing' OR ends_at_ts >= ?",
        (now - window,),
    )
    intervals: dict[str, list[tuple[float, float | None]]] = {}
    for service, start, end in rows:
        name = fold_label_set({"service": service}, admitted)["service"]
        intervals.setdefault(name, []).append((start, end))
    return {name: reliability.figures(spans, window, now) for name, spans in intervals.items()}


def reference_services(store: Any) -> list[str]:
    """The services /metrics listed: admitted ones with an incident, `other` for any else."""
    admitted = store.admitted_label_values().get("service", set())
    found = {row[0] for row in store._read("SELECT service FROM incidents")}
    return sorted({name if name in admitted else OTHER for name in found})


def aggregated(store: Any, window: float, now: float) -> dict[str, reliability.ServiceFigures]:
    facts = store.service_facts(now - window, now, store.admitted_label_values())
    return {
        name: reliability.window_figures(found, window, now)
        for name, found in facts["windows"].items()
    }


def assert_same_figures(store: Any, window: float, now: float) -> None:
    expected = reference(store, window, now)
    found = aggregated(store, window, now)
    for name in set(expected) | set(found):
        want = expected.get(name, reliability.figures([], window, now))
        got = found.get(name, reliability.figures([], window, now))
        assert got.incidents == want.incidents, (name, now, got, want)
        assert got.mttr == pytest.approx(want.mttr, rel=1e-9, abs=1e-6), (name, now)
        assert got.downtime == pytest.approx(want.downtime, rel=1e-9, abs=1e-6), (name, now)
        assert got.availability == pytest.approx(want.availability, rel=1e-9, abs=1e-12)


def random_incidents(rng: random.Random, count: int) -> list[tuple[str, float, float | None]]:
    """(service, start, end or None while firing) of every shape the figures meet.
    `web` and `cache` never fire at the end, so their downtime is all closed incidents'
    union; `api` and `db` also have firing incidents, started recently or after T."""
    found = []
    for _ in range(count):
        service = rng.choice(["api", "db", "web", "cache"])
        start = T - rng.uniform(0, 3 * DAY)
        shape = rng.random()
        if shape < 0.4:
            end = start + rng.uniform(0, 900)  # short
        elif shape < 0.5:
            end = start + rng.uniform(3600, 8 * 3600)  # long: across many buckets
        elif shape < 0.6:  # on bucket edges
            start = start - start % BUCKET_SECONDS
            end = start + BUCKET_SECONDS * rng.randint(0, 4)
        elif shape < 0.65:
            end = start - rng.uniform(1, 600)  # a resolved alert ending before its start
        elif shape < 0.72:  # starting after some of the checks' `now`
            start = T + rng.uniform(-300, 3600)
            end = start + rng.uniform(0, 600)
        elif shape < 0.8 and service in ("api", "db"):
            start, end = T - rng.uniform(-600, 6 * 3600), None  # firing
        else:
            end = start + rng.uniform(0, 3600)  # medium
        found.append((service, start, end))
    return found


def journal(store: Any, rng: random.Random, incidents: list, check_at: list[float]) -> None:
    """Journal the incidents: some recorded closed, some opened then resolved later in
    shuffled order (several per transaction); the figures are checked between batches."""
    opened: list[tuple[int, float]] = []
    with store.transaction() as tx:
        for number, (service, start, end) in enumerate(incidents):
            recorded_closed = end is not None and rng.random() < 0.4
            incident_id = tx.insert_incident(
                new_incident(number, service, start, end if recorded_closed else None)
            )
            if end is not None and not recorded_closed:
                opened.append((incident_id, end))
    rng.shuffle(opened)
    while opened:
        size = rng.randint(1, 6)
        batch, opened = opened[:size], opened[size:]
        with store.transaction() as tx:
            for incident_id, end in batch:
                tx.resolve_incident(incident_id, iso(end) or "", end, end)
        if rng.random() < 0.2:
            for now in check_at:
                assert_same_figures(store, DAY, now)


NOWS = [T, T + 150.0, T - 0.25, T + 1800.0, T + 4000.0, T + 299.999]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figures_equal_those_from_every_incident(store, seed: int) -> None:
    rng = random.Random(seed)
    journal(store, rng, random_incidents(rng, 160), NOWS[:2])
    for now in NOWS:
        for window in (DAY, 3600.0, 2 * DAY + 17.5):
            assert_same_figures(store, window, now)


def test_folded_services_share_one_union_as_before(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    store.label_values.bound = 1  # the first service seen admitted; the others: `other`
    rng = random.Random(7)
    journal(store, rng, random_incidents(rng, 120), [])
    (first,) = store.admitted_label_values()["service"]
    assert set(aggregated(store, DAY, T)) == {first, OTHER} == set(reference(store, DAY, T))
    for now in NOWS:
        assert_same_figures(store, DAY, now)
    facts = store.service_facts(T - DAY, T, store.admitted_label_values())
    assert facts["services"] == reference_services(store) == sorted([first, OTHER])


def test_the_services_listed_are_those_with_incidents(store) -> None:
    store.label_values.bound = 2
    with store.transaction() as tx:
        tx.insert_incident(new_incident(1, "web", T - 100, T - 50))
        tx.insert_incident(new_incident(2, "db", T - 10 * DAY, None))  # out of any window
    facts = store.service_facts(T - DAY, T, store.admitted_label_values())
    assert facts["services"] == reference_services(store) == ["db", "web"]
    with store.transaction() as tx:
        tx.insert_incident(new_incident(3, "zz-third", T - 100, None))  # past the bound
        tx.insert_incident(new_incident(4, "a-first", T - 100, None))
    facts = store.service_facts(T - DAY, T, store.admitted_label_values())
    assert facts["services"] == reference_services(store) == ["db", OTHER, "web"]


def test_a_journal_upgraded_to_the_aggregates_is_backfilled_to_the_same_figures(store) -> None:
    rng = random.Random(11)
    journal(store, rng, random_incidents(rng, 200), [])
    before = {now: aggregated(store, DAY, now) for now in NOWS}
    with store.transaction() as tx:  # the journal as the release before them wrote it
        for table in (
            "incident_window_services",
            "incident_window_buckets",
            "incident_downtime_segments",
        ):
            tx.execute(f"DROP TABLE {table}")
        tx.execute("UPDATE alembic_version SET version_num = '0002'")  # the revision before
    reopened = open_store(store.url)  # upgrades: revision 0003 backfills
    try:
        for now in NOWS:
            assert_same_figures(reopened, DAY, now)
            assert aggregated(reopened, DAY, now).keys() == before[now].keys()
        # and it keeps counting closings from there
        with reopened.transaction() as tx:
            tx.insert_incident(new_incident(999, "api", T - 5000, T - 10))
        assert_same_figures(reopened, DAY, T)
    finally:
        reopened.close()


def test_pruned_aggregates_older_than_the_window_change_no_figure(store) -> None:
    from receiver.store import servicewindows

    rng = random.Random(5)
    journal(store, rng, random_incidents(rng, 160), [])
    deleted = []
    while not deleted or max(deleted[-1]) == 7:  # in small batches, oldest first
        with store.transaction() as tx:
            deleted.append(servicewindows.prune(tx.execute, T - DAY - 1000, batch=7))
        for now in (T, T + 150.0):
            assert_same_figures(store, DAY, now)
    assert len(deleted) > 2 and sum(b for b, _ in deleted) > 0 and sum(s for _, s in deleted) > 0
    for now in (T, T + 150.0, T + 1800.0):
        assert_same_figures(store, DAY, now)
    # closings after the prune, one reaching back before it, merge consistently
    with store.transaction() as tx:
        tx.insert_incident(new_incident(1000, "api", T - 2 * DAY, T - DAY + 500))
        tx.insert_incident(new_incident(1001, "db", T - 7200, T - 3600))
    for now in (T, T + 150.0):
        assert_same_figures(store, DAY, now)


def test_a_closing_before_every_kept_segment_continues_their_cover(store) -> None:
    """After a prune, an incident that covers the window's start and meets no kept
    segment takes its cover from the segment after it (no earlier one is left)."""
    from receiver.store import servicewindows

    with store.transaction() as tx:
        for number, start in enumerate((T - 3 * DAY, T - 2 * DAY, T - 1.5 * DAY)):
            tx.insert_incident(new_incident(number, "solo", start, start + 3600))
        tx.insert_incident(new_incident(10, "solo", T - 3600, T - 3000))
    with store.transaction() as tx:
        servicewindows.prune(tx.execute, T - DAY - 1000)
    with store.transaction() as tx:
        tx.insert_incident(new_incident(20, "solo", T - DAY - 100, T - DAY + 100))
    found = aggregated(store, DAY, T)["solo"]
    assert (found.incidents, found.downtime) == (2, pytest.approx(100.0 + 600.0))
    assert_same_figures(store, DAY, T)


class ReferenceCollector:
    """remediator_mttr_seconds, _availability_ratio, _service_health and _open_incidents
    as /metrics computed them before the aggregates: from every incident of the window."""

    def __init__(self, store: Any, window: float, now: float) -> None:
        self.store, self.window, self.now = store, window, now

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        admitted = self.store.admitted_label_values()

        def fold(service: str) -> str:
            return fold_label_set({"service": service}, admitted)["service"]

        figures = reference(self.store, self.window, self.now)
        latest: dict[str, list[tuple[Any, ...]]] = {}
        for service, status, reason, *runbook in self.store._read(
            "SELECT i.service, a.status, a.reason, a.step, r.status FROM incidents i "
            "LEFT JOIN actions a ON a.id = (SELECT MAX(id) FROM actions WHERE incident_id = i.id) "
            "LEFT JOIN runbook_runs r ON r.id = a.run_id WHERE i.status = 'firing'"
        ):
            latest.setdefault(fold(service), []).append((status or "none", reason or "", *runbook))
        mttr = GaugeMetricFamily("remediator_mttr_seconds", "", labels=("service",))
        availability = GaugeMetricFamily("remediator_availability_ratio", "", labels=("service",))
        health = GaugeMetricFamily("remediator_service_health", "", labels=("service", "status"))
        for service in reference_services(self.store):
            found = figures.get(service, reliability.figures([], self.window, self.now))
            mttr.add_metric([service], found.mttr)
            availability.add_metric([service], found.availability)
            current = reliability.health(service in latest, latest.get(service, []))
            for status in reliability.HEALTH_STATUSES:
                health.add_metric([service, status], 1.0 if status == current else 0.0)
        count = self.store._read("SELECT COUNT(*) FROM incidents WHERE status = 'firing'")[0][0]
        open_incidents = GaugeMetricFamily("remediator_open_incidents", "")
        open_incidents.add_metric([], count)
        yield from (mttr, availability, health, open_incidents)


def sample_lines(collector: Any) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    names = (
        "remediator_mttr_seconds",
        "remediator_availability_ratio",
        "remediator_service_health",
        "remediator_open_incidents",
    )
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith(names)]


def test_metrics_text_is_the_one_computed_from_every_incident(store) -> None:
    """Whole-second times: the sums are exact, so the text is identical, not close."""
    from receiver.alerts import parse_notification
    from receiver.config import parse_config
    from receiver.engine import ingest
    from receiver.metrics import JournalCollector
    from tests.support.configs import RESTART_ON_SERVICE_DOWN
    from tests.support.payloads import alert, notification

    config = parse_config(RESTART_ON_SERVICE_DOWN)
    rng = random.Random(21)
    incidents = [
        (service, float(round(start)), None if end is None else float(round(end)))
        for service, start, end in random_incidents(rng, 120)
    ]
    journal(store, rng, incidents, [])
    started = iso(T - 700)
    firing = alert(service="web", starts_at=started)  # a planned action: unhealthy
    ingest(store, config, parse_notification(notification(firing)), T - 650)
    resolved = alert(service="mail", status="resolved", starts_at=iso(T - 500), ends_at=iso(T - 80))
    ingest(store, config, parse_notification(notification(resolved)), T - 60)
    for now in (T, T + 150.0, T + 4000.0):
        collector = JournalCollector(store, lambda: config, clock=lambda now=now: now)
        expected = sample_lines(ReferenceCollector(store, config.defaults.mttr_window, now))
        assert sample_lines(collector) == expected
        assert any('service="mail"' in line for line in expected)
        assert any('service="web",status="unhealthy"} 1.0' in line for line in expected)


def test_stats_services_equal_those_from_every_incident(store) -> None:
    from receiver.config import parse_config
    from receiver.stats import orchestrator_stats
    from tests.support.configs import RESTART_ON_SERVICE_DOWN

    config = parse_config(RESTART_ON_SERVICE_DOWN)
    rng = random.Random(22)
    journal(store, rng, random_incidents(rng, 100), [])
    found = orchestrator_stats(store, config, now=T)["services"]
    expected = reference(store, DAY, T)
    assert sorted(found) == reference_services(store)
    for service, figures in expected.items():
        assert found[service]["incidents"] == figures.incidents
        assert found[service]["mttr_seconds"] == pytest.approx(figures.mttr, rel=1e-9)
        assert found[service]["downtime_seconds"] == pytest.approx(figures.downtime, rel=1e-9)
        assert found[service]["availability"] == pytest.approx(figures.availability, rel=1e-9)
