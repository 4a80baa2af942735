"""An insert tells the new row's id, or that ON CONFLICT DO NOTHING left it out, on both
stores: SQLite from its cursor (lastrowid, rowcount), PostgreSQL with RETURNING id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.store.base import NewIncident
from tests.support.stores import BACKENDS, opened_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with opened_store(request.param, tmp_path) as opened:
        yield opened


def incident(fingerprint: str) -> NewIncident:
    return NewIncident(
        fingerprint=fingerprint,
        starts_at="2026-11-30T10:00:00.000000Z",
        starts_at_ts=1_796_032_800.0,
        alertname="Down",
        service="cart",
        status="firing",
        labels={"alertname": "Down", "service": "cart"},
        annotations={},
        generator_url="",
        seen_at=1_796_032_860.0,
        matched=True,
    )


def test_each_new_incident_gets_the_id_of_its_row(store: Any) -> None:
    with store.transaction() as tx:
        ids = [tx.insert_incident(incident(f"f{n}")) for n in range(3)]
        rows = tx.execute("SELECT id, fingerprint FROM incidents ORDER BY id").fetchall()
    assert [(i, f"f{n}") for n, i in enumerate(ids)] == [tuple(row) for row in rows]


def test_an_incident_whose_key_is_journaled_is_left_out_and_has_no_id(store: Any) -> None:
    with store.transaction() as tx:
        first = tx.insert_incident(incident("f1"))
    with store.transaction() as tx:
        again = tx.insert_incident(incident("f1"))
        count = tx.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
        after = tx.insert_incident(incident("f2"))
    assert (first, again, count) == (1, None, 1)
    assert after is not None and after > first
