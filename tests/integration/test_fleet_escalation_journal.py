"""The fleet's ONE escalation in the journal (store/fleets.py), on each backend: a run
that fails while the escalation is being posted is counted into it and re-owed, never
overwritten by the post's "sent" (else Alertmanager's alert would never count it)."""

from __future__ import annotations

from typing import Any

import pytest

from receiver import fleets
from receiver.store import fleets as fleet_journal

NOW = 1_800_000_000.0
LEASE = 60.0


@pytest.fixture(autouse=True)
def owed(store: Any) -> None:
    """Fleet `web` of strategy `heal` owes its escalation (on each backend: conftest)."""
    store.change(
        lambda tx: fleet_journal.save(tx, "heal", fleets.FleetState("web"), None, "idle", NOW)
    )
    store.change(
        lambda tx: fleet_journal.owe_escalation(
            tx, "heal", "web", {"fleet": "web", "summary": "web-01 failed"}, NOW
        )
    )


def claim(store: Any, now: float) -> list[fleet_journal.FleetEscalation]:
    return store.change(lambda tx: fleet_journal.claim_escalations(tx, now, LEASE))


def record(store: Any, leased: fleet_journal.FleetEscalation, delivered: str | None) -> None:
    store.change(lambda tx: fleet_journal.record_escalation(tx, leased, delivered, "posted"))


def state(store: Any) -> str:
    with store.transaction(write=False) as tx:
        return tx.execute("SELECT escalation FROM fleets WHERE fleet = 'web'").fetchone()[0]


def test_a_delivered_escalation_is_sent_and_not_claimed_again(store: Any) -> None:
    [leased] = claim(store, NOW)
    record(store, leased, fleet_journal.SENT)
    assert state(store) == fleet_journal.SENT
    assert claim(store, NOW + 2 * LEASE) == []


def test_a_run_covered_while_posting_stays_owed_with_the_newer_summary(store: Any) -> None:
    [leased] = claim(store, NOW)
    assert store.change(lambda tx: fleet_journal.cover(tx, "heal", "web", "web-02", "exit 1"))

    record(store, leased, fleet_journal.SENT)  # the post of the older summary returns

    assert state(store) == fleet_journal.PENDING
    [again] = claim(store, NOW + 1)  # the cover ended the first lease: no wait for it
    assert again.summary[fleet_journal.FAILED_SINCE] == 1
    assert again.summary[f"{fleet_journal.FAILED_SINCE}_targets"] == ["web-02"]
    record(store, again, fleet_journal.SENT)
    assert state(store) == fleet_journal.SENT


def test_a_failed_post_keeps_it_owed_for_the_next_lease(store: Any) -> None:
    [leased] = claim(store, NOW)
    record(store, leased, None)
    assert state(store) == fleet_journal.PENDING
    assert claim(store, NOW + 1) == []  # still leased
    assert len(claim(store, NOW + LEASE + 1)) == 1
