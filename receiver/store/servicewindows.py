"""Per-service aggregates of closed incidents, so MTTR and availability cost O(services).

`/metrics` and `/api/v1/stats` report, per service over `defaults.mttr_window`, the
mean duration of the incidents overlapping the window and the downtime (the measure of
the union of their intervals clipped to the window; see receiver/reliability.py). Read
from the incidents, both grow with the incidents in the window. Instead the write
transaction that closes an incident keeps two running aggregates per service, and a
scrape reads a bounded number of rows per service:

    closing [start, end] ──► incident_window_buckets   (service, 300 s bucket of `end`):
                        │      count and seconds closed in the bucket, and the running
                        │      totals of every bucket up to it (cumulative_*)
                        └──► incident_downtime_segments (service, start, end, covered_before):
                               the union of closed intervals as disjoint segments; each
                               knows the seconds covered before its start

    closed in window  = totals(last bucket) - totals(before the first whole bucket)
                        + the incidents ending in the partial edge bucket (an indexed
                        range on incidents.ends_at_ts: at most 300 s of closings)
                        - those closed that start after now (normally none)
    downtime (closed) = P(b) - P(a), P(t) = covered_before + the covered part of the
                        segment starting last at or before t (one index seek each)

Firing incidents are read as they are (bounded by what is open); all of them end at
`now`, so their union is [earliest start, now] and the closed part is only needed up to
that start. The figures equal those computed from every incident (up to the order of
floating-point additions): tests/integration/test_service_windows.py proves it against
that computation.

Writes are exact under concurrency: a transaction collects its closings and writes them
at commit (`flush`), services in sorted order, each after upserting its row in
`incident_window_services`, which holds the row lock of that service (PostgreSQL, READ
COMMITTED) so two replicas merge segments of one service one after the other, and never
in opposite orders (no deadlock). Bucket and segment rows of one service are only ever
written under that lock. A closing writes one bucket row, a few segment rows, and moves
the running totals of the rows after it (few: closings come in time order, mostly).

Rows are keyed by the service's series name (itself, or `other` past
`limits.max_label_values`), as the incident-duration histogram is. Rows older than the
longest window read may be dropped (`prune`): the aggregates never need incidents or
rows from before the window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from receiver import reliability
from receiver.reliability import WindowFacts
from receiver.store.labels import OTHER

#: width of a bucket of closings, in seconds: a scrape reads the closings of at most one
#: bucket from the incidents table (the window's partial edge)
BUCKET_SECONDS = 300

Execute = Callable[[str, Sequence[Any]], Any]
Fold = Callable[[str], str]


def bucket_of(at: float) -> float:
    """The start of the bucket holding `at` (seconds): b <= at < b + BUCKET_SECONDS,
    exactly (the float division may round across a bucket edge; corrected here)."""
    index = math.floor(at / BUCKET_SECONDS)
    if index * BUCKET_SECONDS > at:
        index -= 1
    elif (index + 1) * BUCKET_SECONDS <= at:
        index += 1
    return float(index * BUCKET_SECONDS)


def first_whole_bucket(since: float) -> float:
    """The start of the first bucket that lies wholly at or after `since`."""
    start = bucket_of(since)
    return start if start == since else start + BUCKET_SECONDS


# writes ------------------------------------------------------------------------------


def flush(tx: Any, closed: list[tuple[str, float, float]]) -> None:
    """Write the closings a transaction collected, (service, start, end) in seconds, and
    empty the list. `tx` is the SqlTransaction (its `execute` and its label folder).
    Call once, just before commit."""
    if not closed:
        return
    named = sorted((tx.labels.value("service", s, count=False), a, b) for s, a, b in closed)
    closed.clear()
    by_service: dict[str, list[tuple[float, float]]] = {}
    for service, start, end in named:
        by_service.setdefault(service, []).append((start, end))
    for service, intervals in by_service.items():  # sorted: the lock order
        tx.execute(
            "INSERT INTO incident_window_services (service, closed) VALUES (?, ?) "
            "ON CONFLICT (service) DO UPDATE "
            "SET closed = incident_window_services.closed + excluded.closed",
            (service, len(intervals)),
        )
        record(tx.execute, service, intervals)


def record(execute: Execute, service: str, intervals: Iterable[tuple[float, float]]) -> None:
    """Add closed incidents (start, end) of one service series to its buckets and
    segments. The caller holds the service's lock (see `flush`)."""
    deltas: dict[float, tuple[int, float]] = {}
    for start, end in intervals:
        count, seconds = deltas.get(bucket_of(end), (0, 0.0))
        deltas[bucket_of(end)] = (count + 1, seconds + max(0.0, end - start))
        merge_segment(execute, service, start, end)
    for bucket, (count, seconds) in sorted(deltas.items()):
        add_to_bucket(execute, service, bucket, count, seconds)


def add_to_bucket(execute: Execute, service: str, bucket: float, count: int, seconds: float):
    """Count `count` closings of `seconds` in all in a bucket, keeping every later
    bucket's running totals (cumulative_*) their sum up to it."""
    before_count, before_seconds = _totals_before(execute, service, bucket)
    execute(
        "INSERT INTO incident_window_buckets (service, bucket_start, incidents, "
        "duration_seconds, cumulative_incidents, cumulative_duration_seconds) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (service, bucket_start) DO UPDATE SET "
        "incidents = incident_window_buckets.incidents + excluded.incidents, "
        "duration_seconds = incident_window_buckets.duration_seconds "
        "+ excluded.duration_seconds, "
        "cumulative_incidents = incident_window_buckets.cumulative_incidents "
        "+ excluded.incidents, "
        "cumulative_duration_seconds = incident_window_buckets.cumulative_duration_seconds "
        "+ excluded.duration_seconds",
        (service, bucket, count, seconds, before_count + count, before_seconds + seconds),
    )
    execute(
        "UPDATE incident_window_buckets SET cumulative_incidents = cumulative_incidents + ?, "
        "cumulative_duration_seconds = cumulative_duration_seconds + ? "
        "WHERE service = ? AND bucket_start > ?",
        (count, seconds, service, bucket),
    )


def _totals_before(execute: Execute, service: str, bucket: float) -> tuple[int, float]:
    """Running totals of the buckets before `bucket`: the last one's, or, when rows
    before it were pruned (or never were), the next one's minus its own."""
    row = execute(
        "SELECT cumulative_incidents, cumulative_duration_seconds FROM incident_window_buckets "
        "WHERE service = ? AND bucket_start < ? ORDER BY bucket_start DESC LIMIT 1",
        (service, bucket),
    ).fetchone()
    if row is not None:
        return int(row[0]), float(row[1])
    row = execute(
        "SELECT cumulative_incidents - incidents, cumulative_duration_seconds "
        "- duration_seconds FROM incident_window_buckets "
        "WHERE service = ? AND bucket_start >= ? ORDER BY bucket_start LIMIT 1",
        (service, bucket),
    ).fetchone()
    return (int(row[0]), float(row[1])) if row is not None else (0, 0.0)


def merge_segment(execute: Execute, service: str, start: float, end: float) -> None:
    """Merge [start, end] into the service's disjoint segments, adding what it newly
    covers to `covered_before` of every later segment. An interval ending before it
    starts covers nothing (it counts in the buckets only, with duration 0)."""
    if end <= start:
        return
    segment = "SELECT starts_at_ts, ends_at_ts, covered_before FROM incident_downtime_segments "
    previous = execute(
        segment + "WHERE service = ? AND starts_at_ts < ? ORDER BY starts_at_ts DESC LIMIT 1",
        (service, start),
    ).fetchone()
    met = execute(
        segment + "WHERE service = ? AND starts_at_ts >= ? AND starts_at_ts <= ? "
        "ORDER BY starts_at_ts",
        (service, start, end),
    ).fetchall()
    if previous is not None and previous[1] >= start:
        met.insert(0, previous)
        previous = None
    low = min(start, met[0][0]) if met else start
    high = max(end, met[-1][1]) if met else end
    already = sum(b - a for a, b, _ in met)
    newly = (high - low) - already
    if len(met) == 1 and newly <= 0:
        return  # inside one segment: nothing new
    if met:
        covered_before = met[0][2]
    elif previous is not None:
        covered_before = previous[2] + (previous[1] - previous[0])
    else:  # the earliest kept: its successor knows what lies before (rows may be pruned)
        after = execute(
            "SELECT covered_before FROM incident_downtime_segments WHERE service = ? "
            "AND starts_at_ts > ? ORDER BY starts_at_ts LIMIT 1",
            (service, high),
        ).fetchone()
        covered_before = after[0] if after is not None else 0.0
    if met:
        execute(
            "DELETE FROM incident_downtime_segments WHERE service = ? AND starts_at_ts >= ? "
            "AND starts_at_ts <= ?",
            (service, met[0][0], met[-1][0]),
        )
    execute(
        "INSERT INTO incident_downtime_segments (service, starts_at_ts, ends_at_ts, "
        "covered_before) VALUES (?, ?, ?, ?)",
        (service, low, high, covered_before),
    )
    if newly > 0:
        execute(
            "UPDATE incident_downtime_segments SET covered_before = covered_before + ? "
            "WHERE service = ? AND starts_at_ts > ?",
            (newly, service, high),
        )


# reads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedInWindow:
    """Closed incidents of one service overlapping the window: how many, and the sum of
    their durations (seconds)."""

    incidents: int = 0
    seconds: float = 0.0

    def __add__(self, other: ClosedInWindow) -> ClosedInWindow:
        return ClosedInWindow(self.incidents + other.incidents, self.seconds + other.seconds)

    def __sub__(self, other: ClosedInWindow) -> ClosedInWindow:
        return ClosedInWindow(self.incidents - other.incidents, self.seconds - other.seconds)


def closed_in_window(execute: Execute, since: float, now: float, fold: Fold) -> dict[str, Any]:
    """service -> ClosedInWindow: incidents closed with end >= since and start <= now
    (what reliability.figures keeps of them), by series name folded with `fold`.
    Three statements, each bounded: one row per service series, the closings of one
    bucket, and closed incidents starting in the future."""
    whole = first_whole_bucket(since)
    found: dict[str, ClosedInWindow] = {}

    def add(service: str, figures: ClosedInWindow) -> None:
        name = fold(service)
        found[name] = found.get(name, ClosedInWindow()) + figures

    for service, *totals in _bucket_totals(execute, whole):
        last = ClosedInWindow(int(totals[0] or 0), float(totals[1] or 0.0))
        if totals[2] is not None:
            before = ClosedInWindow(int(totals[2]), float(totals[3]))
        elif totals[4] is not None:
            before = ClosedInWindow(int(totals[4]), float(totals[5]))
        else:
            before = last  # no bucket at or after the edge
        add(service, last - before)
    for service, count, seconds in execute(
        "SELECT service, COUNT(*), SUM(duration_seconds) FROM incidents "
        "WHERE ends_at_ts >= ? AND ends_at_ts < ? AND starts_at_ts <= ? GROUP BY service",
        (since, whole, now),
    ).fetchall():
        add(service, ClosedInWindow(int(count), float(seconds or 0.0)))
    for service, count, seconds in execute(
        "SELECT service, COUNT(*), SUM(duration_seconds) FROM incidents "
        "WHERE status = 'resolved' AND starts_at_ts > ? AND ends_at_ts >= ? GROUP BY service",
        (now, whole),
    ).fetchall():
        add(service, ClosedInWindow() - ClosedInWindow(int(count), float(seconds or 0.0)))
    return found


def _bucket_totals(execute: Execute, whole: float) -> list[tuple[Any, ...]]:
    """Per service series: running totals of its last bucket, of its last bucket before
    `whole`, and (when none is before) of what precedes its first bucket from `whole`."""
    last = "SELECT b.{} FROM incident_window_buckets b WHERE b.service = h.service "
    before = last + "AND b.bucket_start < ? ORDER BY b.bucket_start DESC LIMIT 1"
    after = last + "AND b.bucket_start >= ? ORDER BY b.bucket_start LIMIT 1"
    latest = last + "ORDER BY b.bucket_start DESC LIMIT 1"
    columns = ("cumulative_incidents", "cumulative_duration_seconds")
    preceding = (
        "cumulative_incidents - b.incidents",
        "cumulative_duration_seconds - b.duration_seconds",
    )
    selects = [
        *(latest.format(column) for column in columns),
        *(before.format(column) for column in columns),
        *(after.format(column) for column in preceding),
    ]
    sql = (
        "SELECT h.service, "
        + ", ".join(f"({select})" for select in selects)
        + " FROM incident_window_services h ORDER BY h.service"
    )
    return execute(sql, (whole, whole, whole, whole)).fetchall()


def covered(execute: Execute, spans: Sequence[tuple[str, float, float]]) -> dict[str, float]:
    """service series -> seconds of its closed incidents' union within [a, b], for each
    (series, a, b) of `spans` (a <= b), summed per series. One statement: two index
    seeks per end."""
    if not spans:
        return {}
    points = [(service, at) for service, a, b in spans for at in (a, b)]
    values = ", ".join(
        ["(CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION))"] + ["(?, ?)"] * (len(points) - 1)
    )
    rows = execute(
        f"WITH points (service, at) AS (VALUES {values}) "
        "SELECT p.service, p.at, "
        "(SELECT s.covered_before + (CASE WHEN s.ends_at_ts < p.at THEN s.ends_at_ts "
        "ELSE p.at END) - s.starts_at_ts FROM incident_downtime_segments s "
        "WHERE s.service = p.service AND s.starts_at_ts <= p.at "
        "ORDER BY s.starts_at_ts DESC LIMIT 1), "
        "(SELECT s.covered_before FROM incident_downtime_segments s "
        "WHERE s.service = p.service AND s.starts_at_ts > p.at "
        "ORDER BY s.starts_at_ts LIMIT 1) "
        "FROM points p",
        [value for point in points for value in point],
    ).fetchall()
    at_point = {
        (service, float(at)): float(up_to if up_to is not None else next_before or 0.0)
        for service, at, up_to, next_before in rows
    }
    found: dict[str, float] = {}
    for service, a, b in spans:
        found[service] = found.get(service, 0.0) + max(
            0.0, at_point[service, float(b)] - at_point[service, float(a)]
        )
    return found


def series(execute: Execute) -> list[str]:
    """The service series that have closed incidents (their names as written)."""
    return [
        row[0]
        for row in execute(
            "SELECT service FROM incident_window_services ORDER BY service", ()
        ).fetchall()
    ]


# existing journals and retention -----------------------------------------------------


def prune(execute: Execute, before: float, batch: int = 10_000) -> tuple[int, int]:
    """Drop at most `batch` bucket rows wholly before `before` and `batch` segments
    ending before it (seconds since the epoch; never later than now minus the MTTR
    window: reads need nothing older), the oldest first: what is kept of the old rows is
    then always the latest of them, so the running totals stay consistent (reads take
    differences). Returns (buckets, segments) deleted; call again, in a new transaction,
    while either equals `batch` (small transactions: never a long lock)."""
    buckets = execute(
        "DELETE FROM incident_window_buckets WHERE (service, bucket_start) IN "
        "(SELECT service, bucket_start FROM incident_window_buckets WHERE bucket_start < ? "
        "ORDER BY bucket_start LIMIT ?)",
        (bucket_of(before), batch),
    ).rowcount
    segments = execute(
        "DELETE FROM incident_downtime_segments WHERE (service, starts_at_ts) IN "
        "(SELECT service, starts_at_ts FROM incident_downtime_segments WHERE ends_at_ts < ? "
        "ORDER BY starts_at_ts LIMIT ?)",
        (before, batch),
    ).rowcount
    return buckets, segments


def read(execute: Execute, since: float, now: float, fold: Fold) -> dict[str, WindowFacts]:
    """service (folded) -> reliability.WindowFacts for the window [since, now] (seconds):
    the closed incidents overlapping it, the firing ones, and the seconds of the window
    that closed incidents cover before the firing ones began. A constant number of
    statements, each bounded by services or by what is open (see the module docstring)."""
    firing: dict[str, list[float]] = {}
    for service, start in execute(
        "SELECT service, starts_at_ts FROM incidents WHERE status = 'firing'", ()
    ).fetchall():
        if start <= now:  # as reliability.figures: one starting later is not counted
            firing.setdefault(fold(service), []).append(float(start))
    closed = closed_in_window(execute, since, now, fold)
    spans = [
        (name, since, reliability.closed_part_end(firing.get(fold(name), ()), since, now))
        for name in series(execute)
    ]
    downtime: dict[str, float] = {}
    for name, seconds in covered(execute, spans).items():
        downtime[fold(name)] = downtime.get(fold(name), 0.0) + seconds
    return {
        name: WindowFacts(
            closed=closed.get(name, ClosedInWindow()).incidents,
            closed_seconds=closed.get(name, ClosedInWindow()).seconds,
            firing_starts=tuple(sorted(firing.get(name, ()))),
            closed_downtime=downtime.get(name, 0.0),
        )
        for name in sorted(set(firing) | set(closed) | set(downtime))
    }


def services_with_incidents(execute: Execute, bound: int) -> list[str]:
    """The admitted services (seq < bound) with at least one incident in the journal,
    then `other` if any incident has a service not admitted: one index probe per
    admitted service and per gap between two of them (in the database's own order),
    never a scan of the incidents."""
    admitted_sql = "SELECT value FROM metric_label_values WHERE label = 'service' AND seq < ?"
    found = [
        row[0]
        for row in execute(
            f"SELECT m.value FROM ({admitted_sql}) m WHERE EXISTS "
            "(SELECT 1 FROM incidents i WHERE i.service = m.value) ORDER BY m.value",
            (bound,),
        ).fetchall()
    ]
    admitted = [row[0] for row in execute(admitted_sql + " ORDER BY value", (bound,)).fetchall()]
    if _any_between(execute, admitted):
        found.append(OTHER)
    return found


def _any_between(execute: Execute, admitted: list[str]) -> bool:
    """Whether an incident's service lies outside `admitted` (sorted as the database
    sorts): probes before the first, after the last, and between each two."""
    if not admitted:
        return execute("SELECT 1 FROM incidents LIMIT 1", ()).fetchone() is not None
    probes = [
        "EXISTS (SELECT 1 FROM incidents WHERE service < ?)",
        "EXISTS (SELECT 1 FROM incidents WHERE service > ?)",
    ]
    params: list[Any] = []
    gaps = list(itertools.pairwise(admitted))
    prefix = ""
    if gaps:
        rows = ["(CAST(? AS TEXT), CAST(? AS TEXT))"] + ["(?, ?)"] * (len(gaps) - 1)
        prefix = f"WITH gaps (low, high) AS (VALUES {', '.join(rows)}) "
        params.extend(value for gap in gaps for value in gap)
        probes.append(
            "EXISTS (SELECT 1 FROM gaps g WHERE EXISTS (SELECT 1 FROM incidents i "
            "WHERE i.service > g.low AND i.service < g.high))"
        )
    params.extend((admitted[0], admitted[-1]))
    # the probes read in order: the gaps' parameters come first in the text
    probes = probes[2:] + probes[:2]
    sql = prefix + "SELECT 1 WHERE " + " OR ".join(probes)
    return execute(sql, params).fetchone() is not None
