"""MTTR, availability and health per service (pure; the journal supplies the facts).

MTTR = mean incident duration; MTBF = (window - downtime) / incidents; availability
A = MTBF / (MTBF + MTTR). Incidents count when they overlap the window; one still
firing counts its duration so far. Downtime is the union of incident intervals
clipped to the window, so two alerts about one outage are not counted twice.

`figures` computes them from every incident's interval (the definition);
`window_figures` from a service's `WindowFacts`, which the journal keeps bounded
(store/servicewindows.py): the closed incidents as a count, a sum and the seconds of the
window they cover, the firing ones as they are. Both give the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

HEALTHY, UNHEALTHY, DEGRADED, CRITICAL = "healthy", "unhealthy", "degraded", "critical"
HEALTH_STATUSES = (HEALTHY, UNHEALTHY, DEGRADED, CRITICAL)
FAILED_FOR_GOOD = ("failed", "timed_out")


@dataclass(frozen=True)
class ServiceFigures:
    incidents: int
    mttr: float  # seconds
    downtime: float  # seconds within the window
    mtbf: float | None  # seconds; None when there was no incident
    availability: float  # 0..1


def figures(
    intervals: Iterable[tuple[float, float | None]], window: float, now: float
) -> ServiceFigures:
    """intervals: (start, end or None while firing), any order; window in seconds."""
    since = now - window
    spans = [(start, now if end is None else end) for start, end in intervals]
    spans = [(start, end) for start, end in spans if end >= since and start <= now]
    if not spans:
        return ServiceFigures(0, 0.0, 0.0, None, 1.0)
    mttr = sum(max(0.0, end - start) for start, end in spans) / len(spans)
    downtime = _union_length([(max(start, since), min(end, now)) for start, end in spans])
    mtbf = max(0.0, window - downtime) / len(spans)
    availability = mtbf / (mtbf + mttr) if mtbf + mttr > 0 else 1.0
    return ServiceFigures(len(spans), mttr, downtime, mtbf, availability)


def _union_length(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, None
    for start, end in sorted(spans):
        if end <= start:
            continue  # covers nothing (a resolved alert whose endsAt precedes its startsAt)
        if reach is None or start > reach:
            total += max(0.0, end - start)
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


@dataclass(frozen=True)
class WindowFacts:
    """What one service's figures over a window need, bounded by what is open.

    closed: closed incidents overlapping the window (end >= since, start <= now);
    closed_seconds: the sum of their durations; firing_starts: start of each firing
    incident (seconds since the epoch; those after `now` are ignored); closed_downtime:
    seconds of [since, closed_part_end(firing_starts, since, now)] that closed incidents
    cover (their union).
    """

    closed: int = 0
    closed_seconds: float = 0.0
    firing_starts: tuple[float, ...] = ()
    closed_downtime: float = 0.0


def closed_part_end(firing_starts: Iterable[float], since: float, now: float) -> float:
    """Up to when the closed incidents' cover matters: firing incidents all run until
    `now`, so from the earliest firing start (clipped to the window) the service is down
    whatever was closed; `now` when nothing fires."""
    started = [start for start in firing_starts if start <= now]
    return max(min(started), since) if started else now


def window_figures(facts: WindowFacts, window: float, now: float) -> ServiceFigures:
    """`figures` from a service's WindowFacts (window and now in seconds)."""
    since = now - window
    firing = [start for start in facts.firing_starts if start <= now]
    count = facts.closed + len(firing)
    if count == 0:
        return ServiceFigures(0, 0.0, 0.0, None, 1.0)
    seconds = facts.closed_seconds + sum(max(0.0, now - start) for start in firing)
    mttr = seconds / count
    downtime = facts.closed_downtime + (now - closed_part_end(firing, since, now))
    mtbf = max(0.0, window - downtime) / count
    availability = mtbf / (mtbf + mttr) if mtbf + mttr > 0 else 1.0
    return ServiceFigures(count, mttr, downtime, mtbf, availability)


def health(firing: bool, actions: Iterable[tuple[Any, ...]]) -> str:
    """Health from what is firing and its incidents' latest actions.

    Pass the latest action of each firing incident as (status, reason) or, for an action
    of a runbook, (status, reason, step, run status). critical: remediation failed for
    good (a runbook run ended uncured, or an action of no runbook failed) or its breaker
    is open; degraded: remediation running, verifying, between two runbook steps, or done
    and the alert not yet resolved; unhealthy: firing, nothing done yet; healthy: quiet.
    """
    if not firing:
        return HEALTHY
    latest = [_LatestAction(*action) for action in actions]
    if any(action.critical for action in latest):
        return CRITICAL
    if any(action.acting for action in latest):
        return DEGRADED  # acting, verifying, or done and waiting for the alert to resolve
    return UNHEALTHY


@dataclass(frozen=True)
class _LatestAction:
    status: str
    reason: str
    step: int | None = None
    run_status: str | None = None

    @property
    def critical(self) -> bool:
        if self.run_status == "uncured":
            return True
        if self.run_status == "running":  # a failed step whose next step is not yet planned
            return False
        return self.status in FAILED_FOR_GOOD or (
            self.status == "skipped" and self.reason.startswith("breaker_open")
        )

    @property
    def acting(self) -> bool:
        between_steps = self.status == "planned" and (self.step or 1) > 1
        return self.status in ("running", "succeeded") or (
            between_steps and self.run_status == "running"
        )


def per_service(
    facts: dict[str, Any], window: float, now: float, limit: int | None = None
) -> dict[str, tuple[ServiceFigures, str]]:
    """Figures and health of every known service from the store's `service_facts`:
    `windows` (service -> WindowFacts), `firing_latest` ((service, status, reason,
    [step, run status]) per firing incident) and `services` (the names to report)."""
    windows: dict[str, WindowFacts] = facts["windows"]
    latest: dict[str, list[tuple[Any, ...]]] = {}
    for service, status, reason, *runbook in facts["firing_latest"]:
        latest.setdefault(service, []).append((status or "none", reason or "", *runbook))
    services = sorted(set(facts["services"]))[:limit]
    return {
        service: (
            window_figures(windows.get(service, WindowFacts()), window, now),
            health(service in latest, latest.get(service, [])),
        )
        for service in services
    }
