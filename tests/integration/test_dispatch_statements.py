"""The SQL one action costs the dispatcher, claim to outcome and runbook follow-up, on a
real SQLite journal (the statements as SQLite runs them, seen by its trace callback),
with the real dispatcher in the test's thread and the `log` executor.

The finish and its follow-up use the rows their caller already holds (the action as
claimed, the strategy's name): these tests fail if one of those reads comes back."""

from __future__ import annotations

import re
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import open_store
from tests.support.configs import RESTART_ON_SERVICE_DOWN
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG = parse_config(RESTART_ON_SERVICE_DOWN)
T = 1_800_000_000.0
#: Statements of one action (claim, outcome, the run's end) besides the running totals
#: (TOTALS_PER_ACTION) and the transactions' BEGIN/COMMIT; counted from the list in the
#: test below.
STATEMENTS_PER_ACTION = 16
#: Running-total rows of one action (one per series counted), all in one upsert
#: statement (totals.upserts): its outcome
#: (remediator_actions_total), its runbook step and run, and for each of its two
#: histograms (action duration, time to remediate) the ONE bucket row its value falls in
#: plus _sum and _count: 3 + 2 x 3. Histograms stored cumulative (before schema revision
#: 0005) wrote every bucket at or above the value: 18 here (a 2 s action: 10 + 1 bucket
#: rows), up to 3 + (13 + 2) + (14 + 2) = 34, besides the 16 statements above.
TOTALS_PER_ACTION = 9


@pytest.fixture
def store(tmp_path) -> Any:
    opened = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    yield opened
    opened.close()


def _shape(sql: str) -> str:
    """A statement with its values taken out (SQLite's trace shows them inline)."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", " ".join(sql.split()))
    return re.sub(r"\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\b", "?", sql)


def _statements_per_action(store: Any) -> tuple[Counter[str], Counter[str]]:
    """Statements run to carry out each of two actions on the same target: the first
    writes what is written once per target (its breaker row, its label value)."""
    for n in range(2):
        labels = {"service": "web", "instance": f"i-{n}"}
        ingest(store, CONFIG, parse_notification(notification(alert(**labels))), T + n)
    ticks = iter(T + 10 + i for i in range(1000))
    dispatcher = Dispatcher(SimpleNamespace(config=CONFIG), store, clock=lambda: next(ticks))
    found: list[Counter[str]] = []
    for _ in range(2):
        seen: Counter[str] = Counter()
        store._connection().set_trace_callback(lambda sql, seen=seen: seen.update([_shape(sql)]))
        try:
            assert dispatcher.run_once() is True
        finally:
            store._connection().set_trace_callback(None)
        found.append(seen)
    statuses = [a["status"] for a in store.list_actions(limit=10).items]
    assert statuses == ["succeeded", "succeeded"]
    return found[0], found[1]


def test_the_action_row_is_read_once_by_its_claim_not_again_by_its_finish(store) -> None:
    _, seen = _statements_per_action(store)
    reads = {sql: n for sql, n in seen.items() if re.match(r"SELECT .* FROM actions a", sql)}
    # the claim's scan; neither the outcome's totals nor the run's follow-up re-read it
    assert list(reads.values()) == [1], reads
    assert not any("SELECT strategy FROM runbook_runs" in sql for sql in seen), seen


def test_a_known_breaker_is_read_and_updated_once_by_the_finish(store) -> None:
    _, seen = _statements_per_action(store)
    breakers = {sql: n for sql, n in seen.items() if "breakers" in sql}
    assert sorted(breakers.items()) == [
        ("SELECT state FROM breakers WHERE strategy = ? AND target = ?", 2),  # claim, finish
        ("UPDATE breakers SET state = ?, updated_at = ? WHERE strategy = ? AND target = ?", 1),
    ]


def test_a_new_breaker_is_inserted_by_the_first_outcome_without_an_update_first(store):
    first, _ = _statements_per_action(store)
    breakers = {sql: n for sql, n in first.items() if "breakers" in sql}
    assert sorted(breakers.items()) == [
        ("INSERT INTO breakers (strategy, target, state, updated_at) VALUES (?, ?, ?, ?)", 1),
        ("SELECT state FROM breakers WHERE strategy = ? AND target = ?", 2),  # claim, finish
    ]


def test_one_action_costs_a_bounded_number_of_statements(store) -> None:
    _, seen = _statements_per_action(store)
    counted = {
        sql: n
        for sql, n in seen.items()
        if not sql.startswith(("INSERT INTO metric_totals", "BEGIN", "COMMIT"))
    }
    listing = "\n".join(f"{n} {sql}" for sql, n in sorted(counted.items()))
    assert sum(counted.values()) <= STATEMENTS_PER_ACTION, listing


def test_one_action_adds_to_one_bucket_row_of_each_histogram(store) -> None:
    _, seen = _statements_per_action(store)
    upserts = {sql: n for sql, n in seen.items() if sql.startswith("INSERT INTO metric_totals")}
    assert sum(upserts.values()) == 1, upserts  # one statement
    rows = sum(n * sql.count("(?, ?, ?)") for sql, n in upserts.items())
    assert rows == TOTALS_PER_ACTION, upserts


def test_a_new_label_value_costs_a_look_at_the_labels_last_and_an_insert(store) -> None:
    first, second = _statements_per_action(store)
    admissions = {sql: n for sql, n in first.items() if "metric_label_values" in sql}
    # its target and its strategy, first seen by the first outcome (the service by ingest)
    new = store._read("SELECT label, value FROM metric_label_values WHERE label != 'service'")
    assert len(new) == 2, new
    assert admissions == {
        "SELECT seq FROM metric_label_values WHERE label = ? ORDER BY seq DESC LIMIT ?": 2,
        "INSERT INTO metric_label_values (label, value, seq) VALUES (?, ?, ?) "
        "ON CONFLICT (label, value) DO NOTHING": 2,
    }  # no COUNT of the label's values, no second look at the value
    assert not any("metric_label_values" in sql for sql in second)  # known to this process
