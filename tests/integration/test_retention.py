"""Retention on a real journal (SQLite and PostgreSQL), with an injected clock.

The journal's past is built through the real ingest and dispatcher
(tests/support/retention.py says what it holds and what the rules must do with each
incident); then it is pruned "now": old rows gone, running totals and /metrics the
same, open and still-needed incidents kept, a dry run exact and harmless, batches short
and interleaved with other writers.
"""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from receiver import fleets, retention
from receiver.dispatcher import Dispatcher
from receiver.intake import LocalIntake
from receiver.metrics import JournalCollector
from receiver.stats import orchestrator_stats
from receiver.store import fleets as fleet_journal
from receiver.store import retention as prune_journal
from receiver.store import servicewindows
from receiver.store import totals as journal_totals
from receiver.store.retention import PRUNED_METRIC, TABLES
from tests.support.retention import (
    DAY,
    NOW,
    OLD_CLOSED,
    History,
    build_history,
    build_old_closed,
    config,
    count,
    firing,
    incident_ids,
    post,
    rows,
)

#: every table of the journal: a dry run must leave each one as it was
JOURNAL_TABLES = (
    "notifications",
    "incidents",
    "actions",
    "action_events",
    "runbook_runs",
    "metric_totals",
    "metric_label_values",
    "breakers",
    "targets",
    "fleets",
    "fleet_analyses",
    "spooled_notifications",
)


def cutoffs_at(config, now: float = NOW) -> retention.Cutoffs:
    window = retention.longest(retention.read_windows(config)).seconds
    return retention.cutoffs(config.retention, window, now)


def totals(store: Any) -> dict[tuple[str, str], float]:
    """Every running total, as the store reads them (on PostgreSQL: the row plus its
    shard rows, store/locks.py)."""
    with store.transaction(write=False) as tx:
        found = tx.execute(journal_totals.READ_SQL).fetchall()
    return {(metric, labels): value for metric, labels, value in found}


def metrics_text(store: Any, config, now: float = NOW) -> list[str]:
    """/metrics as the server renders it at `now`, without the pruned-rows counter."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JournalCollector(store, lambda: config, clock=lambda: now))
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "remediator_journal_pruned_rows" not in line]


def dependents(store: Any, incident_ids_: list[int]) -> dict[str, int]:
    """Rows of the incidents' actions, events and runs, counted in the journal."""
    marks = ", ".join("?" for _ in incident_ids_)
    actions = f"SELECT id FROM actions WHERE incident_id IN ({marks})"
    ids = tuple(incident_ids_)
    return {
        "actions": count(
            store, f"SELECT COUNT(*) FROM actions WHERE incident_id IN ({marks})", ids
        ),
        "action_events": count(
            store, f"SELECT COUNT(*) FROM action_events WHERE action_id IN ({actions})", ids
        ),
        "runbook_runs": count(
            store, f"SELECT COUNT(*) FROM runbook_runs WHERE incident_id IN ({marks})", ids
        ),
    }


def test_old_closed_incidents_go_with_their_rows_and_the_rest_is_kept(store):
    history = build_history(store)
    cutoffs = cutoffs_at(history.config)
    old_notifications = count(
        store, "SELECT COUNT(*) FROM notifications WHERE received_at < ?", (cutoffs.notifications,)
    )
    recent_notifications = count(
        store, "SELECT COUNT(*) FROM notifications WHERE received_at >= ?", (cutoffs.notifications,)
    )
    expected = {
        "notifications": old_notifications,
        "incidents": OLD_CLOSED,
        **dependents(store, history.pruned),
        "fleet_analyses": 0,
    }
    kept_rows = dependents(store, list(history.kept.values()))
    assert expected["actions"] == OLD_CLOSED and expected["runbook_runs"] == OLD_CLOSED

    done = prune_journal.prune(store, cutoffs, history.config.retention.batch_size)

    assert done.deleted == expected
    assert incident_ids(store) == set(history.kept.values())
    assert dependents(store, history.pruned) == {
        "actions": 0,
        "action_events": 0,
        "runbook_runs": 0,
    }
    assert dependents(store, list(history.kept.values())) == kept_rows
    assert count(store, "SELECT COUNT(*) FROM notifications") == recent_notifications
    # the open ones and their actions are as they were
    with store.transaction(write=False) as tx:
        statuses = dict(
            tx.execute(
                "SELECT i.service, a.status FROM incidents i JOIN actions a "
                "ON a.incident_id = i.id WHERE i.service IN ('queue', 'api', 'batch')"
            ).fetchall()
        )
    assert statuses == {"queue": "planned", "api": "running", "batch": "succeeded"}


def test_running_totals_are_unchanged_and_the_pruned_rows_are_counted(store):
    history = build_history(store)
    before = totals(store)

    done = prune_journal.prune(store, cutoffs_at(history.config), 5)

    after = totals(store)
    pruned = {key: value for key, value in after.items() if key[0] == PRUNED_METRIC}
    assert {key: value for key, value in after.items() if key[0] != PRUNED_METRIC} == before
    counted = {json_table(labels): value for (_, labels), value in pruned.items()}
    assert counted == {table: n for table, n in done.deleted.items() if n}
    assert done.total > 0


def json_table(labels: str) -> str:
    return json.loads(labels)["table"]


def test_metrics_and_stats_are_the_same_before_and_after_a_prune(store):
    history = build_history(store)
    before = metrics_text(store, history.config)
    assert any('remediator_mttr_seconds{service="lonely"}' in line for line in before)

    stats = orchestrator_stats(store, history.config, NOW)

    cutoffs = cutoffs_at(history.config)
    old_buckets = "SELECT COUNT(*) FROM incident_window_buckets WHERE bucket_start < ?"
    oldest_kept = (servicewindows.bucket_of(cutoffs.actions),)
    assert count(store, old_buckets, oldest_kept) > 0

    prune_journal.prune(store, cutoffs, 5)

    assert metrics_text(store, history.config) == before
    assert orchestrator_stats(store, history.config, NOW) == stats
    # the MTTR window aggregates older than every read went too (servicewindows.prune)
    assert count(store, old_buckets, oldest_kept) == 0


def test_pruned_rows_counter_shows_every_table_from_the_start(store):
    history = build_history(store)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JournalCollector(store, lambda: history.config, clock=lambda: NOW))
    text = generate_latest(registry).decode()
    for table in TABLES:
        assert f'remediator_journal_pruned_rows_total{{table="{table}"}} 0.0' in text


def test_dry_run_changes_nothing_and_counts_what_the_prune_then_deletes(store):
    history = build_history(store)
    cutoffs = cutoffs_at(history.config)
    before = {table: rows(store, table) for table in JOURNAL_TABLES}

    dry = prune_journal.prune(store, cutoffs, 5, delete=False)

    assert {table: rows(store, table) for table in JOURNAL_TABLES} == before
    done = prune_journal.prune(store, cutoffs, 5)
    assert dry.deleted == done.deleted
    assert dry.total == done.total > 0


def test_a_pass_is_many_short_transactions_and_another_writer_writes_between(store):
    history = build_history(store)
    cutoffs = cutoffs_at(history.config)
    batch = 5
    old = count(
        store, "SELECT COUNT(*) FROM notifications WHERE received_at < ?", (cutoffs.notifications,)
    )
    intake = LocalIntake(store, lambda: history.config)
    written: list[int] = []

    def write_between(pause: float) -> None:
        """Between two batches: another writer journals a notification, at once."""
        assert pause == retention.PAUSE
        post(intake, NOW, firing("Unmatched", "between", NOW - 60, str(len(written))))
        written.append(count(store, "SELECT COUNT(*) FROM incidents WHERE service = 'between'"))

    pruning = prune_journal.start(store, cutoffs, batch)
    prune_journal.advance(store, pruning, sleep=write_between)

    # each walk takes ceil(rows / batch) batches, and one more that finds fewer than a batch
    minimum = math.ceil(old / batch) + math.ceil(OLD_CLOSED / batch)
    assert pruning.batches >= minimum >= 8
    assert len(written) == pruning.batches - 1
    assert written == list(range(1, pruning.batches))  # each write committed between batches
    assert pruning.deleted["incidents"] == OLD_CLOSED


def test_a_pass_bounded_in_time_goes_on_where_it_stopped(store):
    history = build_history(store)
    cutoffs = cutoffs_at(history.config)
    pruning = prune_journal.start(store, cutoffs, 5)
    ticks = iter(range(1000))

    prune_journal.advance(
        store, pruning, budget=0.5, monotonic=lambda: next(ticks), sleep=lambda s: None
    )

    assert pruning.batches == 1 and not pruning.done  # the budget ended it after one batch
    prune_journal.advance(store, pruning, sleep=lambda s: None)
    assert pruning.done and pruning.deleted["incidents"] == OLD_CLOSED


def test_nothing_is_pruned_when_retention_is_off(store):
    history = build_history(store)
    off = retention.RetentionSettings(notifications=0, incidents=0)
    window = retention.longest(retention.read_windows(history.config)).seconds
    before = {table: rows(store, table) for table in JOURNAL_TABLES}

    done = prune_journal.prune(store, retention.cutoffs(off, window, NOW), 5)

    assert done.total == 0
    assert {table: rows(store, table) for table in JOURNAL_TABLES} == before


def test_housekeeping_prunes_soon_after_start_then_every_interval(store, caplog):
    history = build_history(store)
    clock = SimpleNamespace(now=NOW)
    dispatcher = Dispatcher(SimpleNamespace(config=history.config), store, clock=lambda: clock.now)
    caplog.set_level(logging.INFO, logger="receiver.dispatcher")

    assert dispatcher.prune() == 0  # the first pass comes 10 s after start
    clock.now = NOW + retention.Schedule.FIRST_PASS_AFTER
    deleted = 0
    for _ in range(100):  # each call runs batches for PRUNE_BUDGET at most: a slow
        deleted += dispatcher.prune()  # machine needs several calls for the pass
        if any("journal pruned" in r.getMessage() for r in caplog.records):
            break
    clock.now += 1
    again = dispatcher.prune()

    assert deleted > 0 and again == 0
    assert incident_ids(store) == set(history.kept.values())
    [line] = [r.getMessage() for r in caplog.records if "journal pruned" in r.getMessage()]
    assert f"incidents={OLD_CLOSED}" in line and "notifications=" in line
    # an interval later the next pass runs, and finds nothing more to delete
    post(LocalIntake(store, lambda: history.config), NOW, firing("Unmatched", "x", NOW - DAY))
    clock.now += history.config.retention.interval
    assert dispatcher.prune() == 0
    assert len([r for r in caplog.records if "journal pruned" in r.getMessage()]) == 1


FLEET_CONFIG = """
defaults: {cooldown: 0s, mttr_window: 1d}
retention: {notifications: 7d, incidents: 30d, batch_size: 5}
executors:
  logger: {type: log}
strategies:
  - name: restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}-{{ labels.instance }}'
    fleet: {max_in_flight: 2}
"""


def test_incidents_of_a_busy_fleet_are_kept_until_it_is_idle(store):
    history = build_history_fleet(store)
    with store.transaction(write=False) as tx:
        fleets_of_actions = {
            row[0] for row in tx.execute("SELECT DISTINCT fleet FROM actions").fetchall()
        }
    assert fleets_of_actions == {"web"}
    busy = fleets.FleetState("web", in_flight=("web-99",))
    store.change(lambda tx: fleet_journal.save(tx, "restart", busy, None, "test: busy", NOW))

    done = prune_journal.prune(store, cutoffs_at(history.config), 5)

    assert done.deleted["incidents"] == 0
    store.change(
        lambda tx: fleet_journal.save(tx, "restart", fleets.FleetState("web"), None, "idle", NOW)
    )
    done = prune_journal.prune(store, cutoffs_at(history.config), 5)
    assert done.deleted["incidents"] == OLD_CLOSED


def build_history_fleet(store):
    parsed = config(FLEET_CONFIG)
    pruned = build_old_closed(store, parsed, NOW)
    # a recent one keeps the service's series (the witness), so the old ones may go
    post(
        LocalIntake(store, lambda: parsed),
        NOW,
        firing("ServiceDown", "web", NOW - 60, "recent"),
    )
    return History(parsed, pruned, {})
