"""Canary analysis at the edge: sample the metrics from Prometheus, then judge (issue 15).

As Kayenta keeps metric fetching apart from its judge, this module only fetches: for each
analysis metric, one ``query_range`` per target of each side (the canary: the targets a
stage remediated; the baseline: the fleet's targets not yet remediated), every sample of
every series pooled per side, then ``analysis.judge`` decides. ::

    metric (name, canary queries, baseline queries)
      --first 50 queries a side (the rest noted)--> query_range(start, end, step) each
      --a query fails--> noted "error_ratio canary query 3: <why>", no samples
      --Prometheus unreachable--> noted once, the queries left are not sent
    samples by metric, per side --> analysis.judge --> Judgement (+ notes)

A failed query never raises: it contributes no samples, so the judge sees fewer (a side
left empty makes the metric inconclusive, which halts the wave unless
``on_inconclusive: proceed``). The notes say what was missing, for the journal beside the
judgement. Bounding the queries per side keeps a wave of 1,000 targets from sending 2,000
queries per metric: 50 targets a side give 50 x (interval / step) samples, far more than
the U test needs (analysis.py: 5 a side).

The caller renders each metric's query template per target (and validates the labels it
puts in, as for any query) and passes the rendered PromQL; it chooses the window: ``start``
and ``end`` in seconds since the epoch (the analysis interval ending now), ``step`` in
seconds (``analysis.step``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from receiver import analysis
from receiver.prometheus import PrometheusError, PrometheusUnreachable, check_range

# Targets sampled per side and metric; the first ones, in the order given.
MAX_TARGETS_PER_SIDE = 50

# (metric name, rendered canary queries, rendered baseline queries)
MetricQueries = tuple[str, Sequence[str], Sequence[str]]

CANARY, BASELINE = "canary", "baseline"


class RangeQuerier(Protocol):
    """What sampling needs of a Prometheus client (``PrometheusClient`` has it)."""

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[float]: ...


@dataclass(frozen=True)
class CanaryAnalysis:
    """A judgement and what was missing from its samples.

    ``judgement`` is ``analysis.judge``'s verdict; ``notes`` lists, in the order met, the
    queries that failed (and why), the targets left out by the bound per side, and the
    queries not sent because Prometheus was unreachable. Empty notes: every query answered.
    """

    judgement: analysis.Judgement
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def proceed(self) -> bool:
        return self.judgement.proceed

    def to_dict(self) -> dict[str, Any]:
        """The judgement's plain-JSON form with a ``notes`` list, for the journal."""
        return {**self.judgement.to_dict(), "notes": list(self.notes)}


def sample_metrics(
    client: RangeQuerier,
    metrics: Sequence[MetricQueries],
    start: float,
    end: float,
    step: float,
    *,
    max_targets: int = MAX_TARGETS_PER_SIDE,
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str]]:
    """Sample each metric over [start, end] for both sides.

    ``metrics``: per metric, ``(name, canary queries, baseline queries)``, the queries
    rendered PromQL, one per target. ``start``/``end`` in seconds since the epoch, ``step``
    in seconds. Returns ``(canary, baseline, notes)``: the samples per metric name, each
    side's targets pooled (every metric named gets a list, empty when nothing answered;
    NaN and +-Inf kept for the judge to drop and count), and one line per failed query,
    per side cut to ``max_targets`` queries (the first ones), and for the queries not sent
    once Prometheus proved unreachable.

    Raises ValueError only for the caller's own mistakes, before any query: a window
    Prometheus would refuse (see ``prometheus.check_range``), a ``max_targets`` below 1, a
    repeated metric name, or a side's queries given as one string. A query that fails is a
    note, never an exception.
    """
    check_range(start, end, step)
    if isinstance(max_targets, bool) or not isinstance(max_targets, int) or max_targets < 1:
        raise ValueError(f"max_targets must be an int >= 1, got {max_targets!r}")
    names = [name for name, _, _ in metrics]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"metrics named more than once: {repeated}")
    for name, *sides in metrics:
        for side, queries in zip((CANARY, BASELINE), sides, strict=True):
            # A lone string would be sampled character by character.
            if isinstance(queries, str):
                raise ValueError(f"{name} {side} queries must be a list of queries, not a string")

    sampler = _Sampler(client, start, end, step)
    canary: dict[str, list[float]] = {}
    baseline: dict[str, list[float]] = {}
    for name, canary_queries, baseline_queries in metrics:
        canary[name] = sampler.side(name, CANARY, canary_queries, max_targets)
        baseline[name] = sampler.side(name, BASELINE, baseline_queries, max_targets)
    return canary, baseline, sampler.notes


def analyse(
    client: RangeQuerier,
    settings: analysis.AnalysisSettings,
    canary_queries: Mapping[str, Sequence[str]],
    baseline_queries: Mapping[str, Sequence[str]],
    start: float,
    end: float,
    step: float,
    now: float,
    *,
    max_targets: int = MAX_TARGETS_PER_SIDE,
) -> CanaryAnalysis:
    """Sample every metric of ``settings`` and judge the canary against the baseline.

    ``canary_queries`` and ``baseline_queries`` map a metric's name to its rendered queries,
    one per target of that side (a metric missing from a mapping has no targets there, so
    it is judged inconclusive). ``start``, ``end``, ``step`` as ``sample_metrics``; ``now``
    (seconds since the epoch) is the judgement's ``judged_at``. Returns a
    ``CanaryAnalysis``: the ``analysis.Judgement`` and the notes of ``sample_metrics``.

    Raises ValueError for a name that is not a metric of ``settings`` (a caller bug, as
    ``analysis.judge`` does), or a bad window; never for a query that fails.
    """
    known = set(settings.names)
    for side, queries in ((CANARY, canary_queries), (BASELINE, baseline_queries)):
        unknown = sorted(set(queries) - known)
        if unknown:
            raise ValueError(f"{side} queries for unknown analysis metrics: {unknown}")
    metrics = [
        (name, canary_queries.get(name, ()), baseline_queries.get(name, ()))
        for name in settings.names
    ]
    canary, baseline, notes = sample_metrics(
        client, metrics, start, end, step, max_targets=max_targets
    )
    judgement = analysis.judge(settings, canary, baseline, now)
    return CanaryAnalysis(judgement, tuple(notes))


class _Sampler:
    """Runs the queries of one analysis, collecting notes; stops sending once Prometheus
    is unreachable, since 100 queries per metric would each wait out the timeout."""

    def __init__(self, client: RangeQuerier, start: float, end: float, step: float) -> None:
        self.client, self.start, self.end, self.step = client, start, end, step
        self.failures: list[str] = []
        self.unreachable: str | None = None
        self.unsent = 0

    @property
    def notes(self) -> list[str]:
        # One line for every query not sent, rather than one line per query.
        if not self.unsent:
            return list(self.failures)
        return [*self.failures, f"{self.unsent} more queries not sent: {self.unreachable}"]

    def side(self, name: str, side: str, queries: Sequence[str], limit: int) -> list[float]:
        queries = list(queries)
        if len(queries) > limit:
            self.failures.append(
                f"{name} {side}: sampled the first {limit} of {len(queries)} targets"
            )
        pooled: list[float] = []
        for index, query in enumerate(queries[:limit], start=1):
            pooled.extend(self._one(f"{name} {side} query {index}", query))
        return pooled

    def _one(self, what: str, query: str) -> list[float]:
        if self.unreachable is not None:
            self.unsent += 1
            return []
        try:
            return self.client.query_range(query, self.start, self.end, self.step)
        except PrometheusUnreachable as exc:
            self.unreachable = str(exc)
            self.failures.append(f"{what} ({query}): {exc}")
        except PrometheusError as exc:  # its message names the query already
            self.failures.append(f"{what}: {exc}")
        return []
