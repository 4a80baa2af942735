"""bench.replicas's instruments against real processes: replicas of `remediator serve` on
one throwaway database of the local PostgreSQL, the spread client and the journal check
that decides the row's `ok`."""

from __future__ import annotations

import psycopg
import pytest

from bench import replicas
from tests.support.postgres import POSTGRES_URL


def test_a_throwaway_database_is_made_for_the_run_and_dropped_after() -> None:
    with replicas.postgres_database(POSTGRES_URL) as url:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, connect_timeout=5) as connection:
            assert connection.execute("SELECT current_database()").fetchone()[0] == name
    with psycopg.connect(POSTGRES_URL, connect_timeout=5) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert found is None


def test_three_replicas_journal_and_act_on_every_notification_once() -> None:
    notifications = 60
    row = replicas.measure(3, notifications, POSTGRES_URL, keep=False)
    assert row["answers"] == {"200": notifications}
    journal = row["journal"]
    assert journal["notifications"] == journal["incidents"] == journal["actions"] == notifications
    assert journal["actions_by_status"] == {"succeeded": notifications}
    assert journal["max_actions_per_incident"] == 1
    assert row["ok"] is True
    # rates from the rounded seconds agree to rounding (0.1/s of the rate, 1 ms of time)
    assert row["ingest_per_s"] == pytest.approx(notifications / row["ingest_s"], rel=0.01)
    assert row["dispatch_s"] >= row["ingest_s"]  # both from the first POST; awaited after
    assert row["dispatch_per_s"] == pytest.approx(notifications / row["dispatch_s"], rel=0.01)


def test_a_row_whose_journal_lacks_actions_is_not_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict reads the journal: a bench whose strategy plans nothing fails it."""
    unmatched = replicas.STRATEGIES.replace(replicas.ALERTNAME, "NothingMatchesThis")
    monkeypatch.setattr(replicas, "STRATEGIES", unmatched)
    row = replicas.measure(1, 20, POSTGRES_URL, keep=False, settle_timeout=3.0)
    assert row["journal"]["actions"] == 0
    assert row["ok"] is False
