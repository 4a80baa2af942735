"""`GET /api/v1/stats`: the orchestrator statistics as JSON, from the same journal
figures as /metrics (attempts, successes, success rate by strategy, MTTR and
availability by service), with each strategy's runbook: outcomes per step and runs
ended per status, and the planned actions by what they wait for."""

from __future__ import annotations

import time
from typing import Any

from receiver import reliability
from receiver.config import MAX_STEPS, Config
from receiver.metrics import WAITING_REASONS
from receiver.store.labels import fold_totals
from receiver.store.totals import ESCALATIONS_METRIC, RUNS_METRIC, STEPS_METRIC

EXECUTED = ("succeeded", "failed", "timed_out")


def orchestrator_stats(store: Any, config: Config, now: float | None = None) -> dict[str, Any]:
    """The figures as one JSON object (see the module docstring and README's Metrics).

    `strategies[name]` holds the counts per outcome, attempts, successes, success_rate
    (None before any attempt), and for a strategy with runbook figures `steps` (step
    index as text -> outcome -> count) and `runs` (status -> count). `waiting` counts the
    planned actions per WAITING_REASONS (and any other reason journaled), `escalations`
    the delivery attempts per outcome. Raises StoreUnavailable when the journal is."""
    now = time.time() if now is None else now
    admitted = store.admitted_label_values()  # bounded as /metrics is: same figures
    totals = fold_totals(store.metric_totals(), admitted)
    by_strategy: dict[str, dict[str, float]] = {}
    for labels, value in totals.get("remediator_actions_total", []):
        entry = by_strategy.setdefault(labels["strategy"], {"attempts": 0, "successes": 0})
        entry.setdefault(labels["outcome"], 0)
        entry[labels["outcome"]] += value
        if labels["outcome"] in EXECUTED:
            entry["attempts"] += value
        if labels["outcome"] == "succeeded":
            entry["successes"] += value
    for entry in by_strategy.values():
        entry["success_rate"] = (
            entry["successes"] / entry["attempts"] if entry["attempts"] else None
        )
    _runbooks(totals, by_strategy)
    waiting = store.waiting_counts()
    attempts = sum(e["attempts"] for e in by_strategy.values())
    successes = sum(e["successes"] for e in by_strategy.values())
    return {
        "attempts": attempts,
        "successes": successes,
        "success_rate": successes / attempts if attempts else None,
        "strategies": by_strategy,
        "waiting": {
            reason: waiting.get(reason, 0)
            for reason in (*WAITING_REASONS, *sorted(set(waiting) - set(WAITING_REASONS)))
        },
        "escalations": {
            labels["outcome"]: value for labels, value in totals.get(ESCALATIONS_METRIC, [])
        },
        "window_seconds": config.defaults.mttr_window,
        "services": _services(store, config, now, admitted),
    }


def _runbooks(totals: dict[str, Any], by_strategy: dict[str, dict[str, Any]]) -> None:
    """Add each strategy's `steps` (index -> outcome -> count, steps in index order) and
    `runs` (status -> count) from the runbook totals."""
    for labels, value in totals.get(STEPS_METRIC, []):
        entry = by_strategy.setdefault(labels["strategy"], {"attempts": 0, "successes": 0})
        step = entry.setdefault("steps", {}).setdefault(labels["step"], {})
        step[labels["outcome"]] = step.get(labels["outcome"], 0) + value
    for labels, value in totals.get(RUNS_METRIC, []):
        entry = by_strategy.setdefault(labels["strategy"], {"attempts": 0, "successes": 0})
        ended = entry.setdefault("runs", {})
        ended[labels["status"]] = ended.get(labels["status"], 0) + value
    for entry in by_strategy.values():
        if "steps" in entry:
            entry["steps"] = dict(sorted(entry["steps"].items(), key=_step_order))
        entry.setdefault("success_rate", None)


def _step_order(item: tuple[str, Any]) -> tuple[int, str]:
    """Steps by index (1, 2, ..., 10 rather than 1, 10, 2); a label that is no index last."""
    return (int(item[0]) if item[0].isdigit() else MAX_STEPS + 1, item[0])


def _services(
    store: Any, config: Config, now: float, admitted: dict[str, set[str]]
) -> dict[str, dict[str, Any]]:
    window = config.defaults.mttr_window
    facts = store.service_facts(now - window, now, admitted)
    found = reliability.per_service(facts, window, now)
    return {
        service: {
            "incidents": figures.incidents,
            "mttr_seconds": figures.mttr,
            "mtbf_seconds": figures.mtbf,
            "downtime_seconds": figures.downtime,
            "availability": figures.availability,
            "health": health,
        }
        for service, (figures, health) in found.items()
    }
