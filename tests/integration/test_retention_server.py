"""Retention's background job in a real `remediator serve` (gunicorn, journal writer,
dispatch process), on SQLite and PostgreSQL: a journal with a past older than its
retention is pruned soon after start, the pass is logged in one line and counted in
/metrics, and the server goes on journaling meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver.store import open_store
from tests.support.journal import post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import TOKEN
from tests.support.retention import CONFIG, OLD_CLOSED, build_history, incident_ids
from tests.support.stores import BACKENDS, journal_url

SERVER = "server: {auth: {bearer_token_file: token}}\n"


@pytest.fixture(params=BACKENDS)
def journal(request, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    with journal_url(request.param, tmp_path) as url:
        store = open_store(url)
        yield url, store
        store.close()


def pruned_rows(server, table: str) -> float | None:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    prefix = f'remediator_journal_pruned_rows_total{{table="{table}"}} '
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0].removeprefix(prefix)) if found else None


def test_the_server_prunes_soon_after_start_and_counts_it(tmp_path: Path, journal):
    url, store = journal
    history = build_history(store, now=time.time())
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "remediation.yml"
    # a short interval, so the first pass comes within seconds of the start
    config.write_text(SERVER + CONFIG.replace("batch_size: 5}", "batch_size: 5, interval: 1s}"))

    with remediator(tmp_path, config, url) as server:
        body = notification(alert("Unmatched", service="during", instance="1"))
        assert post_webhook(server.url, body).status_code == 200
        wait_for(
            lambda: incident_ids(store) <= set(history.kept.values()) | {max(incident_ids(store))},
            timeout=30,
            what="the old incidents pruned",
        )
        assert wait_for(lambda: pruned_rows(server, "incidents"), 10) == OLD_CLOSED
        assert pruned_rows(server, "actions") == OLD_CLOSED
        # the pass logs when it ends, after its last walk (rows are gone before that)
        wait_for(lambda: "journal pruned:" in server.output(), 10, "the pass's log line")
    kept = set(history.kept.values())
    assert kept < incident_ids(store)  # and the incident journaled meanwhile
    lines = [line for line in server.output().splitlines() if "journal pruned:" in line]
    assert len(lines) == 1, lines
    assert f"incidents={OLD_CLOSED}" in lines[0] and f"actions={OLD_CLOSED}" in lines[0]
