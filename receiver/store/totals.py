"""Running totals for counters and histograms, kept in the journal itself.

Each total is incremented in the same transaction as the event it counts, so
`/metrics` reports the same figures from every process, counters never go backwards
across restarts, and pruning old incidents or actions would not lower them. Label
values that come from alerts, templates or the config are folded where they are written
(`tx.labels`, see labels.py), so the totals stay bounded like the series they feed.

Histograms are stored per bucket: the row of bound `le` counts only the observations in
(previous bound, le], the +Inf row those above the last bound, so an observation adds to
ONE bucket row plus _sum and _count. Reading turns them back into Prometheus's cumulative
buckets (each row plus every row below it: read_totals), so `/metrics` shows what it
showed when every bucket at or above the value was written. Each stored row only grows,
and so does each cumulative sum of them.

    observe(7.0), bounds (1, 5, 15)   stored (per bucket)   read (cumulative)
                                      le=1    0             le=1    0
                                      le=5    0             le=5    0
                                      le=15   1  <- +1      le=15   1
                                      le=+Inf 0             le=+Inf 1
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from receiver.alerts import REJECT_REASONS
from receiver.store.jsontext import canonical_json  # the journal's one encoder: keys as stored

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
ACTION_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
SKIP_REASONS = (
    "dry_run",
    "locked",
    "cooldown",
    "budget",
    "breaker_open",
    "precondition",
    "refused",
    "when",
    "halted",
)
EXECUTED = ("succeeded", "failed", "timed_out")


def _key(labels: dict[str, str]) -> str:
    return _encoded(tuple(labels.items()))


@lru_cache(maxsize=4096)
def _encoded(items: tuple[tuple[str, str], ...]) -> str:
    """A label set's stored key, encoded once per label set (seven per finished action
    otherwise). Label sets are bounded (limits.max_label_values folds the rest), and so
    is the cache."""
    return canonical_json(dict(items))


def add(tx: SqlTransaction, metric: str, labels: dict[str, str], delta: float = 1.0) -> None:
    tx.add_total(metric, _key(labels), delta)


def touch_histogram(
    tx: SqlTransaction, metric: str, labels: dict[str, str], buckets: tuple[float, ...]
) -> None:
    """Create a histogram's series at zero, so that the first real observation is an
    increase Prometheus can see (a series born at 1 hides its first event from rate())."""
    for bound in (*buckets, math.inf):
        add(tx, f"{metric}_bucket", {**labels, "le": le(bound)}, 0.0)
    add(tx, f"{metric}_sum", labels, 0.0)
    add(tx, f"{metric}_count", labels, 0.0)


def seed_strategy(tx: SqlTransaction, strategy: str, action: str) -> None:
    """Zero series for everything a configured strategy can count (bounded by config,
    and folded past limits.max_label_values like every event)."""
    strategy = tx.labels.value("strategy", strategy, count=False)
    for outcome in ("succeeded", "failed", "timed_out", "skipped", "cancelled"):
        add(
            tx,
            "remediator_actions_total",
            {"strategy": strategy, "action": action, "outcome": outcome},
            0.0,
        )
    for reason in (*SKIP_REASONS, "config"):
        add(tx, "remediator_actions_skipped_total", {"strategy": strategy, "reason": reason}, 0.0)
    touch_histogram(
        tx,
        "remediator_action_duration_seconds",
        {"strategy": strategy, "action": action},
        ACTION_BUCKETS,
    )
    touch_histogram(
        tx, "remediator_time_to_remediate_seconds", {"strategy": strategy}, DURATION_BUCKETS
    )


def seed_service(tx: SqlTransaction, service: str) -> str:
    """Zero incident-duration series for a service, the first time it is seen (one lookup
    on the hot path instead of a dozen upserts). Returns the service's series name:
    itself, or `other` once limits.max_label_values services have their own."""
    service = tx.labels.value("service", service, count=False)
    metric = "remediator_incident_duration_seconds"
    key = (f"{metric}_count", _key({"service": service}))
    known = tx.execute(
        "SELECT 1 FROM metric_totals WHERE metric = ? AND labels = ? UNION ALL "
        "SELECT 1 FROM metric_total_shards WHERE metric = ? AND labels = ? LIMIT 1",
        (*key, *key),
    ).fetchone()
    if not known:
        touch_histogram(tx, metric, {"service": service}, DURATION_BUCKETS)
    return service


def observe(
    tx: SqlTransaction,
    metric: str,
    labels: dict[str, str],
    value: float,
    buckets: tuple[float, ...],
) -> None:
    """A histogram observation as one per-bucket counter plus _sum and _count: the bucket
    of the first bound >= `value` (`buckets` ascending; +Inf added) counts it (none for
    NaN, which no bound is >= to). Read back cumulative by read_totals (module docstring)."""
    keys = _bucket_keys(tuple(sorted(labels.items())), buckets)
    if value == value:  # not NaN
        # the first bound >= value, found by bisection: the one bucket it falls in
        tx.add_total(f"{metric}_bucket", keys[bisect_left(buckets, value)], 1.0)
    add(tx, f"{metric}_sum", labels, value)
    add(tx, f"{metric}_count", labels)


@lru_cache(maxsize=4096)
def _bucket_keys(
    labels: tuple[tuple[str, str], ...], buckets: tuple[float, ...]
) -> tuple[str, ...]:
    """The stored label keys of a histogram's buckets (`le` added), +Inf last: encoded
    once per label set instead of once per bucket and observation (the dispatcher's
    hot path: two histograms per finished action). Label sets are bounded
    (limits.max_label_values folds the rest), and so is the cache."""
    return tuple(_key({**dict(labels), "le": le(bound)}) for bound in (*buckets, math.inf))


def le(bound: float) -> str:
    return "+Inf" if bound == math.inf else f"{float(bound):g}"


#: Skips by the approval gate (approvals.py), by how the approval ended: reason prefix
#: -> label. Not seeded at zero: only strategies with `approval` have them.
APPROVAL_SKIPS = {"denied by ": "denied", "approval timed out": "approval_timeout"}


def skip_reason(reason: str) -> str:
    """The gate a skip reason starts with (`cooldown: ...`), bounded to a known set."""
    head = reason.split(":", 1)[0].strip()
    for prefix, label in APPROVAL_SKIPS.items():
        if head.startswith(prefix):
            return label
    return head if head in SKIP_REASONS else "config"


#: remediator_alerts_received_total's two series keys, encoded once (every notification
#: counts both)
_RECEIVED_KEYS = {status: _key({"status": status}) for status in ("firing", "resolved")}


def count_alerts(tx: SqlTransaction, firing: int, resolved: int) -> None:
    for status, count in (("firing", firing), ("resolved", resolved)):
        tx.add_total("remediator_alerts_received_total", _RECEIVED_KEYS[status], count)


def count_intake(tx: SqlTransaction, rejected: dict[str, int], dropped: int) -> None:
    """Alerts refused alone or journaled cut, by reason (alerts.REJECT_REASONS, a
    bounded set: anything else counts as invalid_alert), and alerts that Alertmanager
    left out of a notification (`truncatedAlerts`)."""
    for reason, count in sorted(rejected.items()):
        bounded = reason if reason in REJECT_REASONS else "invalid_alert"
        add(tx, "remediator_alerts_rejected_total", {"reason": bounded}, count)
    if dropped:
        add(tx, "remediator_alerts_truncated_total", {}, dropped)


def seed_intake(tx: SqlTransaction) -> None:
    """Zero series for every rejection reason and for alerts left out by Alertmanager."""
    for reason in REJECT_REASONS:
        add(tx, "remediator_alerts_rejected_total", {"reason": reason}, 0.0)
    add(tx, "remediator_alerts_truncated_total", {}, 0.0)


def count_incident_closed(tx: SqlTransaction, service: str, duration: float) -> None:
    labels = tx.labels.labels({"service": service})
    observe(tx, "remediator_incident_duration_seconds", labels, duration, DURATION_BUCKETS)


RECONCILIATION_OUTCOMES = ("ok", "failed")


def seed_reconciliation(tx: SqlTransaction) -> None:
    """Zero series for reconciliation's counters, so its first run is a visible rise."""
    for outcome in RECONCILIATION_OUTCOMES:
        add(tx, "remediator_reconciliations_total", {"outcome": outcome}, 0.0)
    add(tx, "remediator_incidents_reconciled_total", {}, 0.0)


def count_reconciliation(tx: SqlTransaction, outcome: str, closed: int) -> None:
    """One reconciliation run (`ok`: Alertmanager answered; `failed`: it could not be
    asked) and the incidents it closed."""
    add(tx, "remediator_reconciliations_total", {"outcome": outcome})
    add(tx, "remediator_incidents_reconciled_total", {}, float(closed))


class ActionFacts(NamedTuple):
    """What counting a final action needs from its row: times in epoch seconds, `step`
    1-based (None: journaled before runbooks), `run_id` None outside a run."""

    strategy: str
    action: str
    started_at: float | None
    finished_at: float | None
    alert_start: float
    step: int | None
    run_id: int | None


def count_action_final(
    tx: SqlTransaction,
    action_id: int,
    status: str,
    reason: str,
    facts: ActionFacts | None = None,
) -> None:
    """Count an action reaching a final status, with its durations when it ran, and as
    an outcome of its runbook step (`step`: its 1-based index, bounded by config.MAX_STEPS).
    `facts`: its row as the caller holds it (final status written), or None to read it."""
    if facts is None:
        facts = ActionFacts(
            *tx.execute(
                "SELECT a.strategy, a.action, a.started_at, a.finished_at, i.starts_at_ts, "
                "a.step, a.run_id FROM actions a JOIN incidents i ON i.id = a.incident_id "
                "WHERE a.id = ?",
                (action_id,),
            ).fetchone()
        )
    strategy, action, started_at, finished_at, alert_start, step, run_id = facts
    strategy = tx.labels.value("strategy", strategy)
    add(tx, "remediator_actions_total", {"strategy": strategy, "action": action, "outcome": status})
    if run_id is not None:
        add(
            tx,
            STEPS_METRIC,
            {"strategy": strategy, "step": str(step or 1), "outcome": status},
        )
    if status == "skipped":
        add(
            tx,
            "remediator_actions_skipped_total",
            {"strategy": strategy, "reason": skip_reason(reason)},
        )
    if status in EXECUTED and started_at is not None and finished_at is not None:
        observe(
            tx,
            "remediator_action_duration_seconds",
            {"strategy": strategy, "action": action},
            max(0.0, finished_at - started_at),
            ACTION_BUCKETS,
        )
    if status == "succeeded" and finished_at is not None:
        observe(
            tx,
            "remediator_time_to_remediate_seconds",
            {"strategy": strategy},
            max(0.0, finished_at - alert_start),
            DURATION_BUCKETS,
        )


STEPS_METRIC = "remediator_runbook_steps_total"
RUNS_METRIC = "remediator_runbook_runs_total"
ESCALATIONS_METRIC = "remediator_escalations_total"
RUN_ENDS = ("cured", "uncured", "cancelled", "dry_run")
ESCALATION_OUTCOMES = ("sent", "undeliverable", "retrying")


def seed_runbook(tx: SqlTransaction, strategy: str, steps: int) -> None:
    """Zero series for a configured runbook: each step's outcomes and each run end."""
    strategy = tx.labels.value("strategy", strategy, count=False)
    for step in range(1, steps + 1):
        for outcome in ("succeeded", "failed", "timed_out", "skipped", "cancelled"):
            add(tx, STEPS_METRIC, {"strategy": strategy, "step": str(step), "outcome": outcome}, 0)
    for status in RUN_ENDS:
        add(tx, RUNS_METRIC, {"strategy": strategy, "status": status}, 0.0)


def seed_escalations(tx: SqlTransaction) -> None:
    for outcome in ESCALATION_OUTCOMES:
        add(tx, ESCALATIONS_METRIC, {"outcome": outcome}, 0.0)


def count_run_end(tx: SqlTransaction, strategy: str, status: str) -> None:
    """A runbook run ended: cured, uncured (escalated), cancelled or dry_run."""
    strategy = tx.labels.value("strategy", strategy)
    add(tx, RUNS_METRIC, {"strategy": strategy, "status": status})


CANARY_METRIC = "remediator_canary_verdicts_total"
CANARY_VERDICTS = ("pass", "fail", "inconclusive")


def seed_canary(tx: SqlTransaction, strategy: str) -> None:
    """Zero series of a strategy whose fleet is analysed: each verdict."""
    strategy = tx.labels.value("strategy", strategy, count=False)
    for verdict in CANARY_VERDICTS:
        add(tx, CANARY_METRIC, {"strategy": strategy, "verdict": verdict}, 0.0)


def count_canary_verdict(tx: SqlTransaction, strategy: str, verdict: str) -> None:
    """A canary analysis of a fleet's wave came to `verdict` (pass, fail, inconclusive)."""
    strategy = tx.labels.value("strategy", strategy)
    add(tx, CANARY_METRIC, {"strategy": strategy, "verdict": verdict})


def count_escalation(tx: SqlTransaction, outcome: str) -> None:
    """An attempt to deliver a runbook's escalation: sent, undeliverable (nowhere to send
    it), or retrying (the escalation executor failed; tried again later)."""
    add(tx, ESCALATIONS_METRIC, {"outcome": outcome})


#: Rows per upsert statement (store.SqlTransaction.flush_totals): a finished action's
#: nine or so totals, or an ingest's two, go in one statement; a larger flush (seeding a
#: config's series) takes several. Each row count is its own statement text, so this
#: also bounds the texts the drivers' statement caches hold.
UPSERT_ROWS = 32


@lru_cache(maxsize=2 * UPSERT_ROWS)
def upsert_sql(rows: int, sharded: bool) -> str:
    """The statement adding `rows` deltas to their totals: (metric, labels, value) each,
    or (metric, labels, shard, value) when `sharded` (metric_total_shards, the rows of
    concurrent writers: store/locks.py). Its rows must name distinct series: PostgreSQL
    refuses a statement that updates one row twice."""
    table, columns = (
        ("metric_total_shards", ("metric", "labels", "shard"))
        if sharded
        else ("metric_totals", ("metric", "labels"))
    )
    names = ", ".join(columns)
    row = "(" + ", ".join("?" * (len(columns) + 1)) + ")"
    return (
        f"INSERT INTO {table} ({names}, value) VALUES {', '.join([row] * rows)} "
        f"ON CONFLICT ({names}) DO UPDATE SET value = {table}.value + excluded.value"
    )


def upserts(
    deltas: list[tuple[tuple[str, str], float]], shard: int | None
) -> Iterator[tuple[str, list[Any]]]:
    """The statements (SQL, parameters) adding `deltas`, ((metric, labels), delta) of
    distinct series in the order to write them, to their totals: metric_totals' rows
    (`shard` None: one writer at a time) or this shard's rows (store/locks.py)."""
    for first in range(0, len(deltas), UPSERT_ROWS):
        chunk = deltas[first : first + UPSERT_ROWS]
        params: list[Any] = []
        for (metric, labels), delta in chunk:
            params += (metric, labels, delta) if shard is None else (metric, labels, shard, delta)
        yield upsert_sql(len(chunk), shard is not None), params


#: Every running total: its row in metric_totals (SQLite's, and a journal's totals from
#: before shards) plus its shard rows (PostgreSQL's concurrent writers: store/locks.py).
READ_SQL = (
    "SELECT metric, labels, SUM(value) FROM (SELECT metric, labels, value FROM metric_totals "
    "UNION ALL SELECT metric, labels, value FROM metric_total_shards) AS t "
    "GROUP BY metric, labels"
)


#: the bucket bounds each histogram is observed with (+Inf implied): read_totals gives
#: every bound of a series a cumulative value, a bound never written counting 0
HISTOGRAM_BUCKETS = {
    "remediator_incident_duration_seconds": DURATION_BUCKETS,
    "remediator_action_duration_seconds": ACTION_BUCKETS,
    "remediator_time_to_remediate_seconds": DURATION_BUCKETS,
}

Series = list[tuple[dict[str, Any], float]]


def read_totals(rows: list[tuple[str, str, float]]) -> dict[str, Series]:
    """Running totals by metric from (metric, stored labels JSON, value) rows (READ_SQL):
    [(labels, value)] each, histogram buckets made cumulative (cumulative_buckets)."""
    found: dict[str, Series] = {}
    for metric, labels, value in rows:
        found.setdefault(metric, []).append((json.loads(labels), value))
    for metric, series in found.items():
        if metric.endswith("_bucket"):
            bounds = HISTOGRAM_BUCKETS.get(metric.removesuffix("_bucket"), ())
            found[metric] = cumulative_buckets(series, bounds)
    return found


def cumulative_buckets(series: Series, bounds: tuple[float, ...] = ()) -> Series:
    """Prometheus's cumulative buckets from per-bucket counts: per label set (`le` left
    out), each `le` row becomes the sum of the rows of its bound and every lower one,
    +Inf the total of all. `bounds` (+Inf implied) are given a row when the series has
    none (it counted nothing there); rows with another `le` are kept in bound order, and
    rows without `le` are returned unchanged. The label dicts given are returned, not
    copied (a scrape reads every bucket row: this runs once per row)."""
    grouped: dict[frozenset[tuple[str, str]], dict[str, list[Any]]] = {}
    result: Series = []
    for labels, value in series:
        bound_text = labels.get("le")
        if bound_text is None:
            result.append((labels, value))
            continue
        rows = grouped.setdefault(frozenset(labels.items() - {("le", bound_text)}), {})
        if bound_text in rows:  # the same series given twice: its counts add up
            rows[bound_text][1] += value
        else:
            rows[bound_text] = [labels, value]
    known = [le(bound) for bound in (*bounds, math.inf)]
    for key, rows in grouped.items():
        for bound_text in known:
            if bound_text not in rows:
                rows[bound_text] = [{**dict(key), "le": bound_text}, 0.0]
        running = 0.0
        for bound_text in sorted(rows, key=_bound_value):
            labels, count = rows[bound_text]
            running += count
            result.append((labels, running))
    return result


@lru_cache(maxsize=1024)
def _bound_value(bound_text: str) -> float:
    """An `le` label's bound: float("+Inf") is inf (cached: a few dozen distinct)."""
    return float(bound_text)
