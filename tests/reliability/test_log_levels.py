"""Log levels an operator can alert on (issue 13): a failed or timed-out action and an
escalation are WARNINGs, a journal outage is an ERROR, a plain success stays INFO.

Real components: the dispatcher carries out actions from a real SQLite journal through
real executors (a `command` executor running a real subprocess, the `log` executor);
the outage is another connection holding SQLite's write lock past the busy timeout, as
a backup or another process would.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.app import AppState, create_app
from receiver.config import Config, parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import open_store
from tests.support.journal import wait_for
from tests.support.payloads import alert, notification

CONFIG = f"""
defaults:
  cooldown: 0s
  breaker: {{failure_threshold: 2}}
executors:
  logger: {{type: log}}
  local: {{type: command}}
strategies:
  - name: fails
    matchers: ['alertname="Broken"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', 'import sys; sys.exit(3)']
  - name: times-out
    matchers: ['alertname="Slow"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', 'import time; time.sleep(30)']
    timeout: 1s
  - name: restarts
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
  - name: fleet-fails
    matchers: ['alertname="FleetBroken"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: [{sys.executable!r}, '-c', 'import sys; sys.exit(3)']
    fleet:
      progressive: {{min_targets: 3, gather: 0s, canary: 1}}
  - name: pages
    matchers: ['alertname="Page"']
    action: escalate
    executor: logger
    target: '{{{{ labels.service }}}}'
"""


@dataclass
class Source:
    config: Config


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    db = tmp_path / "journal.db"
    store = open_store(f"sqlite:///{db}")
    yield store, db
    store.close()


def carry_out(store: Any, config: Config, *alerts: dict[str, Any]) -> None:
    """Journal the alerts, then let one dispatcher carry out every planned action."""
    summary = ingest(store, config, parse_notification(notification(*alerts)), 1.0)
    assert summary.actions_planned == len(alerts)
    dispatcher = Dispatcher(Source(config), store)
    while dispatcher.run_once():
        pass


def outcome_records(caplog: pytest.LogCaptureFixture, status: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "receiver.dispatcher" and r.getMessage().startswith(f"action {status}:")
    ]


@pytest.mark.parametrize(
    ("alertname", "status", "level"),
    [
        ("Broken", "failed", logging.WARNING),
        ("Slow", "timed_out", logging.WARNING),
        ("Page", "succeeded", logging.WARNING),  # an escalation: a person must look
        ("ServiceDown", "succeeded", logging.INFO),
    ],
)
def test_an_outcome_is_logged_at_the_level_it_deserves(
    journal: tuple[Any, Path],
    caplog: pytest.LogCaptureFixture,
    alertname: str,
    status: str,
    level: int,
) -> None:
    store, _db = journal
    caplog.set_level(logging.INFO)
    carry_out(store, parse_config(CONFIG), alert(alertname, service="web"))
    [action] = store.list_actions(limit=10).items
    assert action["status"] == status
    [record] = outcome_records(caplog, status)
    assert record.levelno == level, record.getMessage()


def test_the_breaker_opening_and_its_escalation_are_warnings(
    journal: tuple[Any, Path], caplog: pytest.LogCaptureFixture
) -> None:
    store, _db = journal
    caplog.set_level(logging.INFO)
    config = parse_config(CONFIG)
    firing = [alert("Broken", service="web", instance=f"web-{n}") for n in (1, 2)]
    carry_out(store, config, *firing)
    opened = [r for r in caplog.records if r.getMessage().startswith("breaker opened for fails")]
    assert [r.levelno for r in opened] == [logging.WARNING]
    # issue 14: escalation follows each runbook run that ends uncured, not the breaker
    # opening: both runs failed their only step, so each escalated once, a WARNING each
    # (undeliverable here: no escalation_executor configured)
    escalated = [r for r in caplog.records if "no escalation_executor configured" in r.getMessage()]
    assert [r.levelno for r in escalated] == [logging.WARNING, logging.WARNING]

    # The next action on web meets the open breaker: skipped, its run ends uncured and
    # escalates once, a WARNING too.
    caplog.clear()
    carry_out(store, config, alert("Broken", service="web", instance="web-3"))
    blocked = [r for r in caplog.records if "no escalation_executor configured" in r.getMessage()]
    assert [r.levelno for r in blocked] == [logging.WARNING]
    assert "breaker_open" in blocked[0].getMessage()


def test_a_halted_waves_covered_runs_are_info_and_its_one_escalation_a_warning(
    journal: tuple[Any, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The canary fails, the wave halts: the other three runs end skipped `halted`,
    covered by the fleet's one escalation. Skips are INFO (README, Running it), so only
    the run that escalates is a WARNING, not one per covered target."""
    store, _db = journal
    caplog.set_level(logging.INFO)
    firing = [alert("FleetBroken", service="web", instance=f"web-{n}") for n in (1, 2, 3, 4)]
    carry_out(store, parse_config(CONFIG), *firing)
    actions = store.list_actions(limit=10).items
    assert sorted(a["status"] for a in actions) == ["failed"] + ["skipped"] * 3
    ends = [r for r in caplog.records if r.getMessage().startswith("runbook fleet-fails:")]
    levels = sorted((r.levelno, "skipped (halted)" in r.getMessage()) for r in ends)
    assert levels == [(logging.INFO, True)] * 3 + [(logging.WARNING, False)]


def test_a_one_action_cure_is_one_outcome_line_and_its_run_still_journaled(
    journal: tuple[Any, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A strategy without steps whose action succeeded: the action's line says the cure;
    the run's end adds no second line (issue 16: one line fewer per action), but the
    run is journaled cured all the same. A run that fails (uncured) still says so."""
    store, _db = journal
    caplog.set_level(logging.INFO)
    config = parse_config(CONFIG)
    carry_out(store, config, alert("ServiceDown", service="web"))
    assert len(outcome_records(caplog, "succeeded")) == 1
    assert not [r for r in caplog.records if r.getMessage().startswith("runbook restarts:")]
    runs = store.look(lambda tx: tx.execute("SELECT status FROM runbook_runs").fetchall())
    assert [tuple(run) for run in runs] == [("cured",)]

    caplog.clear()
    carry_out(store, config, alert("Broken", service="db"))
    ends = [r for r in caplog.records if r.getMessage().startswith("runbook fails:")]
    assert [r.levelno for r in ends] == [logging.WARNING]


@pytest.fixture
def write_lock(journal: tuple[Any, Path]) -> Iterator[None]:
    """Another connection holds the journal's write lock (BEGIN IMMEDIATE)."""
    _store, db = journal
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    yield
    blocker.execute("ROLLBACK")
    blocker.close()


def test_a_journal_outage_at_the_webhook_is_an_error(
    journal: tuple[Any, Path], write_lock: None, caplog: pytest.LogCaptureFixture
) -> None:
    store, _db = journal
    client = create_app(AppState(parse_config(CONFIG), store)).test_client()
    body = notification(alert("ServiceDown", service="web"))
    response = client.post("/webhook", json=body)
    assert response.status_code == 503
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("journal unavailable" in r.getMessage() for r in errors), caplog.text


def test_a_journal_outage_in_the_dispatcher_is_an_error(
    journal: tuple[Any, Path], write_lock: None, caplog: pytest.LogCaptureFixture
) -> None:
    store, _db = journal
    dispatcher = Dispatcher(Source(parse_config(CONFIG)), store)
    dispatcher.start()
    try:

        def said() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if r.levelno == logging.ERROR and "journal unavailable" in r.getMessage()
            ]

        wait_for(said, 60, "an ERROR saying the journal is unavailable")
    finally:
        dispatcher.stop(0.0)


@pytest.mark.parametrize(
    ("alertname", "announced"),
    [
        ("Broken", ["receiver.dispatcher: executing run on web"]),
        # the log executor's own line says it: the dispatcher does not say it again
        ("ServiceDown", ["receiver.executors.log: would restart web"]),
    ],
)
def test_an_action_is_announced_once_when_it_starts(
    journal: tuple[Any, Path],
    caplog: pytest.LogCaptureFixture,
    alertname: str,
    announced: list[str],
) -> None:
    store, _db = journal
    caplog.set_level(logging.INFO)
    carry_out(store, parse_config(CONFIG), alert(alertname, service="web"))
    starts = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.getMessage().startswith(("executing ", "would "))
    ]
    assert [line.split(" (")[0] for line in starts] == announced
