"""The knee: the highest rate a server sustains within a latency target, by bounded search.

A pure search over a `measure(rate) -> (passed, detail)` callable that runs one probe
at a fixed rate (the caller loads a real server; see bench/latency.py). Shape:

    start ──pass──> 2*start ──pass──> 4*start ... ──fail──┐     (doubling, up to `ceiling`)
      │                                                    v
      └──fail──> start/2 ──fail──> ... (down to `floor`)  bisect the last pass and the
                                                          first fail (geometric mean)
                                                          until fail/pass <= `resolution`

Doubling then bisecting is exponential search (Bentley and Yao, 1976) over rates:
the number of probes is logarithmic in the range, and every probe's verdict is kept
so the search can be read back. The rule assumes monotonicity (a rate above a failing one fails);
on a shared machine it is not quite so: one scheduling hiccup puts a 3-second probe's
p99 over the line. So a failing rate is tried again (`retries`) and fails only if
every try failed; a pass is not retried (noise makes latency worse, rarely better).
Every try is kept in `probes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Measure = Callable[[float], tuple[bool, dict[str, Any]]]


@dataclass(frozen=True)
class KneeSettings:
    """Bounds of the search, rates in notifications per second.

    start: the first probe; floor: the lowest rate tried when start fails; ceiling: the
    highest rate tried; resolution: stop bisecting when first failing rate / highest
    passing rate <= this ratio (> 1); retries: further tries of a rate that failed
    before it counts as failed; max_probes: hard bound on tries in all.
    Raises ValueError on nonsense (non-finite, floor > start > ceiling, resolution <= 1,
    negative retries).
    """

    start: float = 25.0
    floor: float = 5.0
    ceiling: float = 1600.0
    resolution: float = 1.15
    retries: int = 1
    max_probes: int = 12

    def __post_init__(self) -> None:
        for name in ("start", "floor", "ceiling", "resolution"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"knee search: {name} must be a positive number, not {value}")
        if not self.floor <= self.start <= self.ceiling:
            raise ValueError(
                f"knee search: need floor <= start <= ceiling, got "
                f"{self.floor:g} / {self.start:g} / {self.ceiling:g}"
            )
        if self.resolution <= 1:
            raise ValueError(f"knee search: resolution must be > 1, not {self.resolution}")
        if self.retries < 0:
            raise ValueError(f"knee search: retries must be >= 0, not {self.retries}")
        if self.max_probes < 1:
            raise ValueError(f"knee search: max_probes must be >= 1, not {self.max_probes}")


@dataclass(frozen=True)
class Probe:
    """One measured rate (notifications/s), its verdict and what the measure reported."""

    rate: float
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Knee:
    """The outcome: `rate` is the highest passing rate probed (None when even the floor
    failed); `first_failing` the lowest failing rate above it (None when the ceiling
    passed: the knee is at least the ceiling); `probes` in the order they ran;
    `reason` says how the search ended."""

    rate: float | None
    first_failing: float | None
    probes: tuple[Probe, ...]
    reason: str


def _round(rate: float) -> float:
    # whole rates read better and repeat exactly; below 10/s keep one decimal
    return float(round(rate)) if rate >= 10 else round(rate, 1)


def find_knee(measure: Measure, settings: KneeSettings) -> Knee:
    """Search the highest rate at which `measure` passes (see the module docstring).

    `measure(rate)` returns (passed, detail); it is called at most settings.max_probes
    times, never below settings.floor nor above settings.ceiling; a rate passes when
    any of its 1 + settings.retries tries passes. Exceptions from `measure` propagate."""
    probes: list[Probe] = []

    def run(rate: float) -> bool:
        for _ in range(1 + settings.retries):
            passed, detail = measure(rate)
            probes.append(Probe(rate, passed, detail))
            if passed or len(probes) >= settings.max_probes:
                return passed
        return False

    passing: float | None = None
    failing: float | None = None
    rate = _round(settings.start)
    if run(rate):
        passing = rate
        while rate < settings.ceiling and len(probes) < settings.max_probes:
            rate = _round(min(rate * 2, settings.ceiling))
            if not run(rate):
                failing = rate
                break
            passing = rate
        if failing is None:
            return Knee(passing, None, tuple(probes), _ceiling_reason(passing, settings))
    else:
        failing = rate
        while rate > settings.floor and len(probes) < settings.max_probes:
            rate = _round(max(rate / 2, settings.floor))
            if run(rate):
                passing = rate
                break
            failing = rate
        if passing is None:
            return Knee(None, failing, tuple(probes), f"failed even at {failing:g}/s (floor)")
    return _bisect(run, passing, failing, probes, settings)


def _ceiling_reason(passing: float, settings: KneeSettings) -> str:
    if passing >= settings.ceiling:
        return f"passed at the ceiling {settings.ceiling:g}/s: the knee is at least that"
    return f"stopped after {settings.max_probes} probes, all passed"


def _bisect(
    run: Callable[[float], bool],
    passing: float,
    failing: float,
    probes: list[Probe],
    settings: KneeSettings,
) -> Knee:
    while failing / passing > settings.resolution:
        if len(probes) >= settings.max_probes:
            reason = f"stopped after {settings.max_probes} probes"
            return Knee(passing, failing, tuple(probes), reason)
        middle = _round(math.sqrt(passing * failing))
        if middle in (passing, failing):
            break  # rounding leaves nothing in between
        if run(middle):
            passing = middle
        else:
            failing = middle
    reason = f"between {passing:g}/s (passed) and {failing:g}/s (failed)"
    return Knee(passing, failing, tuple(probes), reason)
