"""`/metrics`: a view of the journal, plus the HTTP server's own request figures.

The journal collector reads running totals and current state from the store at scrape
time, so every process (and every restart) reports the same figures and no
multiprocess mode is needed. Labels are bounded: no incident ids or timestamps ever
become labels, and `service`, `target` and `strategy` take at most
`limits.max_label_values` values each, the rest folded into `other` (store/labels.py:
the journal admits the first values seen; this collector folds whatever else it reads,
and counts nothing itself).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from receiver import breaker, reliability
from receiver.config import Config
from receiver.store import approvals as approval_journal
from receiver.store import fleets as fleet_journal
from receiver.store.labels import FOLDED_METRIC, fold_label_set, fold_totals
from receiver.store.retention import PRUNED_METRIC
from receiver.store.retention import TABLES as PRUNED_TABLES
from receiver.store.totals import (
    ACTION_BUCKETS,
    CANARY_METRIC,
    DURATION_BUCKETS,
    ESCALATIONS_METRIC,
    RUNS_METRIC,
    STEPS_METRIC,
    le,
)
from receiver.version import BuildInfo

COUNTERS = {
    "remediator_actions_total": (
        "Actions that reached a final status, by strategy, action and outcome.",
        ("strategy", "action", "outcome"),
    ),
    "remediator_actions_skipped_total": (
        "Actions skipped, by strategy and the gate (or refusal) that stopped them.",
        ("strategy", "reason"),
    ),
    "remediator_alerts_received_total": (
        "Alerts received in accepted webhook notifications, by status (repeats included).",
        ("status",),
    ),
    "remediator_alerts_rejected_total": (
        "Alerts of accepted notifications refused alone (not journaled) or journaled with "
        "an annotation cut (reason `truncated`), by reason.",
        ("reason",),
    ),
    "remediator_alerts_truncated_total": (
        "Alerts that Alertmanager left out of notifications (their truncatedAlerts: the "
        "max_alerts of its webhook config).",
        (),
    ),
    "remediator_reconciliations_total": (
        "Reconciliations with Alertmanager, by outcome: ok (it answered) or failed (it "
        "could not be asked, so nothing was closed).",
        ("outcome",),
    ),
    "remediator_incidents_reconciled_total": (
        "Firing incidents closed by reconciliation because Alertmanager no longer held "
        "their alert.",
        (),
    ),
    STEPS_METRIC: (
        "Runbook steps that reached a final status, by strategy, step (its 1-based index) "
        "and outcome.",
        ("strategy", "step", "outcome"),
    ),
    RUNS_METRIC: (
        "Runbook runs that ended, by strategy and status: cured, uncured (escalated), "
        "cancelled (the alert resolved) or dry_run.",
        ("strategy", "status"),
    ),
    ESCALATIONS_METRIC: (
        "Attempts to deliver an escalation (of a runbook run that ended uncured, or a "
        "fleet's one escalation), by outcome: sent, undeliverable (no escalation executor) "
        "or retrying (it failed; tried again later).",
        ("outcome",),
    ),
    CANARY_METRIC: (
        "Canary analyses of fleet waves, by strategy and verdict: pass (the wave goes on), "
        "fail (the canaries worse than the baseline: the wave halts) or inconclusive (too "
        "little data; the fleet's on_inconclusive decides).",
        ("strategy", "verdict"),
    ),
    FOLDED_METRIC: (
        "Events journaled under the label value `other` because the label already had "
        "limits.max_label_values values (incidents closed: service; actions finished: "
        "strategy; breakers created: target).",
        ("label",),
    ),
    PRUNED_METRIC: (
        "Journal rows deleted by retention (the background job or `remediator db prune`), "
        "by table.",
        ("table",),
    ),
}
HISTOGRAMS = {
    "remediator_incident_duration_seconds": (
        "Duration of resolved incidents (startsAt to endsAt), the source of MTTR.",
        ("service",),
        DURATION_BUCKETS,
    ),
    "remediator_action_duration_seconds": (
        "Time from an action's start to its outcome, verification included.",
        ("strategy", "action"),
        ACTION_BUCKETS,
    ),
    "remediator_time_to_remediate_seconds": (
        "Time from the alert's start to the successful end of its action.",
        ("strategy",),
        DURATION_BUCKETS,
    ),
}


#: What a planned action waits for (`waiting` in the journal; `queued`: nothing, it is
#: only next in line): each is exported, at zero when no action waits for it.
WAITING_REASONS = (
    "wait",
    "locked",
    "cooldown",
    "concurrency",
    "fleet",
    "awaiting_approval",
    "queued",
)

#: Any other method is counted as "other": a client must not mint metric series.
HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


@dataclass
class HttpMetrics:
    """Per-process request figures of the HTTP server itself."""

    requests: Counter
    latency: Histogram
    _series: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        """Count one request by its route (never its raw path: bounded labels)."""
        method = method if method in HTTP_METHODS else "other"
        key = (handler, method, status)
        found = self._series.get(key)
        if found is None:  # labelled children are looked up once, then reused
            found = self._series[key] = (
                self.latency.labels(handler),
                self.requests.labels(handler, method, str(status)),
            )
        found[0].observe(seconds)
        found[1].inc()


def http_metrics(registry: CollectorRegistry) -> HttpMetrics:
    return HttpMetrics(
        Counter(
            "remediator_http_requests",
            "HTTP requests served by this process, by handler, method and status code.",
            ("handler", "method", "code"),
            registry=registry,
        ),
        Histogram(
            "remediator_http_request_duration_seconds",
            "Latency of HTTP requests served by this process.",
            ("handler",),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        ),
    )


def register_build_info(registry: CollectorRegistry, info: BuildInfo) -> None:
    """`remediator_build_info{version, python} 1`, Prometheus' convention for what runs
    (`prometheus_build_info{version, revision, branch, goversion}`): join on it to see
    which version a figure came from, or count versions across a fleet."""
    Gauge(
        "remediator_build_info",
        "A metric with a constant '1' value labeled by the version of remediator and of "
        "the Python running it.",
        ("version", "python"),
        registry=registry,
    ).labels(info.version, info.python).set(1)


class JournalCollector:
    """prometheus_client collector whose every figure comes from the store."""

    def __init__(self, store: Any, config: Callable[[], Config], clock=time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # dynamic: do not let the registry collect at registration time

    def collect(self) -> Iterator[Metric]:
        admitted = self.store.admitted_label_values()
        totals = fold_totals(self.store.metric_totals(), admitted)
        _seed_pruned(totals)
        yield from _counters(totals)
        yield from _histograms(totals)
        yield _breakers(self.store.list_breakers(), admitted)
        yield from _replicas(self.store.list_targets(), admitted)
        yield _waiting(self.store.waiting_counts())
        yield _awaiting_approval(self.store.look(approval_journal.awaiting_counts), self.config())
        yield from _fleets(self.store.look(fleet_journal.gauges))
        yield from self._services(admitted)

    def _services(self, admitted: dict[str, set[str]]) -> Iterator[Metric]:
        config = self.config()
        now = self.clock()
        window = config.defaults.mttr_window
        facts = self.store.service_facts(now - window, now, admitted)
        found = reliability.per_service(facts, window, now)
        mttr = GaugeMetricFamily(
            "remediator_mttr_seconds",
            "Mean incident duration per service over defaults.mttr_window (firing: so far).",
            labels=("service",),
        )
        availability = GaugeMetricFamily(
            "remediator_availability_ratio",
            "MTBF / (MTBF + MTTR) per service over the same window (1 without incidents).",
            labels=("service",),
        )
        health = GaugeMetricFamily(
            "remediator_service_health",
            "1 for the service's current health: healthy, unhealthy, degraded or critical.",
            labels=("service", "status"),
        )
        for service, (figures, current) in found.items():
            mttr.add_metric([service], figures.mttr)
            availability.add_metric([service], figures.availability)
            for status in reliability.HEALTH_STATUSES:
                health.add_metric([service, status], 1.0 if status == current else 0.0)
        open_incidents = GaugeMetricFamily(
            "remediator_open_incidents", "Incidents currently firing."
        )
        open_incidents.add_metric([], self.store.open_incident_count())
        yield from (mttr, availability, health, open_incidents)


def _seed_pruned(totals: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    """A zero series per table that retention prunes, before its first pass deletes
    anything (a series born at 1 would hide the first increase from rate())."""
    series = totals.setdefault(PRUNED_METRIC, [])
    present = {labels.get("table") for labels, _ in series}
    series += [({"table": table}, 0.0) for table in PRUNED_TABLES if table not in present]


def _counters(totals: dict[str, list[tuple[dict[str, str], float]]]) -> Iterator[Metric]:
    for name, (help_text, labels) in COUNTERS.items():
        family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=labels)
        for label_values, value in totals.get(name, []):
            family.add_metric([label_values.get(label, "") for label in labels], value)
        yield family


def _histograms(totals: dict[str, list[tuple[dict[str, str], float]]]) -> Iterator[Metric]:
    for name, (help_text, labels, bounds) in HISTOGRAMS.items():
        family = HistogramMetricFamily(name, help_text, labels=labels)
        series: dict[tuple[str, ...], dict[str, Any]] = {}
        for label_values, value in totals.get(f"{name}_bucket", []):
            key = tuple(label_values.get(label, "") for label in labels)
            series.setdefault(key, {"buckets": {}, "sum": 0.0})["buckets"][label_values["le"]] = (
                value
            )
        for label_values, value in totals.get(f"{name}_sum", []):
            key = tuple(label_values.get(label, "") for label in labels)
            series.setdefault(key, {"buckets": {}, "sum": 0.0})["sum"] = value
        for key, data in sorted(series.items()):
            # a bound the journal has no row for counted nothing (read_totals gives
            # every known bound one: this keeps any other histogram whole too)
            counts = {le(bound): 0.0 for bound in (*bounds, math.inf)} | data["buckets"]
            buckets = sorted(counts.items(), key=lambda item: _bound(item[0]))
            family.add_metric(list(key), buckets, data["sum"])
        yield family


def _bound(le: str) -> float:
    return float("inf") if le == "+Inf" else float(le)


def _breakers(rows: list[dict[str, Any]], admitted: dict[str, set[str]]) -> Metric:
    family = GaugeMetricFamily(
        "remediator_breaker_state",
        "1 for the circuit breaker's current state per (strategy, target), 0 for the others "
        "(for target or strategy `other`: how many folded breakers are in each state).",
        labels=("strategy", "target", "state"),
    )
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        labels = fold_label_set({"strategy": row["strategy"], "target": row["target"]}, admitted)
        states = counts.setdefault((labels["strategy"], labels["target"]), {})
        # as stored: what the dispatcher decides from at the next claim
        states[row["state"]] = states.get(row["state"], 0.0) + 1.0
    for (strategy, target), states in counts.items():
        for candidate in breaker.STATES:
            family.add_metric([strategy, target, candidate], states.get(candidate, 0.0))
    return family


def _fleets(rows: list[tuple[str, str, int, int]]) -> Iterator[Metric]:
    """Per (strategy, fleet): targets in flight, and the running wave's stage (0 the
    canary, k its k-th stage, -1 no wave running)."""
    in_flight = GaugeMetricFamily(
        "remediator_fleet_in_flight",
        "Targets of the fleet being acted on (admitted, their runbook run not ended).",
        labels=("strategy", "fleet"),
    )
    stage = GaugeMetricFamily(
        "remediator_fleet_wave_stage",
        "Stage of the fleet's running wave: 0 the canary, k its k-th stage, -1 no wave.",
        labels=("strategy", "fleet"),
    )
    for strategy, fleet, flying, at in rows:
        in_flight.add_metric([strategy, fleet], float(flying))
        stage.add_metric([strategy, fleet], float(at))
    yield from (in_flight, stage)


def _waiting(counts: dict[str, int]) -> Metric:
    """Planned actions by what they wait for: WAITING_REASONS always, and any other
    reason the journal holds (a gate added later) after them."""
    family = GaugeMetricFamily(
        "remediator_actions_waiting",
        "Planned actions not yet run, by what they wait for: wait (the runbook step's own "
        "wait), locked (another action on the target), cooldown, concurrency (the global "
        "cap), fleet (its fleet's max_in_flight or wave), queued (nothing: next in line).",
        labels=("reason",),
    )
    for reason in (*WAITING_REASONS, *sorted(set(counts) - set(WAITING_REASONS))):
        family.add_metric([reason], float(counts.get(reason, 0)))
    return family


def _awaiting_approval(counts: dict[str, int], config: Config) -> Metric:
    """Actions awaiting a person's approval, by strategy: every configured strategy
    that requires approval (zero when none waits), and any other the journal holds."""
    family = GaugeMetricFamily(
        "remediator_actions_awaiting_approval",
        "Actions held until a person approves or denies them (approval.required), by strategy.",
        labels=("strategy",),
    )
    configured = [s.name for s in config.strategies if any(step.approval for step in (s, *s.steps))]
    for strategy in (*configured, *sorted(set(counts) - set(configured))):
        family.add_metric([strategy], float(counts.get(strategy, 0)))
    return family


def _replicas(rows: list[dict[str, Any]], admitted: dict[str, set[str]]) -> Iterator[Metric]:
    names = {
        "current": ("remediator_replicas", "Replicas running, as last read from the executor."),
        "desired": ("remediator_replicas_desired", "Replicas the last scale decision wanted."),
        "min": ("remediator_replicas_min", "The strategy's min_replicas."),
        "max": ("remediator_replicas_max", "The strategy's max_replicas."),
    }
    latest = {row["target"]: row for row in sorted(rows, key=lambda r: r["updated_at"])}
    folded: dict[str, dict[str, float]] = {}  # target -> figure -> value (`other`: summed)
    for target, row in latest.items():
        name = fold_label_set({"target": target}, admitted)["target"]
        figures = folded.setdefault(name, dict.fromkeys(names, 0.0))
        for key in names:
            figures[key] += row[key]
    for key, (name, help_text) in names.items():
        family = GaugeMetricFamily(
            name, f"{help_text} Target `other`: the sum over folded targets.", labels=("target",)
        )
        for target, figures in sorted(folded.items()):
            family.add_metric([target], figures[key])
        yield family
