"""Runbook test helpers: a service with a release a restart cannot fix, and readers of
runbook runs and of the step/run columns of actions straight from a journal.

The read API's action rows may not carry `step`/`run_id`, and runs have no listing of
their own, so tests that check a runbook's trail read what the server committed, as
tests/support/journal.py does for incidents and actions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.store import runs as run_journal
from tests.support.journal import wait_for as poll  # noqa: F401  (re-exported: the runbook tests poll)

#: A service under supervisord for runbook tests: `python app.py PORT RELEASE` answers
#: `/metrics` with `app_release_good 1` while the RELEASE file says `good`, 0 otherwise
#: (read at each scrape), so a restart cannot cure a bad release and a rollback can.
RELEASE_SERVICE = """import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, RELEASE = int(sys.argv[1]), sys.argv[2]


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):
        with open(RELEASE) as release:
            good = 1 if release.read().strip() == "good" else 0
        body = f"app_release_good {good}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Metrics).serve_forever()
"""

#: rollback.sh RELEASE LOG SERVICE: switch the release back to the good one, and say so.
ROLLBACK = """#!/bin/sh
echo "rollback $3" >> "$2"
echo good > "$1"
"""


def steps_of(journal: Any, incident_id: int) -> list[dict[str, Any]]:
    """The incident's actions in id order: {id, step, run_id, status, waiting, not_before}."""
    with journal.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT id, step, run_id, status, waiting, not_before FROM actions "
            "WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        ).fetchall()
    names = ("id", "step", "run_id", "status", "waiting", "not_before")
    return [dict(zip(names, row, strict=True)) for row in rows]


def runs_of(journal: Any, incident_id: int) -> list[dict[str, Any]]:
    """The incident's runbook runs in order (store/runs.for_incident: times in seconds)."""
    with journal.transaction(write=False) as tx:
        return run_journal.for_incident(tx, incident_id)


def all_runs(journal: Any) -> list[dict[str, Any]]:
    """Every run of the journal, oldest first: {id, incident_id, status, escalation}."""
    with journal.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT id, incident_id, status, escalation FROM runbook_runs ORDER BY id"
        ).fetchall()
    names = ("id", "incident_id", "status", "escalation")
    return [dict(zip(names, row, strict=True)) for row in rows]


def total(journal: Any, metric: str, **labels: str) -> float:
    """The journal's running total `metric` summed over the series matching `labels`."""
    series = journal.metric_totals().get(metric, [])
    return sum(value for have, value in series if all(have.get(k) == v for k, v in labels.items()))


def seconds(stamp: str) -> float:
    """An ISO time of the read API (`...Z`) as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
