"""Schema migrations on real journals (SQLite and the machine's PostgreSQL): a journal
made by the release before schema revisions keeps every row through `db upgrade`;
replicas upgrading together run the revisions once; a journal newer than this release
is refused; a server never loads SQLAlchemy into its own processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver.store import migrate, open_store, schema, totals
from tests.support import pids
from tests.support.journals import empty_journal, fixture_journal
from tests.support.processes import REPO, remediator, run_cli
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, TOKEN, write_config

BACKENDS = ["sqlite", "postgres"]
#: replicas starting on one fresh journal at once
REPLICAS = 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_db_upgrade_keeps_every_row_of_a_journal_made_before_revisions(backend, tmp_path):
    with fixture_journal(backend, tmp_path) as journal:
        before = journal.contents()
        assert all(before.values()), "the fixture has rows in every table"

        current = run_cli("db", "current", "--store", journal.url)
        revisions = len(list(migrate.scripts().walk_revisions()))
        assert (current.returncode, current.stdout.strip()) == (
            0,
            f"none (behind by {revisions}: head is {schema.HEAD})",
        ), current.stderr
        upgrade = run_cli("db", "upgrade", "--store", journal.url)
        assert upgrade.returncode == 0, upgrade.stderr
        assert (
            upgrade.stdout.strip() == f"journal schema upgraded from none to {schema.HEAD} (head)"
        )

        after = journal.contents()
        kept = set(before) - {"metric_totals"}
        assert {table: after[table] for table in kept} == {table: before[table] for table in kept}
        # 0005 stores histogram buckets per bucket: read back, they are the fixture's
        # cumulative rows, and every other running total is kept as it was
        assert as_read(after["metric_totals"]) == with_bounds_at_zero(before["metric_totals"])
        # the revisions after the baseline add tables; 0003 fills its aggregates from the
        # fixture's closed incidents (their figures: tests/integration/test_service_windows)
        assert set(after) - set(before) >= {
            "metric_total_shards",
            "action_slots",
            "incident_window_services",
            "incident_window_buckets",
            "incident_downtime_segments",
        }
        closed = journal.query("SELECT COUNT(*) FROM incidents WHERE status = 'resolved'")[0][0]
        counted = journal.query("SELECT SUM(closed) FROM incident_window_services")[0][0]
        assert closed > 0 and counted == closed
        assert journal.revision_rows() == [(schema.HEAD,)]
        current = run_cli("db", "current", "--store", journal.url)
        assert (current.returncode, current.stdout.strip()) == (0, f"{schema.HEAD} (head)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_upgrade_changes_nothing(backend, tmp_path):
    with fixture_journal(backend, tmp_path) as journal:
        assert run_cli("db", "upgrade", "--store", journal.url).returncode == 0
        upgraded = journal.contents()
        again = run_cli("db", "upgrade", "--store", journal.url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == f"journal schema already at {schema.HEAD} (head)"
        assert journal.contents() == upgraded
        assert journal.revision_rows() == [(schema.HEAD,)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fresh_journal_gets_the_schema_the_release_before_revisions_made(backend, tmp_path):
    """The baseline revision is that release's schema exactly: tables, column order,
    types, defaults and indexes of a fresh journal match those of the fixture."""
    fixture_dir, fresh_dir = tmp_path / "fixture", tmp_path / "fresh"
    fixture_dir.mkdir()
    fresh_dir.mkdir()
    with fixture_journal(backend, fixture_dir) as made_before:
        expected = made_before.definitions()
    with empty_journal(backend, fresh_dir) as fresh:
        migrate.upgrade(fresh.url, "0001")
        assert fresh.definitions() == expected
        assert fresh.revision_rows() == [("0001",)]
        open_store(fresh.url).close()  # and on to the head
        assert fresh.revision_rows() == [(schema.HEAD,)]
        assert "alembic_version" in fresh.tables()  # in the journal's own schema


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_server_upgrades_an_old_journal_at_start_and_serves_it(backend, tmp_path):
    """Every incident of the old journal is served (the server may add more: it takes
    over the notification the fixture left spooled by a writer long gone)."""
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    with fixture_journal(backend, tmp_path) as journal:
        incidents = set(journal.query("SELECT id, fingerprint FROM incidents"))
        with remediator(tmp_path, config, journal.url) as server:
            answer = requests.get(
                f"{server.url}/api/v1/incidents",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
        assert answer.status_code == 200, answer.text
        served = {(row["id"], row["fingerprint"]) for row in answer.json()["data"]}
        assert incidents <= served
        assert journal.revision_rows() == [(schema.HEAD,)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_journal_newer_than_this_release_is_refused(backend, tmp_path):
    newer = "9999_from_a_later_release"
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    with empty_journal(backend, tmp_path) as journal:
        assert run_cli("db", "upgrade", "--store", journal.url).returncode == 0
        journal.set_revision(newer)
        before = journal.contents()

        served = run_cli("serve", "--config", str(config), "--store", journal.url)
        assert served.returncode == 1
        for said in (repr(newer), repr(schema.HEAD), "Upgrade Remediator"):
            assert said in served.stderr

        current = run_cli("db", "current", "--store", journal.url)
        assert current.returncode == 1
        assert current.stdout.strip() == (
            f"{newer} (newer than this release, whose head is {schema.HEAD})"
        )
        upgrade = run_cli("db", "upgrade", "--store", journal.url)
        assert upgrade.returncode == 1
        assert repr(newer) in upgrade.stderr

        assert journal.revision_rows() == [(newer,)]
        assert journal.contents() == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_upgrade_that_fails_leaves_the_journal_as_it_was(backend, tmp_path):
    """All revisions of an upgrade run in one transaction, on SQLite as on PostgreSQL:
    here the baseline's first index fails on a table it did not make."""
    with empty_journal(backend, tmp_path) as journal:
        journal.query("CREATE TABLE incidents (id INTEGER)", fetch=False)
        upgrade = run_cli("db", "upgrade", "--store", journal.url)
        assert upgrade.returncode == 1
        assert "failed, the journal is left as it was" in upgrade.stderr
        assert "status" in upgrade.stderr  # the column the index wants
        assert journal.tables() == ["incidents"]


#: a replica's upgrade, started with the others: Alembic imported first, then wait for
#: the go (a file) so that all read the journal's revision at the same moment
REPLICA = """
import sys, time
from pathlib import Path
from typing import Any
from receiver.store import migrate
url, ready, go = sys.stdin.read().strip(), Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(migrate.upgrade(url))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_replicas_upgrading_one_fresh_journal_together_run_the_revisions_once(backend, tmp_path):
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(REPLICAS)]
    with empty_journal(backend, tmp_path) as journal:
        upgrades = [
            subprocess.Popen(
                [sys.executable, "-c", REPLICA, str(flag), str(go)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            for flag in ready
        ]
        for upgrade in upgrades:
            upgrade.stdin.write(journal.url)
            upgrade.stdin.close()
        wait_for(lambda: all(flag.exists() for flag in ready), timeout=60)
        go.touch()
        results = [(upgrade.stdout.read(), upgrade.stderr.read()) for upgrade in upgrades]
        codes = [upgrade.wait(timeout=60) for upgrade in upgrades]
        assert codes == [0] * REPLICAS, results
        said = sorted(out.strip() for out, _ in results)
        assert said == sorted(
            [f"journal schema upgraded from none to {schema.HEAD} (head)"]
            + [f"journal schema already at {schema.HEAD} (head)"] * (REPLICAS - 1)
        )
        assert journal.revision_rows() == [(schema.HEAD,)]


def as_read(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], float]:
    """metric_totals rows (metric, labels JSON, value) as the store reads them."""
    return {
        (metric, totals.canonical_json(labels)): value
        for metric, series in totals.read_totals(rows).items()
        for labels, value in series
    }


def with_bounds_at_zero(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], float]:
    """Cumulative rows as /metrics exported them: a histogram's bound without a row
    (below its first observation) at 0."""
    found = {(metric, labels): value for metric, labels, value in rows}
    for metric, labels, _ in rows:
        parsed = json.loads(labels)
        bounds = totals.HISTOGRAM_BUCKETS.get(metric.removesuffix("_bucket"))
        if bounds is not None and "le" in parsed:
            for bound in (*bounds, math.inf):
                key = (metric, totals.canonical_json({**parsed, "le": totals.le(bound)}))
                found.setdefault(key, 0.0)
    return found


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the replicas did not get ready in time"
        time.sleep(0.01)


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_started_server_never_loads_sqlalchemy_even_on_a_fresh_journal(tmp_path):
    """SQLAlchemy is loaded where a revision runs: a child of the starting server, never
    the server's own processes. Its compiled modules show in a process's memory map once
    it is imported (checked on this test's own process, which imports it)."""
    from receiver.store import migrate  # noqa: F401 - imports SQLAlchemy here

    assert "sqlalchemy" in _maps(os.getpid())

    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, url) as server:
        master = server.process.pid
        worker = pids.worker_of(master)
        writer = pids.writer_of(worker)
        processes = [master, worker, writer, pids.dispatcher_of(writer)]
        loaded = {pid: "sqlalchemy" in _maps(pid) for pid in processes}
    assert loaded == dict.fromkeys(processes, False)
    assert open_store(url).schema_revision() == schema.HEAD
