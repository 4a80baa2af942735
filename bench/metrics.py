"""`/metrics` latency with 10,000 and with 1,000,000 incidents in the journal.

Each journal is built fast, in the real schema: `remediator`'s store creates the tables,
the incidents are bulk-inserted (executemany) spread over 90 days (the default incident
retention), a tenth of them inside the 24 h MTTR window (100,000 of the million), on 20
services, closed after an exponential time (mean 5 min), plus 50 firing; then the per-
service window aggregates are dropped, the journal marked as of the revision before
them, and the store opened again, which upgrades it: schema revision 0003 backfills them
as it does for a journal of an earlier release, timed. A real `remediator serve` then
answers GET /metrics over one keep-alive connection, closed loop: one server per
journal, both running, scraped in turn (a round: GET /metrics then /api/v1/stats on
each) so the machine's other load falls on both alike; 5 warm-up rounds, then N timed
ones (200; --quick: 30), p50/p99 from send to the end of the body.

Target: p50 with 1M incidents <= 1.5 x p50 with 10k (the scrape's cost must not grow
with the journal). For scale, the computation /metrics ran before the aggregates (every
incident of the window read, reliability.figures over them) is timed in-process on the
same journals.

    python -m bench.metrics [--quick] [--out DIR] [--keep]
"""

from __future__ import annotations

import contextlib
import http.client
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import fmt

DAY = 86400.0
RETENTION_DAYS = 90
SERVICES = 20
FIRING = 50
IN_WINDOW_SHARE = 0.1
MEAN_DURATION = 300.0
SIZES = (10_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
TARGET_RATIO = 1.5
WARMUP = 5
WINDOW_TABLES = (
    "incident_window_services",
    "incident_window_buckets",
    "incident_downtime_segments",
)


def incident_rows(count: int, now: float, first: int = 0) -> list[tuple[Any, ...]]:
    """Incidents `first` to `first + count` of a journal as rows of the incidents table:
    numbers below FIRING still firing (started in the last hour), a tenth of the rest
    ending inside the last 24 h, the others over the 90 days before."""
    rng = random.Random(first)
    rows = []
    for n in range(first, first + count):
        service = f"svc-{n % SERVICES:02d}"
        if n < FIRING:
            start, end = now - rng.uniform(60, 3600), None
        else:
            inside = rng.random() < IN_WINDOW_SHARE
            end = now - (rng.uniform(0, DAY) if inside else rng.uniform(DAY, RETENTION_DAYS * DAY))
            start = end - rng.expovariate(1 / MEAN_DURATION)
        rows.append(_row(n, service, start, end))
    return rows


def _row(n: int, service: str, start: float, end: float | None) -> tuple[Any, ...]:
    from receiver.store.sql import iso

    labels = f'{{"alertname":"BenchDown","instance":"host-{n:07d}","service":"{service}"}}'
    return (
        f"{n:016x}",
        iso(start),
        start,
        "BenchDown",
        service,
        "firing" if end is None else "resolved",
        labels,
        "{}",
        "",
        0,
        start,
        end if end is not None else start,
        iso(end),
        end,
        None if end is None else max(0.0, end - start),
    )


INSERT = (
    "INSERT INTO incidents (fingerprint, starts_at, starts_at_ts, alertname, service, status, "
    "labels, annotations, generator_url, matched, first_seen, last_seen, ends_at, ends_at_ts, "
    "duration_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def build_journal(path: Path, count: int, now: float) -> dict[str, Any]:
    """The journal at `path` as described in the module docstring; returns how long each
    part took (seconds)."""
    from receiver.store import open_store

    started = time.perf_counter()
    open_store(f"sqlite:///{path}").close()  # the real schema
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        for chunk in range(0, count, 100_000):
            db.executemany(INSERT, incident_rows(min(100_000, count - chunk), now, first=chunk))
        # admitted label values, as the hot path writes them (store/labels.py)
        db.executemany(
            "INSERT OR IGNORE INTO metric_label_values (label, value, seq) VALUES (?, ?, ?)",
            [("service", f"svc-{k:02d}", k) for k in range(SERVICES)],
        )
        for table in WINDOW_TABLES:  # a journal of the release before the aggregates
            db.execute(f"DROP TABLE {table}")
        db.execute("UPDATE alembic_version SET version_num = '0002'")
        db.execute("COMMIT")
    finally:
        db.close()
    inserted = time.perf_counter()
    open_store(f"sqlite:///{path}").close()  # upgrades it: revision 0003 backfills them
    backfilled = time.perf_counter()
    return {
        "insert_seconds": round(inserted - started, 1),
        "backfill_seconds": round(backfilled - inserted, 1),
    }


def old_computation_ms(path: Path, now: float, runs: int) -> float | None:
    """Median ms of what /metrics computed MTTR and availability from before the
    aggregates: every incident firing or ending in the window, then reliability.figures."""
    from receiver import reliability

    db = sqlite3.connect(path)
    timings = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            rows = db.execute(
                "SELECT service, starts_at_ts, ends_at_ts FROM incidents "
                "WHERE status = 'firing' OR ends_at_ts >= ?",
                (now - DAY,),
            ).fetchall()
            grouped: dict[str, list[tuple[float, float | None]]] = {}
            for service, start, end in rows:
                grouped.setdefault(service, []).append((start, end))
            for intervals in grouped.values():
                reliability.figures(intervals, DAY, now)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        db.close()
    return common.percentile(timings, 50)


class Scraper:
    """GETs over one keep-alive connection to one server, timed from send to the end of
    the body (ms)."""

    def __init__(self, server: common.Server) -> None:
        host, port = server.host_port
        self.connection = http.client.HTTPConnection(host, port, timeout=60)
        self.timings: dict[str, list[float]] = {}
        self.statuses: set[int] = set()
        self.bytes: dict[str, int] = {}

    def get(self, path: str, timed: bool = True) -> None:
        started = time.perf_counter()
        self.connection.request("GET", path, headers=common.AUTH_HEADERS)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        self.statuses.add(response.status)
        self.bytes[path] = len(body)
        if timed:
            self.timings.setdefault(path, []).append(elapsed)

    def figures(self, path: str) -> dict[str, Any]:
        timings = self.timings.get(path, [])
        return {
            "p50_ms": _round(common.percentile(timings, 50)),
            "p99_ms": _round(common.percentile(timings, 99)),
            "scrapes": len(timings),
            "bytes": self.bytes.get(path),
        }

    def close(self) -> None:
        self.connection.close()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


PATHS = ("/metrics", "/api/v1/stats")


def built(count: int, workdir: Path) -> dict[str, Any]:
    """Build one journal in `workdir`; what it holds and how long it took."""
    now = time.time()
    timing = build_journal(workdir / "journal.db", count, now)
    journal = common.Journal(workdir / "journal.db")
    try:
        in_window = journal.scalar(
            "SELECT COUNT(*) FROM incidents WHERE status = 'firing' OR ends_at_ts >= ?",
            now - DAY,
        )
    finally:
        journal.close()
    runs = 5 if count > 100_000 else 20
    return {
        "incidents": count,
        "in_window": in_window,
        "build": timing,
        "old_computation_p50_ms": _round(old_computation_ms(workdir / "journal.db", now, runs)),
    }


def paired_scrapes(servers: list[common.Server], scrapes: int) -> list[dict[str, Any]]:
    """Scrape every server in turn, round after round, so that each size meets the same
    load from the rest of the machine (a shared machine's noise falls on both)."""
    scrapers = [Scraper(server) for server in servers]
    try:
        for n in range(WARMUP + scrapes):
            for path in PATHS:
                for scraper in scrapers:
                    scraper.get(path, timed=n >= WARMUP)
        return [
            {
                "metrics": scraper.figures("/metrics"),
                "stats": scraper.figures("/api/v1/stats"),
                "all_200": scraper.statuses == {200},
            }
            for scraper in scrapers
        ]
    finally:
        for scraper in scrapers:
            scraper.close()


def bench(quick: bool, keep: bool) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else SIZES
    scrapes = 30 if quick else 200
    with contextlib.ExitStack() as stack:
        rows, servers = [], []
        for count in sizes:
            print(f"  building a journal of {count:,} incidents ...", file=sys.stderr)
            wd = stack.enter_context(common.workdir(f"metrics-{count}", keep))
            config = common.write_config(wd, common.config_text())
            rows.append(built(count, wd))
            servers.append(stack.enter_context(common.server("remediator", wd, config)))
        print(f"  scraping {len(servers)} servers in turn ...", file=sys.stderr)
        for row, scraped in zip(rows, paired_scrapes(servers, scrapes), strict=True):
            row.update(scraped)
    small, large = rows[0], rows[-1]
    ratio = common.ratio(large["metrics"]["p50_ms"], small["metrics"]["p50_ms"])
    stats_ratio = common.ratio(large["stats"]["p50_ms"], small["stats"]["p50_ms"])
    return {
        "benchmark": "metrics",
        "quick": quick,
        "load": {
            "how": f"closed loop, one keep-alive connection per server; the servers scraped "
            f"in turn ({WARMUP} warm-up + {scrapes} timed rounds of GET /metrics then "
            "/api/v1/stats on each); nothing posted meanwhile",
            "journal": f"{SERVICES} services, {RETENTION_DAYS} days, "
            f"{IN_WINDOW_SHARE:.0%} in the 24 h window, {FIRING} firing",
        },
        "rows": rows,
        "p50_ratio": _round(ratio),
        "p99_ratio": _round(common.ratio(large["metrics"]["p99_ms"], small["metrics"]["p99_ms"])),
        "stats_p50_ratio": _round(stats_ratio),
        "target": {
            "max_ratio": TARGET_RATIO,
            "met": ratio is not None and ratio <= TARGET_RATIO,
            "stats_met": stats_ratio is not None and stats_ratio <= TARGET_RATIO,
            "all_answered_200": all(row["all_200"] for row in rows),
        },
        "machine": common.machine(),
    }


def render(result: dict[str, Any]) -> str:
    headers = [
        "incidents",
        "in 24 h window",
        "insert s",
        "backfill s",
        "/metrics p50 ms",
        "p99 ms",
        "/api/v1/stats p50 ms",
        "p99 ms",
        "old computation ms",
    ]
    rows = [
        [
            fmt(r["incidents"]),
            fmt(r["in_window"]),
            fmt(r["build"]["insert_seconds"]),
            fmt(r["build"]["backfill_seconds"]),
            fmt(r["metrics"]["p50_ms"], 2),
            fmt(r["metrics"]["p99_ms"], 2),
            fmt(r["stats"]["p50_ms"], 2),
            fmt(r["stats"]["p99_ms"], 2),
            fmt(r["old_computation_p50_ms"], 1),
        ]
        for r in result["rows"]
    ]
    target = result["target"]
    return (
        "### /metrics latency against the journal's size\n\n"
        + common.table(headers, rows)
        + f"\n\n/metrics p50 ratio largest/smallest: {fmt(result['p50_ratio'], 2)} "
        f"(target <= {target['max_ratio']}: {fmt(target['met'])}; p99 ratio "
        f"{fmt(result['p99_ratio'], 2)}); /api/v1/stats p50 ratio "
        f"{fmt(result['stats_p50_ratio'], 2)} ({fmt(target['stats_met'])})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    result = bench(args.quick, args.keep)
    common.write_result(args.out, "metrics", result)
    print(render(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["target"]["met"] else 1)
