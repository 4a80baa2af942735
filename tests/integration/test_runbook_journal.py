"""Runbooks in a real journal (SQLite and PostgreSQL): runs.py driven as the dispatcher
drives it — claims with the real gates, outcomes with `follow` in the same transaction —
but with outcomes chosen by the test instead of executors, on an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from receiver import gates, runs
from receiver.alerts import parse_notification
from receiver.config import Config, parse_config
from receiver.engine import ingest
from receiver.store.dispatch import ActionRow, GateReader
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

T = 1_800_000_000.0

CONFIG_YAML = """\
prometheus: {url: "http://127.0.0.1:9"}
defaults: {max_concurrent_actions: 4, cooldown: 0s, budget: {max_actions: 3, window: 1h}}
executors: {logger: {type: log}}
strategies:
  - name: fix
    matchers: ['alertname="ServiceDown"']
    executor: logger
    target: '{{ labels.service }}'
    repeat_after: 10m
    steps:
      - {name: restart, action: restart}
      - {name: rollback, action: rollback, wait: 2m}
      - {name: page, action: escalate, when: 'vector(1) > 0'}
"""
CONFIG = parse_config(CONFIG_YAML)


def fire(store: Any, config: Config = CONFIG, now: float = T, **labels: str) -> None:
    ingest(store, config, parse_notification(notification(alert(**labels))), now)


def resolve(store: Any, now: float, **labels: str) -> None:
    resolved = alert(status="resolved", ends_at="2026-11-21T10:05:00Z", **labels)
    ingest(store, CONFIG, parse_notification(notification(resolved)), now)


def judge(config: Config, now: float):
    strategies = {s.name: s for s in config.strategies}

    def verdict(row: ActionRow, reader: GateReader) -> gates.Verdict:
        strategy = strategies[row.strategy].step(row.step)
        return gates.evaluate(strategy, row.target, reader.inputs(row, now - 3600), 4, now)

    return verdict


def claim(store: Any, now: float, config: Config = CONFIG) -> ActionRow | None:
    planned = runs.Planned()

    def follow(tx: Any, row: ActionRow) -> None:
        planned.add(runs.follow(tx, config, row.id, now))

    claimed = store.claim("worker", now, judge(config, now), follow)
    return claimed[0] if claimed else None


def finish(store: Any, row: ActionRow, status: str, reason: str, now: float) -> runs.Planned:
    planned = runs.Planned()

    def follow(tx: Any, finished: ActionRow) -> None:
        planned.add(runs.follow(tx, CONFIG, finished.id, now))

    store.finish(row, status, reason, "", now, None, follow)
    return planned


def actions(store: Any) -> list[dict[str, Any]]:
    return sorted(store.list_actions(limit=1000).items, key=lambda a: a["id"])


def run_rows(store: Any) -> list[dict[str, Any]]:
    with store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT id, run, status, current_step, escalation, reason, repeat_at "
            "FROM runbook_runs ORDER BY id"
        ).fetchall()
    names = ("id", "run", "status", "current_step", "escalation", "reason", "repeat_at")
    return [dict(zip(names, row, strict=True)) for row in rows]


def step_of(store: Any, action_id: int) -> tuple[int, int, str | None]:
    with store.transaction(write=False) as tx:
        return tx.execute(
            "SELECT step, run_id, waiting FROM actions WHERE id = ?", (action_id,)
        ).fetchone()


def test_a_failed_step_plans_the_next_after_its_wait_in_the_same_transaction(store: Any) -> None:
    fire(store, service="web")
    first = claim(store, T)
    assert first is not None and first.step == 1 and first.action == "restart"

    planned = finish(store, first, "failed", "verification failed: up not true", T + 10)

    assert planned.actions == 1
    rollback = actions(store)[-1]
    assert (rollback["status"], rollback["action"]) == ("planned", "rollback")
    step, run_id, waiting = step_of(store, rollback["id"])
    assert (step, run_id, waiting) == (2, first.run_id, "wait")
    assert rollback["reason"].startswith("waiting: step 1 (restart) failed")
    # not claimed before its wait of 2m is over, then claimed
    assert claim(store, T + 10 + 119) is None
    second = claim(store, T + 10 + 120)
    assert second is not None and second.id == rollback["id"]
    assert run_rows(store)[0]["current_step"] == 2


def test_a_success_cures_the_run_and_nothing_more_is_planned(store: Any) -> None:
    fire(store, service="web")
    first = claim(store, T)

    planned = finish(store, first, "succeeded", "restarted", T + 5)

    assert planned.actions == 0 and planned.escalations == 0
    assert [a["status"] for a in actions(store)] == ["succeeded"]
    run = run_rows(store)[0]
    assert (run["status"], run["current_step"], run["escalation"]) == ("cured", None, None)
    assert run["repeat_at"] == pytest.approx(T + 5 + 600)


def test_out_of_steps_ends_uncured_and_owes_exactly_one_escalation(store: Any) -> None:
    fire(store, service="web")
    now = T
    for step in (1, 2, 3):
        row = claim(store, now)
        assert row is not None and row.step == step
        now += 1
        planned = finish(store, row, "failed", f"step {step} did not help", now)
        now += 121  # past the next step's wait
    assert planned.escalations == 1
    run = run_rows(store)[0]
    assert (run["status"], run["escalation"]) == ("uncured", "pending")
    assert "out of steps" in run["reason"]
    owed = store.claim_escalations(now)
    assert len(owed) == 1
    assert [r.index for r in owed[0].trail] == [1, 2, 3]
    assert store.claim_escalations(now + 1) == []  # leased: nobody else takes it


def test_a_resolved_alert_cancels_the_waiting_step_and_its_run(store: Any) -> None:
    fire(store, service="web")
    finish(store, claim(store, T), "failed", "no luck", T + 1)
    assert actions(store)[-1]["status"] == "planned"

    resolve(store, T + 30, service="web")

    assert [a["status"] for a in actions(store)] == ["failed", "cancelled"]
    run = run_rows(store)[0]
    assert (run["status"], run["escalation"]) == ("cancelled", None)


def test_a_step_refused_at_rendering_is_skipped_and_the_next_planned_at_ingest(
    store: Any,
) -> None:
    config = parse_config(
        CONFIG_YAML.replace(
            "- {name: restart, action: restart}",
            "- {name: restart, action: restart, target: '{{ labels.host }}'}",
        )
    )
    fire(store, config, service="web", host="../etc")
    statuses = [(a["action"], a["status"]) for a in actions(store)]
    assert statuses == [("restart", "skipped"), ("rollback", "planned")]
    assert actions(store)[0]["reason"].startswith("refused:")


def test_budget_ends_the_run_uncured(store: Any) -> None:
    for minute in range(3):  # three other incidents use the target's budget of 3
        fire(store, now=T + minute, service="web", instance=str(minute))
        finish(store, claim(store, T + minute), "succeeded", "ok", T + minute)
    fire(store, now=T + 10, service="web", instance="late")

    assert claim(store, T + 10) is None

    last = actions(store)[-1]
    assert (last["status"], last["reason"].split(":")[0]) == ("skipped", "budget")
    assert run_rows(store)[-1]["status"] == "uncured"
    assert run_rows(store)[-1]["escalation"] == "pending"


def test_cooldown_delays_another_incident_until_it_ends(store: Any) -> None:
    config = parse_config(CONFIG_YAML.replace("cooldown: 0s", "cooldown: 5m"))
    fire(store, config, service="web", instance="a")
    finish(store, claim(store, T, config), "succeeded", "ok", T + 1)
    fire(store, config, now=T + 60, service="web", instance="b")

    assert claim(store, T + 60, config) is None

    waiting = actions(store)[-1]
    assert waiting["status"] == "planned"
    assert waiting["reason"].startswith("waiting: cooldown:")
    assert store.waiting_counts() == {"cooldown": 1}
    assert claim(store, T + 299, config) is None
    claimed = claim(store, T + 300, config)
    assert claimed is not None and claimed.id == waiting["id"]


def test_repeat_runs_again_from_step_1_when_the_cure_did_not_last(store: Any) -> None:
    fire(store, service="web")
    finish(store, claim(store, T), "succeeded", "ok", T + 1)
    planned = runs.Planned()

    def start(tx: Any, run: Any) -> None:
        planned.add(runs.repeat_due(tx, CONFIG, run, T + 601))

    assert store.repeat_due(T + 600, start) == 0
    assert store.repeat_due(T + 601, start) == 1
    assert planned.actions == 1
    assert [(r["run"], r["status"]) for r in run_rows(store)] == [(1, "cured"), (2, "running")]
    repeated = actions(store)[-1]
    assert (repeated["status"], step_of(store, repeated["id"])[0]) == ("planned", 1)
    assert store.repeat_due(T + 700, start) == 0  # taken once


def test_a_step_cut_short_by_a_shutdown_ends_the_run_uncured_without_a_next_step(
    store: Any,
) -> None:
    """Remediator redeployed while step 1 ran: going on to the rollback would act on a
    step that never failed; the run ends uncured and a person is told once."""
    fire(store, service="web")
    row = claim(store, T)
    reason = "killed at shutdown after 75s grace (process group killed)"
    planned = runs.Planned()

    def follow(tx: Any, finished: ActionRow) -> None:
        planned.add(runs.follow(tx, CONFIG, finished.id, T + 80, interrupted=True))

    store.finish(row, "failed", reason, "", T + 80, None, follow)

    assert planned.actions == 0 and planned.escalations == 1
    assert [a["status"] for a in actions(store)] == ["failed"]
    run = run_rows(store)[0]
    assert (run["status"], run["escalation"]) == ("uncured", "pending")
    assert "Remediator shut down while it ran (killed at shutdown" in run["reason"]
