"""Replicas on PostgreSQL: ingest and dispatch throughput with 1 and with 3 replicas.

Each row starts N `remediator serve` processes (real gunicorn, the settings `serve`
uses) on ONE fresh PostgreSQL database (the server of REMEDIATOR_BENCH_POSTGRES, default
the local one; `--postgres URL`), then posts distinct 1-alert firing notifications from
8 client threads, closed loop, one keep-alive connection each, thread i to replica
i mod N (as a load balancer or N Alertmanagers would spread them). Every alert matches
one strategy with one action (`log` executor, target = the alert's instance, so no gate
holds it back; cooldown 0s), so every notification is an incident, a runbook run and an
action that some replica's dispatcher claims and finishes.

- ingest: notifications/s = notifications / (first POST -> last answer);
- dispatch: actions/s = actions / (first POST -> the journal shows every action final);
- server CPU: utime + stime of every process of every replica (gunicorn master,
  worker, journal writer, dispatch process) over the run, in cores; PostgreSQL's own
  backends are not counted;
- the journal is reconciled: one incident and one succeeded action per notification,
  every request answered 200.

Report only: no ratio target (the 3-replica row shares the same 2 cores with the
1-replica row's single server, the client and PostgreSQL). The row's `speedup` is its
ratio to the 1-replica row of the same run.

    python -m bench.replicas [--quick] [--out DIR] [--postgres URL] [--keep]
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import common, payloads
from bench.common import fmt

ALERTNAME = "BenchReplicas"
NOTIFICATIONS = 3000
QUICK_NOTIFICATIONS = 300
CLIENTS = 8
REPLICA_COUNTS = (1, 3)
SETTLE_TIMEOUT_S = 300.0
DEFAULT_POSTGRES = os.environ.get(
    "REMEDIATOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
STRATEGIES = f"""
  - name: bench-replicas
    matchers: ['alertname="{ALERTNAME}"']
    action: restart
    executor: audit
    target: '{{{{ labels.instance }}}}'"""
DEFAULTS = "  cooldown: 0s"


@contextmanager
def postgres_database(url: str) -> Iterator[str]:
    """A throwaway database on the server of `url` (dropped afterwards): a database, not
    a schema, because advisory locks are per database, and the store's (before issue
    18's keyed locks) would be shared with any other journal on the same database."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(url)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def replicas(count: int, workdir: Path, store_url: str) -> Iterator[list[common.Server]]:
    """`count` `remediator serve` processes on one store, each in its own folder."""
    config_text = common.config_text(strategies=STRATEGIES, defaults=DEFAULTS)
    with ExitStack() as stack:
        servers = []
        for number in range(count):
            home = workdir / f"replica{number}"
            home.mkdir()
            config = common.write_config(home, config_text)
            server = common.launch("remediator", home, config, store_url)
            stack.callback(common.stop, server.process)
            servers.append(server)
        for server in servers:
            common.wait_ready(server, timeout=60.0)
        yield servers


def bodies(count: int, run: str) -> list[bytes]:
    """`count` distinct 1-alert firing notifications (bench.payloads' template)."""
    template = payloads.template(1, ALERTNAME, payloads.now_rfc3339(-60))
    return [
        template.replace("@RUN@", run).replace("@TID@", "00").replace("@SEQ@", f"{i:08x}").encode()
        for i in range(count)
    ]


def post_spread(servers: list[common.Server], items: list[bytes]) -> tuple[float, list[int]]:
    """POST every body from CLIENTS threads (closed loop), thread i to servers[i mod N];
    returns (first POST -> last answer in seconds, each body's status)."""
    statuses = [0] * len(items)
    lock = threading.Lock()
    next_index = [0]

    def work(server: common.Server) -> None:
        conn = common.Connection(*server.host_port)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(items):
                    return
                try:
                    statuses[i] = conn.post("/webhook", items[i])[0]
                except OSError:
                    statuses[i] = -1
                    conn.close()
        finally:
            conn.close()

    threads = [
        threading.Thread(target=work, args=(servers[i % len(servers)],)) for i in range(CLIENTS)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, statuses


def journal_counts(store_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(store_url, connect_timeout=5) as connection:
        one = lambda sql: connection.execute(sql).fetchone()[0]  # noqa: E731
        by_status = dict(connection.execute("SELECT status, COUNT(*) FROM actions GROUP BY 1"))
        per_incident = one(
            "SELECT COALESCE(MAX(n), 0) FROM "
            "(SELECT COUNT(*) AS n FROM actions GROUP BY incident_id) AS counts"
        )
        claimers = one("SELECT COUNT(DISTINCT claimed_by) FROM actions")
        return {
            "notifications": one("SELECT COUNT(*) FROM notifications"),
            "incidents": one("SELECT COUNT(*) FROM incidents"),
            "actions": one("SELECT COUNT(*) FROM actions"),
            "actions_by_status": by_status,
            "max_actions_per_incident": per_incident,
            "dispatchers_that_claimed": claimers,
        }


def wait_final(
    store_url: str, expected: int, start: float, timeout: float = SETTLE_TIMEOUT_S
) -> float | None:
    """Seconds from `start` (perf_counter) until `expected` actions exist, all final;
    None when `timeout` seconds (from `start`) pass first."""
    import psycopg

    with psycopg.connect(store_url, connect_timeout=5, autocommit=True) as connection:
        while time.perf_counter() - start < timeout:
            total, open_ = connection.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE status IN ('planned', 'running')) "
                "FROM actions"
            ).fetchone()
            if total >= expected and not open_:
                return time.perf_counter() - start
            time.sleep(0.05)
    return None


def measure(
    count: int,
    notifications: int,
    postgres: str,
    keep: bool,
    settle_timeout: float = SETTLE_TIMEOUT_S,
) -> dict[str, Any]:
    """One row: `count` replicas on a fresh database, `notifications` posted, every
    action awaited (up to `settle_timeout` seconds from the first POST), the journal
    reconciled into `ok`."""
    items = bodies(notifications, f"{count:02x}")
    load = os.getloadavg()
    with (
        common.workdir(f"replicas-{count}", keep) as wd,
        postgres_database(postgres) as store_url,
        replicas(count, wd, store_url) as servers,
    ):
        cpu_before = sum(s.cpu_seconds() for s in servers)
        start = time.perf_counter()
        ingest_s, statuses = post_spread(servers, items)
        dispatch_s = wait_final(store_url, notifications, start, settle_timeout)
        cpu = sum(s.cpu_seconds() for s in servers) - cpu_before
        journal = journal_counts(store_url)
        alive = all(s.process.poll() is None for s in servers)
    answered = Counter(statuses)
    ok = (
        answered == Counter({200: notifications})
        and journal["incidents"] == journal["actions"] == notifications
        and journal["actions_by_status"] == {"succeeded": notifications}
        and journal["max_actions_per_incident"] == 1
        and dispatch_s is not None
        and alive
    )
    elapsed = dispatch_s or ingest_s
    return {
        "replicas": count,
        "notifications": notifications,
        "load_average_before": [round(value, 2) for value in load],
        "ingest_s": round(ingest_s, 3),
        "ingest_per_s": round(notifications / ingest_s, 1),
        "dispatch_s": None if dispatch_s is None else round(dispatch_s, 3),
        "dispatch_per_s": None if dispatch_s is None else round(notifications / dispatch_s, 1),
        "server_cpu_cores": round(cpu / elapsed, 2),
        "server_cpu_ms_per_alert": round(1000 * cpu / notifications, 2),
        "answers": {str(k): v for k, v in answered.items()},
        "journal": journal,
        "ok": ok,
    }


def bench(quick: bool, keep: bool, postgres: str = DEFAULT_POSTGRES) -> dict[str, Any]:
    notifications = QUICK_NOTIFICATIONS if quick else NOTIFICATIONS
    result: dict[str, Any] = {
        "benchmark": "replicas",
        "quick": quick,
        "load": {
            "clients": CLIENTS,
            "how": f"closed loop: {CLIENTS} Python threads, one keep-alive connection each, "
            "thread i to replica i mod N; distinct 1-alert firing notifications",
        },
        "strategy_description": "every alert matches `restart {{ labels.instance }}` "
        "(`log` executor, cooldown 0s): one action per notification",
        "machine": common.machine(),
        "rows": [],
    }
    try:
        for count in REPLICA_COUNTS:
            row = measure(count, notifications, postgres, keep)
            result["rows"].append(row)
            print(
                f"  replicas {count}: ingest {row['ingest_per_s']}/s, "
                f"dispatch {row['dispatch_per_s']}/s",
                file=sys.stderr,
            )
    except Exception as exc:  # no PostgreSQL here: say so, as bench.journal does
        import psycopg

        if not isinstance(exc, psycopg.OperationalError):
            raise
        result["skipped"] = f"PostgreSQL unreachable at {postgres}: {exc}"
    rows = result["rows"]
    if rows and rows[0]["replicas"] == 1:
        for row in rows:
            row["ingest_speedup"] = common.ratio(row["ingest_per_s"], rows[0]["ingest_per_s"])
            row["dispatch_speedup"] = common.ratio(row["dispatch_per_s"], rows[0]["dispatch_per_s"])
    # correctness only: no throughput target on this 2-core machine (report)
    result["target"] = {"journal_ok": all(row["ok"] for row in rows)}
    return result


def render(result: dict[str, Any]) -> str:
    if result.get("skipped"):
        return f"### replicas on PostgreSQL\n\nskipped: {result['skipped']}"
    headers = [
        "replicas",
        "notifications",
        "ingest notif/s",
        "x 1 replica",
        "dispatch actions/s",
        "x 1 replica",
        "server CPU cores",
        "CPU ms/alert",
        "dispatchers that claimed",
        "journal ok",
        "load avg before",
    ]
    rows = [
        [
            row["replicas"],
            row["notifications"],
            fmt(row["ingest_per_s"]),
            fmt(row.get("ingest_speedup"), 2),
            fmt(row["dispatch_per_s"]),
            fmt(row.get("dispatch_speedup"), 2),
            fmt(row["server_cpu_cores"], 2),
            fmt(row["server_cpu_ms_per_alert"], 2),
            row["journal"]["dispatchers_that_claimed"],
            fmt(row["ok"]),
            fmt(row["load_average_before"][0], 2),
        ]
        for row in result["rows"]
    ]
    return (
        "### replicas on PostgreSQL (report; no target)\n\n"
        f"{result['load']['how']}; {result['strategy_description']}\n\n"
        + common.table(headers, rows)
    )


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (a schema is made)")
    args = p.parse_args()
    result = bench(args.quick, args.keep, args.postgres)
    common.write_result(args.out, "replicas", result)
    print(render(result))


if __name__ == "__main__":
    main()
