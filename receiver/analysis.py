"""The canary judge of issue 15: samples in, ``Judgement`` out.

After a wave's canary (or a stage) has been remediated, each analysis metric is sampled
over the analysis interval for the remediated targets (the canary) and for the targets of
the same fleet not yet remediated (the baseline). The judge asks, per metric: is the canary
*worse* than the baseline, both with statistical significance and by more than the metric's
tolerance? As Netflix/Kayenta's judge does (its ``MannWhitneyClassifier``), significance
comes from the Mann-Whitney U test (``scipy.stats.mannwhitneyu``; never our own) and the
size of the effect from the ratio of the means, canary against baseline; unlike Kayenta,
which tests two-sided with a confidence interval of the Hodges-Lehmann estimate, the test
here is one-sided in the metric's bad direction, since a canary that is *better* than the
broken baseline is the point of remediating it.

Rules per metric (``direction: lower`` means lower is better: error ratio, latency)::

    samples --drop NaN and +-Inf (counted)--> n canary, n baseline
      a side empty ------------------------------------> inconclusive (nothing to compare)
      a side < min_samples --> means: worse_by > tolerance             ? fail : pass
      otherwise ---> U test:   p < alpha  and  worse_by > tolerance    ? fail : pass

    worse_by = (mean canary - mean baseline) / |mean baseline|   (negated for `higher`)
               a zero baseline mean: 0 when the canary's mean is 0 too, else +-Inf

Rules over the metrics (Kayenta's score, unweighted: passing metrics over all metrics)::

    score = passed / metrics
      score >= pass_score ---------------------------------> pass          (proceed)
      (passed + inconclusive) / metrics >= pass_score -----> inconclusive  (on_inconclusive)
      otherwise -------------------------------------------> fail          (halt)

Why the means carry the tolerance (the issue leaves mean or median open): an error ratio is
0 in most scrapes of a healthy target, so a canary erring in 40% of its samples has a median
of 0, like a clean baseline, while its mean shows the regression; the mean is also what the
too-few-samples fallback compares, so a tolerance means one thing on both paths; and the
mean ratio is the effect size Kayenta's classifier checks. Medians are reported beside them.

Why ``min_samples`` defaults to 5 per side: Kayenta itself only refuses empty data, but a
rank test on very few samples cannot be significant at all. With ``m`` samples per side the
smallest one-sided p the exact U distribution can give is ``1 / C(2m, m)``: 0.05 for 3, too
coarse for alpha 0.05; 0.004 for 5, where the test still rejects with up to 4 of the 25
canary-baseline pairs out of order (exact p 0.048). A Prometheus ``query_range`` over one
minute at a 10 s step already yields 6 samples per target. Settings are refused when
``min_samples`` is too small for ``alpha`` ever to be reached: the judge would never fail.

A zero baseline mean (an error ratio of a baseline without errors) makes any worsening
infinitely worse, so a canary that starts erring where the baseline does not fails when the
test finds it significant; Kayenta instead reads a zero control mean as no effect at all,
which would let exactly that canary through.

Everything here is pure: no I/O, no clock reads. The caller must: fetch the samples (one
list of floats per metric per side, pooled over the side's targets; ``query`` is the PromQL
template it renders per target); call ``judge`` with its ``now``; journal
``Judgement.to_dict()`` (plain JSON, infinities written as Prometheus writes them, "+Inf");
proceed with the wave only when ``Judgement.proceed``; on ``fail`` the canaries are worse
than the baseline, which is when a strategy's ``undo`` applies (never on ``inconclusive``);
and count ``Judgement.verdict`` (one of ``VERDICTS``) for the canary verdict metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy are imported where a judgement needs them, not with this module: the
# config imports it for its settings, and every process of the server would otherwise
# carry scipy.stats (tens of MB) whether or not a fleet is ever judged.

# Verdicts, per metric and overall.
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)

# Which way is better for a metric.
LOWER, HIGHER = "lower", "higher"
DIRECTIONS = (LOWER, HIGHER)

# What an inconclusive judgement does to the wave.
HALT, PROCEED = "halt", "proceed"
ON_INCONCLUSIVE = (HALT, PROCEED)

# How a metric was judged: the rank test, the fallback on means, or not at all (None).
U_TEST, MEANS = "mann_whitney_u", "means"
METHODS = (U_TEST, MEANS)

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_SAMPLES = 5
DEFAULT_PASS_SCORE = 1.0

# An operator writing tolerance 0.1 means "10% worse is still fine": 1.1 / 1.0 - 1 is
# 0.10000000000000009 in floats, which must not fail the canary (as scaling.py does).
_EPSILON = 1e-9


def _require(condition: bool, message: str) -> None:
    """Refuse a bad analysis at config load rather than halting a wave at 3 a.m."""
    if not condition:
        raise ValueError(message)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class AnalysisMetric:
    """One metric of the analysis.

    ``name`` identifies it in samples, reasons and the journal (non-empty, unique within
    the settings); ``query`` is the PromQL template the caller renders per target (this
    module never reads it); ``direction`` is ``lower`` (lower is better) or ``higher``;
    ``tolerance`` is how much worse the canary's mean may be, as a ratio of the baseline's
    mean (0.1 = 10%), finite and >= 0. Raises ValueError otherwise.
    """

    name: str
    query: str
    direction: str = LOWER
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        _require(
            isinstance(self.name, str) and self.name.strip() != "",
            f"analysis metric name must be a non-empty string, got {self.name!r}",
        )
        _require(
            isinstance(self.query, str) and self.query.strip() != "",
            f"analysis metric {self.name!r}: query must be a non-empty string",
        )
        _require(
            self.direction in DIRECTIONS,
            f"analysis metric {self.name!r}: direction must be one of {DIRECTIONS}, "
            f"got {self.direction!r}",
        )
        _require(
            _finite(self.tolerance) and self.tolerance >= 0,
            f"analysis metric {self.name!r}: tolerance must be a finite ratio >= 0 "
            f"(0.1 = 10%), got {self.tolerance!r}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "query": self.query,
            "direction": self.direction,
            "tolerance": self.tolerance,
        }


@dataclass(frozen=True)
class AnalysisSettings:
    """How a stage's canaries are judged.

    ``metrics``: at least one ``AnalysisMetric`` (a list is accepted and kept as a tuple).
    ``pass_score``: the share of metrics that must pass, in (0, 1]; 1.0 = all of them.
    ``on_inconclusive``: ``halt`` (default, the safe side) or ``proceed``.
    ``alpha``: significance level of the one-sided U test, in (0, 0.5]; 0.05 as Kayenta's
    default confidence level of 95%. ``min_samples``: samples needed on each side for the
    U test (default 5, see the module docstring); fewer fall back to comparing means.
    Raises ValueError on anything else, including a ``min_samples`` too small for the test
    ever to reach ``alpha``.
    """

    metrics: tuple[AnalysisMetric, ...]
    pass_score: float = DEFAULT_PASS_SCORE
    on_inconclusive: str = HALT
    alpha: float = DEFAULT_ALPHA
    min_samples: int = DEFAULT_MIN_SAMPLES

    def __post_init__(self) -> None:
        _require(
            isinstance(self.metrics, list | tuple) and len(self.metrics) >= 1,
            f"analysis needs a non-empty list of metrics, got {self.metrics!r}",
        )
        metrics = tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)  # frozen: a list would be mutable
        for metric in metrics:
            _require(
                isinstance(metric, AnalysisMetric),
                f"analysis metrics must be AnalysisMetric, got {metric!r}",
            )
        names = [m.name for m in metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        _require(not duplicates, f"analysis metric names must be unique, repeated: {duplicates}")
        _require(
            _finite(self.pass_score) and 0 < self.pass_score <= 1,
            f"pass_score must be a ratio in (0, 1], got {self.pass_score!r}",
        )
        _require(
            self.on_inconclusive in ON_INCONCLUSIVE,
            f"on_inconclusive must be one of {ON_INCONCLUSIVE}, got {self.on_inconclusive!r}",
        )
        _require(
            _finite(self.alpha) and 0 < self.alpha <= 0.5,
            f"alpha must be a significance level in (0, 0.5], got {self.alpha!r}",
        )
        _require(
            isinstance(self.min_samples, int)
            and not isinstance(self.min_samples, bool)
            and self.min_samples >= 1,
            f"min_samples must be an int >= 1, got {self.min_samples!r}",
        )
        smallest_p = 1 / math.comb(2 * self.min_samples, self.min_samples)
        _require(
            smallest_p < self.alpha,
            f"min_samples {self.min_samples} is too few for alpha {self.alpha:g}: the U test's "
            f"smallest p-value with {self.min_samples} samples a side is {smallest_p:.3g}, "
            "so no canary could ever fail it",
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": [m.to_dict() for m in self.metrics],
            "pass_score": self.pass_score,
            "on_inconclusive": self.on_inconclusive,
            "alpha": self.alpha,
            "min_samples": self.min_samples,
        }


@dataclass(frozen=True)
class MetricJudgement:
    """The verdict on one metric and everything an operator needs to check it.

    Counts are of samples kept (finite) and dropped (NaN, +-Inf) per side. Means and
    medians are of the kept samples (None for an empty side). ``relative_change`` is
    ``(mean canary - mean baseline) / |mean baseline|`` (signed, whatever the direction;
    +-Inf from a zero baseline; None when a side is empty) and ``worse_by`` the same turned
    so that positive means worse. ``method`` is ``mann_whitney_u``, ``means`` (too few
    samples) or None (inconclusive); ``statistic`` is the canary's U (pairs in which the
    canary sample is the larger, ties counting half) and ``p_value`` the one-sided p in the
    bad direction, both None unless the U test ran; ``significant`` is ``p_value < alpha``.
    """

    name: str
    direction: str
    tolerance: float
    verdict: str
    reason: str
    canary_count: int
    baseline_count: int
    canary_dropped: int = 0
    baseline_dropped: int = 0
    canary_mean: float | None = None
    baseline_mean: float | None = None
    canary_median: float | None = None
    baseline_median: float | None = None
    relative_change: float | None = None
    worse_by: float | None = None
    method: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    significant: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only; infinite changes are written "+Inf"/"-Inf", as Prometheus's
        HTTP API writes them, since strict JSON (and PostgreSQL's jsonb) has no Infinity."""
        return {
            "name": self.name,
            "direction": self.direction,
            "tolerance": self.tolerance,
            "verdict": self.verdict,
            "reason": self.reason,
            "canary_count": self.canary_count,
            "baseline_count": self.baseline_count,
            "canary_dropped": self.canary_dropped,
            "baseline_dropped": self.baseline_dropped,
            "canary_mean": self.canary_mean,
            "baseline_mean": self.baseline_mean,
            "canary_median": self.canary_median,
            "baseline_median": self.baseline_median,
            "relative_change": _encode(self.relative_change),
            "worse_by": _encode(self.worse_by),
            "method": self.method,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "significant": self.significant,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricJudgement:
        """Read back what ``to_dict`` wrote (missing optional keys load as None / 0)."""
        return cls(
            name=str(data["name"]),
            direction=str(data["direction"]),
            tolerance=float(data["tolerance"]),
            verdict=str(data["verdict"]),
            reason=str(data["reason"]),
            canary_count=int(data["canary_count"]),
            baseline_count=int(data["baseline_count"]),
            canary_dropped=int(data.get("canary_dropped", 0)),
            baseline_dropped=int(data.get("baseline_dropped", 0)),
            canary_mean=_optional_float(data.get("canary_mean")),
            baseline_mean=_optional_float(data.get("baseline_mean")),
            canary_median=_optional_float(data.get("canary_median")),
            baseline_median=_optional_float(data.get("baseline_median")),
            relative_change=_optional_float(data.get("relative_change")),
            worse_by=_optional_float(data.get("worse_by")),
            method=data.get("method"),
            statistic=_optional_float(data.get("statistic")),
            p_value=_optional_float(data.get("p_value")),
            significant=data.get("significant"),
        )


@dataclass(frozen=True)
class Judgement:
    """The verdict on a stage's canaries: per metric, and overall.

    ``score`` is passed metrics over all metrics (a ratio in [0, 1]); ``verdict`` is
    ``pass``, ``fail`` or ``inconclusive`` by the rules in the module docstring;
    ``proceed`` is what the wave does next (True on pass, and on inconclusive with
    ``on_inconclusive: proceed``). ``reason`` is one line for the journal and the console.
    ``judged_at`` is the caller's ``now`` (seconds since the epoch). The settings that
    decided (pass_score, on_inconclusive, alpha, min_samples) are kept so a journaled
    judgement explains itself after the config has changed.
    """

    verdict: str
    proceed: bool
    score: float
    reason: str
    judged_at: float
    pass_score: float
    on_inconclusive: str
    alpha: float
    min_samples: int
    metrics: tuple[MetricJudgement, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> int:
        return sum(1 for m in self.metrics if m.verdict == PASS)

    @property
    def failed(self) -> int:
        return sum(1 for m in self.metrics if m.verdict == FAIL)

    @property
    def inconclusive(self) -> int:
        return sum(1 for m in self.metrics if m.verdict == INCONCLUSIVE)

    @property
    def failures(self) -> tuple[MetricJudgement, ...]:
        """The failed metrics, in settings order: what an escalation should name."""
        return tuple(m for m in self.metrics if m.verdict == FAIL)

    def metric(self, name: str) -> MetricJudgement:
        """The judgement of one metric by name; raises KeyError for an unknown name."""
        for judged in self.metrics:
            if judged.name == name:
                return judged
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so the journal (SQLite, PostgreSQL jsonb) can hold it."""
        return {
            "verdict": self.verdict,
            "proceed": self.proceed,
            "score": self.score,
            "reason": self.reason,
            "judged_at": self.judged_at,
            "pass_score": self.pass_score,
            "on_inconclusive": self.on_inconclusive,
            "alpha": self.alpha,
            "min_samples": self.min_samples,
            "passed": self.passed,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "metrics": [m.to_dict() for m in self.metrics],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Judgement:
        """Read back what ``to_dict`` wrote; the derived counts are recomputed, not read."""
        return cls(
            verdict=str(data["verdict"]),
            proceed=bool(data["proceed"]),
            score=float(data["score"]),
            reason=str(data["reason"]),
            judged_at=float(data["judged_at"]),
            pass_score=float(data["pass_score"]),
            on_inconclusive=str(data["on_inconclusive"]),
            alpha=float(data["alpha"]),
            min_samples=int(data["min_samples"]),
            metrics=tuple(MetricJudgement.from_dict(m) for m in data.get("metrics", ())),
        )


def judge(
    settings: AnalysisSettings,
    canary: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    now: float,
) -> Judgement:
    """Judge a stage's canaries against the baseline, metric by metric.

    ``canary`` and ``baseline`` map a metric's name to its samples (a flat sequence of
    numbers, e.g. a list of floats or a 1-D numpy array, pooled over the side's targets;
    NaN, +-Inf and None are dropped and counted);
    a metric missing from a mapping has no samples on that side (its query returned
    nothing) and is judged inconclusive. ``now`` (seconds since the epoch) is recorded
    as ``judged_at``. Raises ValueError for a name that is not a configured metric (a
    caller bug) and for samples that are not a flat sequence of numbers, and for a
    non-finite ``now``.
    """
    _require(_finite(now), f"now must be a finite number, got {now!r}")
    known = set(settings.names)
    for side, samples in (("canary", canary), ("baseline", baseline)):
        unknown = sorted(set(samples) - known)
        _require(not unknown, f"{side} samples for unknown analysis metrics: {unknown}")
    judged = tuple(
        judge_metric(
            metric,
            canary.get(metric.name, ()),
            baseline.get(metric.name, ()),
            alpha=settings.alpha,
            min_samples=settings.min_samples,
        )
        for metric in settings.metrics
    )
    return _overall(settings, judged, float(now))


def judge_metric(
    metric: AnalysisMetric,
    canary: Sequence[float],
    baseline: Sequence[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> MetricJudgement:
    """Judge one metric's canary samples against its baseline samples (rules above).

    ``alpha`` and ``min_samples`` as in ``AnalysisSettings`` (``judge`` passes its own).
    Raises ValueError when samples are not a flat sequence of numbers, or for an ``alpha``
    outside (0, 0.5] or a ``min_samples`` below 1.
    """
    _require(_finite(alpha) and 0 < alpha <= 0.5, f"alpha must be in (0, 0.5], got {alpha!r}")
    _require(
        isinstance(min_samples, int) and min_samples >= 1,
        f"min_samples must be an int >= 1, got {min_samples!r}",
    )
    canary_kept, canary_dropped = _clean(metric.name, "canary", canary)
    baseline_kept, baseline_dropped = _clean(metric.name, "baseline", baseline)
    counts: dict[str, Any] = {
        "canary_count": int(canary_kept.size),
        "baseline_count": int(baseline_kept.size),
        "canary_dropped": canary_dropped,
        "baseline_dropped": baseline_dropped,
    }
    common: dict[str, Any] = {
        "name": metric.name,
        "direction": metric.direction,
        "tolerance": metric.tolerance,
    }
    dropped = _dropped_note(canary_dropped, baseline_dropped)
    if canary_kept.size == 0 or baseline_kept.size == 0:
        empty = [
            side
            for side, kept in (("canary", canary_kept), ("baseline", baseline_kept))
            if kept.size == 0
        ]
        reason = f"{metric.name}: no {' or '.join(empty)} samples{dropped}; nothing to compare"
        return MetricJudgement(**common, **counts, verdict=INCONCLUSIVE, reason=reason)

    canary_mean, baseline_mean = _mean(canary_kept), _mean(baseline_kept)
    change = _relative_change(canary_mean, baseline_mean)
    worse_by = change if metric.direction == LOWER else -change
    too_worse = worse_by > metric.tolerance + _EPSILON
    stats: dict[str, Any] = {
        "canary_mean": canary_mean,
        "baseline_mean": baseline_mean,
        "canary_median": _median(canary_kept),
        "baseline_median": _median(baseline_kept),
        "relative_change": change,
        "worse_by": worse_by,
    }
    values = f"{metric.name}: mean canary {canary_mean:.3g} vs baseline {baseline_mean:.3g}"
    size = _size_words(worse_by, baseline_mean)
    tolerance = f"tolerance {_percent(metric.tolerance)}"

    if canary_kept.size < min_samples or baseline_kept.size < min_samples:
        verdict = FAIL if too_worse else PASS
        test = (
            f"means of {canary_kept.size} vs {baseline_kept.size} samples, "
            f"fewer than {min_samples} a side for the U test"
        )
        if worse_by > 0 and not too_worse:
            reason = f"{values}, {size}, within {tolerance} ({test}){dropped}"
        else:
            reason = f"{values}, {size} ({test}; {tolerance}){dropped}"
        return MetricJudgement(
            **common, **counts, **stats, verdict=verdict, reason=reason, method=MEANS
        )

    # One-sided in the bad direction: for `lower`, is the canary stochastically greater?
    alternative = "greater" if metric.direction == LOWER else "less"
    from scipy.stats import mannwhitneyu  # imported here: see the imports

    result = mannwhitneyu(canary_kept, baseline_kept, alternative=alternative)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    if not math.isfinite(p_value):  # scipy gives NaN only on degenerate input; never "worse"
        p_value_or_none: float | None = None
        significant = False
        p_text = "p undefined"
    else:
        p_value_or_none = p_value
        significant = p_value < alpha
        p_text = f"p={p_value:.2g}"
    verdict = FAIL if significant and too_worse else PASS
    if verdict == FAIL:
        reason = f"{values}, {size} ({p_text}, {tolerance}){dropped}"
    elif too_worse:
        odds = p_text if p_value_or_none is None else f"{p_text} >= {alpha:g}"
        reason = f"{values}, {size} but not significantly ({odds}; {tolerance}){dropped}"
    elif worse_by > 0:
        reason = f"{values}, {size}, within {tolerance} ({p_text}){dropped}"
    else:
        reason = f"{values}, {size} ({p_text}, {tolerance}){dropped}"
    return MetricJudgement(
        **common,
        **counts,
        **stats,
        verdict=verdict,
        reason=reason,
        method=U_TEST,
        statistic=statistic,
        p_value=p_value_or_none,
        significant=significant,
    )


def _overall(
    settings: AnalysisSettings, judged: tuple[MetricJudgement, ...], now: float
) -> Judgement:
    total = len(judged)
    passed = sum(1 for m in judged if m.verdict == PASS)
    unknown = sum(1 for m in judged if m.verdict == INCONCLUSIVE)
    score = passed / total
    needed = settings.pass_score - _EPSILON
    if score >= needed:
        verdict, proceed = PASS, True
        score_text = f"score {score:.3g} >= pass_score {settings.pass_score:g}"
        reason = f"pass: {passed} of {total} metrics passed ({score_text})"
        return _judgement(settings, verdict, proceed, score, reason, now, judged)
    score_text = f"score {score:.3g} < pass_score {settings.pass_score:g}"
    if (passed + unknown) / total >= needed:
        verdict = INCONCLUSIVE
        proceed = settings.on_inconclusive == PROCEED
        action = "proceeding" if proceed else "halting"
        reasons = "; ".join(m.reason for m in judged if m.verdict == INCONCLUSIVE)
        reason = (
            f"inconclusive ({action}, on_inconclusive: {settings.on_inconclusive}): "
            f"{unknown} of {total} metrics without data, {score_text}; {reasons}"
        )
    else:
        verdict, proceed = FAIL, False
        failed = total - passed - unknown
        reasons = "; ".join(m.reason for m in judged if m.verdict == FAIL)
        reason = f"fail: {failed} of {total} metrics worse than the baseline ({score_text})"
        if reasons:
            reason += f"; {reasons}"
        if unknown:
            reason += f"; {unknown} inconclusive"
    return _judgement(settings, verdict, proceed, score, reason, now, judged)


def _judgement(
    settings: AnalysisSettings,
    verdict: str,
    proceed: bool,
    score: float,
    reason: str,
    now: float,
    judged: tuple[MetricJudgement, ...],
) -> Judgement:
    return Judgement(
        verdict=verdict,
        proceed=proceed,
        score=score,
        reason=reason,
        judged_at=now,
        pass_score=settings.pass_score,
        on_inconclusive=settings.on_inconclusive,
        alpha=settings.alpha,
        min_samples=settings.min_samples,
        metrics=judged,
    )


def _clean(name: str, side: str, samples: Sequence[float]) -> tuple[np.ndarray, int]:
    """The finite samples, sorted (so equal multisets give bit-equal means), and how many
    were dropped: Prometheus returns NaN for 0/0 ratios and +Inf for empty buckets, and a
    None (a missing sample) converts to NaN on the way in."""
    import numpy as np  # imported here: see the imports

    try:
        values = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{side} samples of {name!r} must be numbers: {err}") from None
    _require(
        values.ndim == 1,
        f"{side} samples of {name!r} must be a flat sequence, got shape {values.shape}",
    )
    finite = values[np.isfinite(values)]
    return np.sort(finite), int(values.size - finite.size)


def _mean(values: np.ndarray) -> float:
    """Mean of finite values that cannot overflow to Inf (1e308 twice would)."""
    import numpy as np  # imported here: see the imports

    with np.errstate(over="ignore"):
        mean = float(np.mean(values))
    if math.isfinite(mean):
        return mean
    scale = float(np.max(np.abs(values)))
    return float(np.mean(values / scale)) * scale


def _median(values: np.ndarray) -> float:
    """Median of sorted finite values, halved before adding so it cannot overflow."""
    n = values.size
    low, high = float(values[(n - 1) // 2]), float(values[n // 2])
    return low if low == high else low / 2 + high / 2


def _relative_change(canary: float, baseline: float) -> float:
    """(canary - baseline) / |baseline|; a zero baseline makes any change infinite."""
    if baseline == 0:
        return 0.0 if canary == 0 else math.copysign(math.inf, canary)
    change = (canary - baseline) / abs(baseline)
    if math.isfinite(change):
        return change
    # canary - baseline overflowed (e.g. 1e308 - -1e308): divide first.
    return canary / abs(baseline) - math.copysign(1.0, baseline)


def _size_words(worse_by: float, baseline_mean: float) -> str:
    if worse_by == 0:
        return "no worse"
    word = "worse" if worse_by > 0 else "better"
    if baseline_mean == 0:
        return f"{word} than a zero baseline"
    return f"{_percent(abs(worse_by))} {word}"


def _percent(ratio: float) -> str:
    if math.isinf(ratio):
        return "infinitely"
    percent = ratio * 100
    return f"{percent:,.0f}%" if percent >= 1000 else f"{percent:.3g}%"


def _dropped_note(canary: int, baseline: int) -> str:
    if not canary and not baseline:
        return ""
    parts = [f"{n} {side}" for side, n in (("canary", canary), ("baseline", baseline)) if n]
    return f" [dropped NaN/Inf samples: {', '.join(parts)}]"


def _encode(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "+Inf" if x > 0 else "-Inf"


def _optional_float(x: object) -> float | None:
    """None stays None; numbers and Prometheus's "+Inf"/"-Inf"/"NaN" spellings load."""
    return None if x is None else float(x)  # type: ignore[arg-type]
