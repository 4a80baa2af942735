"""A journal with a known past, built through the real ingest and dispatcher with an
injected clock, for the retention tests.

`build_history(store, now)` journals, at times relative to `now` (epoch seconds):

- OLD_CLOSED: closed incidents of service `web` that fired 60 days ago, were restarted
  (log executor, succeeded) and resolved a day later: everything about them is prunable;
- an incident of `db` firing since 50 days ago, unmatched (no action): kept, open;
- an incident of `queue` firing since 50 days ago whose action waits (`wait: 1000d`):
  kept, open, with a planned action;
- an incident of `api` resolved 49 days ago while its action was still running (claimed,
  never finished): kept, its action is not final;
- an incident of `batch` resolved (by Alertmanager's endsAt) 40 days ago whose action
  ran 1 day ago: kept, its action is inside the budget window (7d);
- an incident of `lonely` resolved 59 days ago, the only one of its service: kept, the
  witness of its service's series in /metrics (`api` and `batch` get a newer firing
  incident each, so their old ones are kept by their own rule, not as witnesses);
- a recent incident of `web` resolved 2 days ago: kept, younger than the retention.

RETENTION: notifications 7d, incidents 30d (defaults.mttr_window 1d, budget window 7d).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from receiver.config import Config, parse_config
from receiver.dispatcher import Dispatcher
from receiver.gates import Verdict
from receiver.intake import LocalIntake
from tests.support.payloads import alert, notification

DAY = 86400.0
#: "now" of the tests: a fixed moment, so expected times are exact
NOW = 1_900_000_000.0
OLD_CLOSED = 12

CONFIG = """
defaults:
  cooldown: 0s
  mttr_window: 1d
  budget: {max_actions: 100, window: 7d}
retention: {notifications: 7d, incidents: 30d, batch_size: 5}
executors:
  logger: {type: log}
strategies:
  - name: restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}-{{ labels.instance }}'
  - name: patient
    matchers: ['alertname="Later"']
    target: '{{ labels.service }}'
    steps:
      - action: restart
        executor: logger
        wait: 1000d
"""


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def config(text: str = CONFIG) -> Config:
    return parse_config(text)


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class History:
    """The journal's past as built: the config, the clock the dispatcher used, and the
    incident ids by what the rules must do with them."""

    config: Config
    pruned: list[int]
    kept: dict[str, int]


def post(intake: LocalIntake, at: float, *alerts: dict[str, Any]) -> None:
    body = json.dumps(notification(*alerts)).encode()
    answer = intake.accept(body, at)
    assert answer.status == 200, answer.body


def firing(name: str, service: str, starts: float, instance: str = "0") -> dict[str, Any]:
    return alert(name, starts_at=iso(starts), service=service, instance=instance)


def resolved(name: str, service: str, starts: float, ends: float, instance: str = "0"):
    return alert(
        name,
        status="resolved",
        starts_at=iso(starts),
        ends_at=iso(ends),
        service=service,
        instance=instance,
    )


def incident_id(store: Any, service: str, instance: str = "0") -> int:
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT id, labels FROM incidents WHERE service = ? ORDER BY id", (service,)
        ).fetchall()
    return [i for i, labels in rows if json.loads(labels).get("instance") == instance][-1]


def build_history(store: Any, now: float = NOW, text: str = CONFIG) -> History:
    parsed = config(text)
    clock = Clock(now)
    intake = LocalIntake(store, lambda: parsed)
    dispatcher = Dispatcher(SimpleNamespace(config=parsed), store, clock=clock)

    def dispatch(at: float) -> None:
        clock.now = at
        for _ in range(100):
            if not dispatcher.run_once():
                return

    pruned = build_old_closed(store, parsed, now, dispatcher, clock)
    kept = {}
    post(intake, now - 50 * DAY, firing("Unmatched", "db", now - 50 * DAY))
    kept["firing"] = incident_id(store, "db")
    post(intake, now - 50 * DAY, firing("Later", "queue", now - 50 * DAY))
    dispatch(now - 50 * DAY + 1)  # the step waits: it stays planned
    kept["planned"] = incident_id(store, "queue")
    kept["running"] = _running_then_resolved(store, intake, now)
    _recent_action_of_old_incident(intake, dispatch, now)
    kept["recent_action"] = incident_id(store, "batch")
    start = now - 60 * DAY
    post(intake, now - 59 * DAY, resolved("Unmatched", "lonely", start, now - 59 * DAY))
    kept["witness"] = incident_id(store, "lonely")
    start = now - 2 * DAY
    post(intake, start, firing("ServiceDown", "web", start, "recent"))
    dispatch(start + 1)
    post(intake, start + 60, resolved("ServiceDown", "web", start, start + 60, "recent"))
    kept["recent"] = incident_id(store, "web", "recent")
    for service in ("api", "batch"):  # newer incidents: the old ones are not witnesses
        post(intake, now - 60, firing("Unmatched", service, now - 60, "newer"))
        kept[f"newer_{service}"] = incident_id(store, service, "newer")
    return History(parsed, pruned, kept)


def build_old_closed(
    store: Any,
    parsed: Config,
    now: float,
    dispatcher: Dispatcher | None = None,
    clock: Clock | None = None,
) -> list[int]:
    """OLD_CLOSED incidents of `web` that fired 60 days before `now`, were acted on by
    the `ServiceDown` strategy and resolved a day later; returns their ids."""
    clock = clock or Clock(now)
    dispatcher = dispatcher or Dispatcher(SimpleNamespace(config=parsed), store, clock=clock)
    intake = LocalIntake(store, lambda: parsed)
    pruned = []
    for number in range(OLD_CLOSED):
        start = now - 60 * DAY + number * 60
        post(intake, start, firing("ServiceDown", "web", start, str(number)))
        clock.now = start + 1
        while dispatcher.run_once():
            pass
        post(intake, start + DAY, resolved("ServiceDown", "web", start, start + DAY, str(number)))
        pruned.append(incident_id(store, "web", str(number)))
    return pruned


def _running_then_resolved(store: Any, intake: LocalIntake, now: float) -> int:
    """An action claimed (running) by a dispatcher that never finished it; its alert then
    resolved: the action stays running (the crash rule's to settle), not final."""
    start = now - 50 * DAY
    post(intake, start, firing("ServiceDown", "api", start))

    def run(row: Any, reader: Any) -> Verdict:
        return Verdict("run", "open", "test: claimed, never finished")

    assert store.claim("elsewhere:1:x", start + 1, run) is not None
    post(intake, now - 49 * DAY, resolved("ServiceDown", "api", start, now - 49 * DAY))
    return incident_id(store, "api")


def _recent_action_of_old_incident(intake: LocalIntake, dispatch: Any, now: float) -> None:
    """An alert that started 45 days ago, first delivered a day ago and acted on then,
    whose resolution says it ended 40 days ago (Alertmanager's endsAt)."""
    start = now - 45 * DAY
    post(intake, now - DAY, firing("ServiceDown", "batch", start))
    dispatch(now - DAY + 1)
    post(intake, now - DAY + 60, resolved("ServiceDown", "batch", start, now - 40 * DAY))


def rows(store: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row of `table`, ordered: to compare a journal before and after."""
    with store.transaction(write=False) as tx:
        return [tuple(row) for row in tx.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]


def incident_ids(store: Any) -> set[int]:
    with store.transaction(write=False) as tx:
        return {row[0] for row in tx.execute("SELECT id FROM incidents")}


def count(store: Any, sql: str, params: tuple[Any, ...] = ()) -> int:
    with store.transaction(write=False) as tx:
        return tx.execute(sql, params).fetchone()[0]
