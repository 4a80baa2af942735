"""Schema revision 0009's partial indexes on a real journal (SQLite and PostgreSQL): they
hold only the rows whose column is set, an action outside any fleet and an open incident
write no entry to them, and the queries that read them still use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.engine import ingest
from tests.support.payloads import alert, notification
from tests.support.stores import opened_store

T = 1_800_000_000.0
CONFIG = """
defaults: {cooldown: 0s}
executors:
  dry: {type: log}
strategies:
  - name: restart-host
    matchers: ['alertname="HostDown"']
    action: restart
    executor: dry
    target: '{{ labels.instance }}'
"""
PARTIAL = {
    "actions_by_fleet": "fleet",
    "runbook_runs_by_escalation": "escalation",
    "runbook_runs_by_repeat": "repeat_at",
    "incidents_by_end": "ends_at_ts",
}
# (index, a query of the shape the store runs: the column compared, never IS NULL)
READERS = [
    (
        "actions_by_fleet",
        "SELECT COUNT(DISTINCT target) FROM actions WHERE strategy = 's' AND fleet = 'f' "
        "AND status = 'running'",
    ),
    (
        "runbook_runs_by_escalation",
        "SELECT id FROM runbook_runs WHERE escalation = 'pending' ORDER BY id LIMIT 10",
    ),
    (
        "runbook_runs_by_repeat",
        "SELECT id FROM runbook_runs WHERE repeat_at IS NOT NULL AND repeat_at <= 5 "
        "ORDER BY repeat_at LIMIT 10",
    ),
    (
        "incidents_by_end",
        "SELECT service, COUNT(*), SUM(duration_seconds) FROM incidents "
        "WHERE ends_at_ts >= 1 AND ends_at_ts < 2 AND starts_at_ts <= 3 GROUP BY service",
    ),
    (
        "incidents_by_end",
        "SELECT ends_at_ts, id FROM incidents WHERE ends_at_ts < 9 AND status <> 'firing' "
        "AND (ends_at_ts > 0 OR (ends_at_ts = 0 AND id > 0)) ORDER BY ends_at_ts, id LIMIT 5",
    ),
]


def _dialect(store: Any) -> str:
    return "postgresql" if store.url.startswith("postgresql") else "sqlite"


def _rows(store: Any, sql: str) -> list[tuple[Any, ...]]:
    with store.transaction(write=False) as tx:
        if _dialect(store) == "postgresql":
            tx.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask for the index
        return tx.execute(sql).fetchall()


def _definition(store: Any, index: str) -> str:
    if _dialect(store) == "postgresql":
        sql = (
            "SELECT indexdef FROM pg_indexes "
            f"WHERE indexname = '{index}' AND schemaname = current_schema()"
        )
    else:
        sql = f"SELECT sql FROM sqlite_master WHERE type = 'index' AND name = '{index}'"
    rows = _rows(store, sql)
    assert len(rows) == 1, f"{index}: {rows}"
    return " ".join(rows[0][0].split())


@pytest.mark.parametrize("index", sorted(PARTIAL))
def test_each_index_holds_only_the_rows_whose_column_is_set(store: Any, index: str) -> None:
    definition = _definition(store, index)
    assert (
        definition.upper()
        .replace("(", "")
        .replace(")", "")
        .endswith(f"WHERE {PARTIAL[index]} IS NOT NULL".upper())
    ), definition


@pytest.mark.parametrize(("index", "query"), READERS)
def test_the_queries_that_read_them_still_use_them(store: Any, index: str, query: str) -> None:
    rows = _rows(store, f"EXPLAIN {_explain(store)}{query}")
    plan = " ".join(str(cell) for row in rows for cell in row)
    assert index in plan, plan


def _explain(store: Any) -> str:
    return "" if _dialect(store) == "postgresql" else "QUERY PLAN "


def test_an_action_outside_any_fleet_and_an_open_incident_add_no_entry(tmp_path: Path) -> None:
    """SQLite's dbstat counts each index's entries (cells of its leaf pages)."""
    with opened_store("sqlite", tmp_path) as store:
        config = parse_config(CONFIG)
        for i in range(20):
            payload = notification(alert("HostDown", instance=f"web-{i}"))
            ingest(store, config, parse_notification(payload), T + i)
        counts = dict(
            _rows(
                store,
                "SELECT name, SUM(ncell) FROM dbstat WHERE pagetype = 'leaf' GROUP BY name",
            )
        )
    assert counts["actions"] == counts["incidents"] == counts["runbook_runs"] == 20
    assert {index: counts.get(index, 0) for index in PARTIAL} == dict.fromkeys(PARTIAL, 0)
