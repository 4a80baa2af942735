"""Replica arithmetic for scale remediations, mirroring the Kubernetes HPA algorithm.

Operators already reason about autoscaling in HPA terms (target value, tolerance,
stabilisation window, scale-up policies), so the remediator uses the same rules rather than
inventing its own: a scale action it takes should be the one an HPA would have taken.
Everything here is pure; ``now`` is injected and the caller persists ``ScaleHistory``.

Pipeline in ``decide``::

    raw      = ceil(current * value / target_value), or current when within tolerance
    bounded  = clamp(raw, min_replicas, max_replicas)      -> stored as the recommendation
    desired  = scale-down stabilisation, then scale-up rate limit
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Ratios are rounded before ceil() so float noise cannot add a replica:
# 1 * 0.07 / 0.01 evaluates to 7.000000000000001, which must scale to 7, not 8.
_DECIMALS = 9
# Same reason for the tolerance test: 1 - 110/100 is -0.10000000000000009 in floats, yet an
# operator writing tolerance 0.1 means "110 against 100 is within tolerance".
_EPSILON = 1e-9


def _require(condition: bool, message: str) -> None:
    """Reject bad policy at load time rather than scaling a workload on nonsense."""
    if not condition:
        raise ValueError(message)


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@dataclass(frozen=True)
class ScalePolicy:
    """HPA-style policy for one workload; field names follow the HPA spec where one exists."""

    target_value: float
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    scale_up_limit: int | None = None
    scale_up_period: float = 60.0
    stabilization_window: float = 300.0

    def __post_init__(self) -> None:
        _require(
            _finite(self.target_value) and self.target_value > 0,
            f"target_value must be a finite number > 0, got {self.target_value!r}",
        )
        _require(self.min_replicas >= 0, f"min_replicas must be >= 0, got {self.min_replicas!r}")
        _require(self.max_replicas >= 1, f"max_replicas must be >= 1, got {self.max_replicas!r}")
        _require(
            self.min_replicas <= self.max_replicas,
            f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})",
        )
        _require(
            _finite(self.tolerance) and self.tolerance >= 0,
            f"tolerance must be a finite number >= 0, got {self.tolerance!r}",
        )
        _require(
            self.scale_up_limit is None or self.scale_up_limit >= 1,
            f"scale_up_limit must be >= 1 or None, got {self.scale_up_limit!r}",
        )
        _require(
            _finite(self.scale_up_period) and self.scale_up_period > 0,
            f"scale_up_period must be > 0 seconds, got {self.scale_up_period!r}",
        )
        _require(
            _finite(self.stabilization_window) and self.stabilization_window >= 0,
            f"stabilization_window must be >= 0 seconds, got {self.stabilization_window!r}",
        )

    @property
    def longest_window(self) -> float:
        """How far back history can still influence a decision; older entries are dead weight."""
        return max(self.scale_up_period, self.stabilization_window)


@dataclass(frozen=True)
class ScaleHistory:
    """What the HPA keeps in memory, made explicit so it can be persisted between alerts."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, recommended replicas)
    scale_events: tuple[tuple[float, int, int], ...] = ()  # (time, from, to)

    def to_dict(self) -> dict:
        """Plain JSON types only, so any store can hold it next to the breaker state."""
        return {
            "recommendations": [[t, n] for t, n in self.recommendations],
            "scale_events": [[t, a, b] for t, a, b in self.scale_events],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ScaleHistory:
        """Missing keys load as empty history, which only makes the next decision less damped."""
        return cls(
            recommendations=tuple((float(t), int(n)) for t, n in data.get("recommendations", ())),
            scale_events=tuple(
                (float(t), int(a), int(b)) for t, a, b in data.get("scale_events", ())
            ),
        )


@dataclass(frozen=True)
class ScaleDecision:
    """The answer plus its explanation, so audit logs can say why a number was chosen."""

    current: int
    desired: int
    raw: int  # before clamps/limits/stabilisation
    reason: str
    history: ScaleHistory  # updated, pruned of entries older than the longest window

    @property
    def changed(self) -> bool:
        return self.desired != self.current


def record_scale(
    history: ScaleHistory, now: float, from_replicas: int, to_replicas: int
) -> ScaleHistory:
    """Remember a scale that really happened; the scale-up limit counts only real changes.

    Kept separate from ``decide`` because a decision may be vetoed (dry run, breaker open,
    API error), and a vetoed scale-up must not use up the rate budget.
    """
    _require(_finite(now), f"now must be a finite number, got {now!r}")
    _require(
        from_replicas >= 0 and to_replicas >= 0,
        f"replica counts must be >= 0, got {from_replicas!r} -> {to_replicas!r}",
    )
    event = (float(now), int(from_replicas), int(to_replicas))
    return replace(history, scale_events=(*history.scale_events, event))


def decide(
    current: int, value: float, policy: ScalePolicy, history: ScaleHistory, now: float
) -> ScaleDecision:
    """Compute the replica count an HPA would choose for ``value`` at time ``now``."""
    _validate_inputs(current, value, now)
    history = _prune(history, now, policy.longest_window)
    if current == 0:
        return _from_zero(policy, history, now)
    raw, reasons = _raw(current, value, policy)
    bounded = _clamp(raw, policy, reasons)
    history = replace(history, recommendations=(*history.recommendations, (float(now), bounded)))
    desired = _stabilise(current, bounded, policy, history, now, reasons)
    desired = _limit_scale_up(current, desired, policy, history, now, reasons)
    return ScaleDecision(current, desired, raw, "; ".join(reasons), history)


def _validate_inputs(current: int, value: float, now: float) -> None:
    _require(
        isinstance(current, int) and current >= 0,
        f"current replicas must be an int >= 0, got {current!r}",
    )
    _require(_finite(value) and value >= 0, f"value must be a finite number >= 0, got {value!r}")
    _require(_finite(now), f"now must be a finite number, got {now!r}")


def _prune(history: ScaleHistory, now: float, window: float) -> ScaleHistory:
    """Keep stored history bounded; only entries strictly inside the window matter."""
    cutoff = now - window
    return ScaleHistory(
        recommendations=tuple(r for r in history.recommendations if r[0] > cutoff),
        scale_events=tuple(e for e in history.scale_events if e[0] > cutoff),
    )


def _from_zero(policy: ScalePolicy, history: ScaleHistory, now: float) -> ScaleDecision:
    """Zero replicas means someone scaled the workload off on purpose, as the HPA assumes.

    The metric of a workload with no pods says nothing about load, so we never scale up
    from zero on it; the one exception is a policy that demands a floor (min_replicas > 0),
    which is honoured immediately and without the scale-up rate limit, since running below
    the floor is a misconfiguration to correct rather than load to ramp into.
    """
    if policy.min_replicas == 0:
        return ScaleDecision(0, 0, 0, "scaled to zero; not autoscaling from 0", history)
    target = policy.min_replicas
    history = replace(history, recommendations=(*history.recommendations, (float(now), target)))
    reason = f"scaled to zero; raised to min_replicas={target}"
    return ScaleDecision(0, target, 0, reason, history)


def _raw(current: int, value: float, policy: ScalePolicy) -> tuple[int, list[str]]:
    ratio = value / policy.target_value
    if abs(1 - ratio) <= policy.tolerance + _EPSILON:
        return current, [f"within tolerance (value/target={ratio:.3g})"]
    raw = math.ceil(round(current * value / policy.target_value, _DECIMALS))
    return raw, [f"value/target={ratio:.3g} -> {raw} replicas"]


def _clamp(raw: int, policy: ScalePolicy, reasons: list[str]) -> int:
    if raw > policy.max_replicas:
        reasons.append(f"clamped to max_replicas={policy.max_replicas}")
        return policy.max_replicas
    if raw < policy.min_replicas:
        reasons.append(f"clamped to min_replicas={policy.min_replicas}")
        return policy.min_replicas
    return raw


def _stabilise(
    current: int,
    bounded: int,
    policy: ScalePolicy,
    history: ScaleHistory,
    now: float,
    reasons: list[str],
) -> int:
    """Scale down only to the highest recommendation in the window, never below it.

    A metric dipping for one scrape should not shed replicas that the next scrape needs back.
    As in the HPA, stabilisation only holds replicas; it never raises them above current.
    """
    if bounded >= current or policy.stabilization_window == 0:
        return bounded
    cutoff = now - policy.stabilization_window
    highest = max(n for t, n in history.recommendations if t > cutoff)
    stabilised = min(current, highest, policy.max_replicas)
    if stabilised > bounded:
        window = f"{policy.stabilization_window:g}s"
        reasons.append(f"scale-down stabilised at {stabilised} (highest in last {window})")
        return stabilised
    return bounded


def _limit_scale_up(
    current: int,
    desired: int,
    policy: ScalePolicy,
    history: ScaleHistory,
    now: float,
    reasons: list[str],
) -> int:
    """Cap replicas added per period so a metric spike cannot exhaust cluster capacity at once.

    Added replicas are counted gross (every recorded increase in the period), so alternating
    up/down scales cannot launder the budget. Like the HPA, the limit wins over min_replicas.
    """
    limit = policy.scale_up_limit
    if limit is None or desired <= current:
        return desired
    cutoff = now - policy.scale_up_period
    added = sum(max(0, to - frm) for t, frm, to in history.scale_events if t > cutoff)
    allowed = current + max(0, limit - added)
    if desired > allowed:
        reasons.append(f"scale-up limited to +{limit} per {policy.scale_up_period:g}s")
        return allowed
    return desired
