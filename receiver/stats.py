"""`GET /api/v1/stats`: the orchestrator statistics as JSON, from the same journal
figures as /metrics (attempts, successes, success rate by strategy, MTTR and
availability by service)."""

from __future__ import annotations

import time
from typing import Any

from receiver import reliability
from receiver.config import Config
from receiver.metrics import fold_service_facts
from receiver.store.labels import fold_totals

EXECUTED = ("succeeded", "failed", "timed_out")


def orchestrator_stats(store: Any, config: Config, now: float | None = None) -> dict[str, Any]:
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
    attempts = sum(e["attempts"] for e in by_strategy.values())
    successes = sum(e["successes"] for e in by_strategy.values())
    return {
        "attempts": attempts,
        "successes": successes,
        "success_rate": successes / attempts if attempts else None,
        "strategies": by_strategy,
        "window_seconds": config.defaults.mttr_window,
        "services": _services(store, config, now, admitted),
    }


def _services(
    store: Any, config: Config, now: float, admitted: dict[str, set[str]]
) -> dict[str, dict[str, Any]]:
    window = config.defaults.mttr_window
    facts = fold_service_facts(store.service_facts(now - window), admitted)
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
