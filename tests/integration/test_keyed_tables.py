"""Schema revision 0010 on real journals: SQLite keeps action_events and breakers in their
key's own B-tree (WITHOUT ROWID), so an event or a new breaker writes one page, not two;
an action's events are numbered per action and read back in order on both backends,
also after a journal made before the revision is upgraded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.walframes import owners, read_frames
from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import open_store
from tests.support.journals import fixture_journal
from tests.support.payloads import alert, notification
from tests.support.processes import run_cli
from tests.support.receiver import LOG_RESTART
from tests.support.stores import BACKENDS, opened_store

T = 1_800_000_000.0
KEYED = {"action_events": "(action_id, id)", "breakers": "(strategy, target)"}


def _events(store: Any) -> dict[int, list[tuple[str, str]]]:
    """Each action's (status, reason) events as the read API lists them."""
    page = store.list_actions(limit=1000)
    return {a["id"]: [(e["status"], e["reason"]) for e in a["events"]] for a in page.items}


def _remediate(store: Any, services: list[str]) -> None:
    """Ingest one ServiceDown alert per service, then carry every action out."""
    config = parse_config(LOG_RESTART)
    for i, service in enumerate(services):
        ingest(
            store,
            config,
            parse_notification(notification(alert("ServiceDown", service=service))),
            T + i,
        )
    dispatcher = Dispatcher(SimpleNamespace(config=config), store, clock=lambda: T + 60)
    while dispatcher.run_once():
        continue


def test_sqlite_keeps_each_in_its_key_alone(tmp_path: Path) -> None:
    with opened_store("sqlite", tmp_path) as store, store.transaction(write=False) as tx:
        for table, key in KEYED.items():
            (sql,) = tx.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            words = " ".join(sql.split())
            assert words.endswith(f"PRIMARY KEY {key} ) WITHOUT ROWID"), words
            indexes = tx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,)
            ).fetchall()
            assert indexes == [], f"{table} needs no index besides its key: {indexes}"


def test_an_event_and_a_new_breaker_each_write_one_page(tmp_path: Path) -> None:
    """The WAL frames of one commit, by the table or index owning their pages (dbstat)."""
    journal = tmp_path / "journal.db"
    with opened_store("sqlite", tmp_path) as store:
        _remediate(store, ["web-0"])
        store._connection().execute("PRAGMA wal_autocheckpoint = 0")
        store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (action_id,) = _events(store)
        with store.transaction() as tx:
            tx.add_event(action_id, T + 61, "succeeded", "a note")
            tx.execute(
                "INSERT INTO breakers (strategy, target, state, updated_at) VALUES (?, ?, ?, ?)",
                ("restart-web", "web-9", "{}", T + 61),
            )
        wal = Path(f"{journal}-wal").read_bytes()
        owner = owners(journal)
    written = sorted(owner.get(frame.page, "?") for frame in read_frames(wal))
    assert written == ["action_events", "breakers"], written


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_actions_events_come_back_in_order(backend: str, tmp_path: Path) -> None:
    with opened_store(backend, tmp_path) as store:
        _remediate(store, ["web-0", "web-1", "web-2"])
        events = _events(store)
        with store.transaction() as tx:  # a later event of the first action
            tx.add_event(min(events), T + 90, "succeeded", "noted afterwards")
        again = _events(store)
    assert len(events) == 3
    for action_id, trail in events.items():
        words = [(status, reason.split()[0]) for status, reason in trail]
        assert words == [
            ("planned", "matched"),
            ("running", "claimed"),
            ("running", "executed:"),
            ("succeeded", "logged"),
        ], trail
        added = [("succeeded", "noted afterwards")] if action_id == min(events) else []
        assert again[action_id] == trail + added


def test_sqlite_numbers_each_actions_events_after_its_last(tmp_path: Path) -> None:
    with opened_store("sqlite", tmp_path) as store:
        _remediate(store, ["web-0", "web-1"])
        with store.transaction(write=False) as tx:
            rows = tx.execute("SELECT action_id, id FROM action_events").fetchall()
    by_action: dict[int, list[int]] = {}
    for action_id, event_id in rows:
        by_action.setdefault(action_id, []).append(event_id)
    assert sorted(by_action.values()) == [[1, 2, 3, 4], [1, 2, 3, 4]]


def test_an_upgraded_journal_numbers_new_events_after_its_old_ids(tmp_path: Path) -> None:
    """The fixture's ids were one sequence over every action; a new event of an action
    takes that action's highest id plus one, so it reads back last."""
    with fixture_journal("sqlite", tmp_path) as journal:
        upgrade = run_cli("db", "upgrade", "--store", journal.url)
        assert upgrade.returncode == 0, upgrade.stderr
        ((action_id, highest),) = journal.query(
            "SELECT action_id, MAX(id) FROM action_events GROUP BY action_id "
            "ORDER BY COUNT(*) DESC, action_id LIMIT 1"
        )
        store = open_store(journal.url)
        try:
            before = _events(store)[action_id]
            with store.transaction() as tx:
                tx.add_event(action_id, T, "succeeded", "after the upgrade")
            after = _events(store)[action_id]
        finally:
            store.close()
        ((newest,),) = journal.query(
            f"SELECT MAX(id) FROM action_events WHERE action_id = {int(action_id)}"
        )
    assert len(before) > 1, "the fixture's action has several events"
    assert after == [*before, ("succeeded", "after the upgrade")]
    assert newest == highest + 1
