"""Read runbook runs and the step/run columns of actions straight from a journal.

The read API's action rows may not carry `step`/`run_id`, and runs have no listing of
their own, so tests that check a runbook's trail read what the server committed, as
tests/support/journal.py does for incidents and actions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from receiver.store import runs as run_journal

#: Run statuses after which nothing more happens to a run (but its escalation).
ENDED = ("cured", "uncured", "cancelled", "dry_run")


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


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """check() until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {value!r}")
        time.sleep(0.1)
