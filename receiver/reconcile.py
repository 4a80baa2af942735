"""Reconciliation: close the journal's firing incidents that Alertmanager no longer holds.

The journal believes an alert fires from the notifications it was sent; Alertmanager
knows. They drift apart when a resolution never comes: an occurrence replaced within
one group_interval (its resolution is never sent), a notification lost while the
receiver was down, an alert that resolved while silenced. So, every
`alertmanager.reconcile_interval` and right after Remediator expires a silence of its
own, the journal writer asks Alertmanager's API v2 for every alert it holds
(`GET /api/v2/alerts`, active, silenced, inhibited and unprocessed) and closes the
firing incidents it does not hold.

    firing incident --(came from an Alertmanager we ask: its externalURL)----> candidate
    candidate --(notified within reconcile_grace)-----------------------------> kept
    candidate --(Alertmanager holds its fingerprint with its startsAt)---------> kept
    candidate --(otherwise)--> closed: "reconciled: Alertmanager <url> no longer holds
                                        this alert" (planned actions cancelled)
    Alertmanager unreachable or answering an error --> nothing closed, failure counted
    Alertmanager started within reconcile_grace -----> nothing closed, failure counted

An occurrence is (fingerprint, startsAt), as in the journal (DESIGN.md, Incident).
Alertmanager's API gives startsAt to the millisecond, notifications to the nanosecond,
so start times match within STARTS_AT_TOLERANCE.

`decide` is pure (plain values in, a `Reconciliation` with reasons out; the caller
injects `now`). The edges are in receiver/reconciler.py: the HTTP call, the journal's
reads and writes, the timer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

#: Alertmanager's API v2 formats startsAt with milliseconds (strfmt.DateTime); the
#: webhook keeps nanoseconds. Two start times closer than this are one occurrence.
STARTS_AT_TOLERANCE = 0.001
REASON = "reconciled: Alertmanager {} no longer holds this alert"


def _require(condition: bool, message: str) -> None:
    """Fail at config load, never at 3 a.m."""
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ReconcileSettings:
    """Whom to ask and what is a candidate.

    `url`: the Alertmanager asked (API v2 at `url`/api/v2/alerts). `own_urls`: the
    externalURLs (no trailing slash) whose incidents it can vouch for: `url` and the
    URLs it advertises. `grace`: seconds since an incident was last notified (its
    `last_seen`) during which it is never closed. `interval`: seconds between runs
    (0: no periodic runs).
    """

    url: str
    own_urls: frozenset[str]
    grace: float
    interval: float

    def __post_init__(self) -> None:
        for name in ("grace", "interval"):
            value = getattr(self, name)
            _require(not math.isnan(value) and value >= 0, f"{name} must be >= 0s, got {value!r}")
        _require(bool(self.own_urls), "own_urls must name at least one externalURL")


@dataclass(frozen=True)
class FiringIncident:
    """A firing incident of the journal: its id, the occurrence (fingerprint; start in
    seconds since the epoch), the externalURL of the notification that opened it ("" if
    unknown) and when a notification last carried it (seconds since the epoch)."""

    id: int
    fingerprint: str
    starts_at_ts: float
    external_url: str
    last_seen: float


@dataclass(frozen=True)
class HeldAlert:
    """An alert Alertmanager holds (API v2: `fingerprint`, `startsAt` in seconds)."""

    fingerprint: str
    starts_at_ts: float


@dataclass(frozen=True)
class Closure:
    """An incident to close, with the reason journaled as its close_reason."""

    incident_id: int
    reason: str


@dataclass(frozen=True)
class Reconciliation:
    """The decision: candidates to close (with reasons) and candidates kept (held, or
    Alertmanager could not be asked: `failed` says why, else None); how many were
    candidates, and the ids of the firing incidents that were not."""

    close: tuple[Closure, ...] = ()
    kept: tuple[int, ...] = ()
    failed: str | None = None
    candidates: int = 0
    not_candidates: tuple[int, ...] = ()


def is_candidate(incident: FiringIncident, settings: ReconcileSettings, now: float) -> bool:
    """True when reconciliation may close it: it came from an Alertmanager we ask and no
    notification carried it within the grace."""
    own = incident.external_url.rstrip("/") in settings.own_urls
    return own and now - incident.last_seen >= settings.grace


def decide(
    firing: Iterable[FiringIncident],
    held: Sequence[HeldAlert] | None,
    settings: ReconcileSettings,
    now: float,
    failure: str = "",
    started_at: float | None = None,
) -> Reconciliation:
    """Which firing incidents to close, given what Alertmanager holds (`held`; None when
    it could not be asked, `failure` saying why), when it started (`started_at`, its
    API's `uptime`) and `now` (seconds since the epoch). Nothing is closed when it could
    not be asked, nor when it started within the grace: it keeps alerts in memory
    only, so after a restart it holds only those Prometheus has sent again since."""
    incidents = list(firing)
    candidates = [i for i in incidents if is_candidate(i, settings, now)]
    others = tuple(i.id for i in incidents if not is_candidate(i, settings, now))
    problem = None
    if held is None:
        problem = f"Alertmanager {settings.url} could not be asked: {failure or 'no answer'}"
    elif started_at is not None and now - started_at < settings.grace:
        problem = (
            f"Alertmanager {settings.url} started {now - started_at:.0f}s ago, within "
            f"reconcile_grace ({settings.grace:g}s): the alerts Prometheus sends again "
            "after a restart may not all be back yet"
        )
    if problem is not None or held is None:
        return Reconciliation(
            kept=tuple(i.id for i in candidates),
            failed=problem,
            candidates=len(candidates),
            not_candidates=others,
        )
    starts: dict[str, list[float]] = {}
    for alert in held:
        starts.setdefault(alert.fingerprint, []).append(alert.starts_at_ts)
    close: list[Closure] = []
    kept: list[int] = []
    for incident in candidates:
        held_starts = starts.get(incident.fingerprint, [])
        if any(abs(s - incident.starts_at_ts) < STARTS_AT_TOLERANCE for s in held_starts):
            kept.append(incident.id)
            continue
        close.append(Closure(incident.id, _reason(settings.url, held_starts)))
    return Reconciliation(tuple(close), tuple(kept), None, len(candidates), others)


def _reason(url: str, held_starts: list[float]) -> str:
    reason = REASON.format(url)
    if held_starts:  # the fingerprint fires again as another occurrence: say which
        latest = datetime.fromtimestamp(max(held_starts), UTC)
        reason += f" (it holds the occurrence starting {latest:%Y-%m-%dT%H:%M:%S.%f}Z)"
    return reason
