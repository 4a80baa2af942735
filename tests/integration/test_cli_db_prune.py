"""`remediator db prune [--dry-run] (--config FILE | --store URL)` as a user runs it, on
a real SQLite journal whose past was built through the real ingest and dispatcher
(tests/support/retention.py), and on PostgreSQL."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from receiver.store import schema
from receiver.store.postgres import PostgresStore
from receiver.store.sqlite import SqliteStore
from tests.integration.test_retention import JOURNAL_TABLES
from tests.support.journals import fixture_journal
from tests.support.postgres import postgres_schema
from tests.support.processes import run_cli
from tests.support.retention import CONFIG, OLD_CLOSED, build_history, incident_ids, rows


def journal(tmp_path: Path) -> tuple[Path, str, SqliteStore, set[int]]:
    """A config file naming a journal whose past ends now (the CLI's clock is real)."""
    db = tmp_path / "journal.db"
    store = SqliteStore(f"sqlite:///{db}")
    history = build_history(store, now=time.time())
    config = tmp_path / "remediation.yml"
    config.write_text(f"store: sqlite:///{db}\n" + CONFIG)
    return config, f"sqlite:///{db}", store, set(history.kept.values())


def deleted(stdout: str) -> dict[str, int]:
    """The `table count` lines after the deleted / would delete header."""
    tail = stdout.split("delete", 1)[1] if "would delete" in stdout else stdout.split("deleted:")[1]
    return {name: int(n) for name, n in re.findall(r"^  (\w+) +(\d+)$", tail, re.M)}


def test_dry_run_says_what_it_would_delete_and_changes_nothing(tmp_path: Path):
    config, _, store, kept = journal(tmp_path)
    before = {table: rows(store, table) for table in JOURNAL_TABLES}

    result = run_cli("db", "prune", "--dry-run", "--config", str(config))

    assert result.returncode == 0, result.stderr
    assert "would delete (dry run, nothing changed):" in result.stdout
    assert re.search(
        r"notifications received before \d{4}-\d\d-\d\dT[\d:.]+Z \(7d\)", result.stdout
    )
    assert re.search(r"incidents closed before \d{4}-\d\d-\d\dT[\d:.]+Z \(30d\)", result.stdout)
    assert "actions since" in result.stdout and "defaults.budget.window: 7d" in result.stdout
    would = deleted(result.stdout)
    assert would["incidents"] == OLD_CLOSED and would["actions"] == OLD_CLOSED
    assert {table: rows(store, table) for table in JOURNAL_TABLES} == before

    done = run_cli("db", "prune", "--config", str(config))

    assert done.returncode == 0, done.stderr
    assert "deleted:" in done.stdout
    assert deleted(done.stdout) == would
    assert incident_ids(store) == kept


def test_store_alone_prunes_with_the_default_retention(tmp_path: Path):
    _, url, store, _ = journal(tmp_path)
    before = incident_ids(store)

    result = run_cli("db", "prune", "--store", url)

    # the default incidents retention (90d) keeps the 60-day-old incidents
    assert result.returncode == 0, result.stderr
    assert deleted(result.stdout)["incidents"] == 0
    assert deleted(result.stdout)["notifications"] > 0  # older than 7d
    assert incident_ids(store) == before


def test_postgres_journal_by_store_url(tmp_path: Path):
    with postgres_schema() as url:
        store = PostgresStore(url)
        history = build_history(store, now=time.time() - 100 * 86400)  # all of it 100 days old
        config = tmp_path / "remediation.yml"
        config.write_text(CONFIG)
        try:
            result = run_cli("db", "prune", "--config", str(config), "--store", url)
            assert result.returncode == 0, result.stderr
            # the one acted on 101 days ago goes too: its action is past every window
            assert deleted(result.stdout)["incidents"] == OLD_CLOSED + 1
            # open, not final, or the newest of its service: kept whatever their age
            kept = {name: i for name, i in history.kept.items() if name != "recent_action"}
            assert incident_ids(store) == set(kept.values())
        finally:
            store.close()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "give --config FILE or --store URL"),
        (("--store", "sqlite:///{tmp}/missing.db"), 1, "no journal at"),
        (("--store", "mysql://x"), 1, "unsupported store URL"),
        (("--store", "postgresql://postgres@127.0.0.1:1/test"), 1, "127.0.0.1:1"),
        (("--config", "{tmp}/bad.yml"), 1, "retention.incidents"),
    ],
)
def test_bad_arguments_get_a_clear_error_and_change_nothing(tmp_path, args, code, message):
    (tmp_path / "bad.yml").write_text("retention: {incidents: 1h}\n")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in args]

    result = run_cli("db", "prune", *argv)

    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert not (tmp_path / "missing.db").exists()


def test_db_help_describes_prune_and_its_flags():
    result = run_cli("db", "prune", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--dry-run", "--config", "--store"):
        assert flag in result.stdout
    assert "remediator db prune --dry-run --config examples/remediation.yml" in result.stdout
    example = run_cli("db", "prune", "--dry-run", "--config", "examples/remediation.yml")
    # the example names a journal that may not exist here: a clear error, or counts
    assert example.returncode in (0, 1), example.stderr


def test_a_dry_run_on_a_journal_behind_this_release_refuses_and_changes_nothing(tmp_path):
    with fixture_journal("sqlite", tmp_path) as old:
        before = old.contents()

        result = run_cli("db", "prune", "--dry-run", "--store", old.url)

        assert result.returncode == 1, result.stdout + result.stderr
        assert "a dry run changes nothing" in result.stderr
        assert "remediator db upgrade" in result.stderr
        assert old.contents() == before and "alembic_version" not in old.tables()


def test_a_prune_upgrades_a_journal_behind_this_release_first_and_says_so(tmp_path):
    with fixture_journal("sqlite", tmp_path) as old:
        result = run_cli("db", "prune", "--store", old.url)

        assert result.returncode == 0, result.stdout + result.stderr
        assert f"journal schema upgraded from none to {schema.HEAD} (head)" in result.stdout
        assert "deleted:" in result.stdout
        assert old.revision_rows() == [(schema.HEAD,)]
