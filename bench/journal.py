"""Journal writes from concurrent threads: group commit against one commit per notification.

gunicorn's threads journal notifications concurrently, and a store takes one writer at
a time; group commit (receiver/store/group.py) lets the writes that arrive together
share one transaction and one commit. This runs the engine's own ingest work for the
same distinct 1-alert notifications from 8 threads in one process, per store, twice:
the baseline commits each notification in a transaction of its own (what ingest did
before group commit), then through `store.write`, as the webhook does. No HTTP, so
the figures show the journal alone: on SQLite (a temp file, WAL) and on PostgreSQL
(a fresh schema, skipped with a note if the server cannot be reached).

Two kinds of alerts, a row each: `unmatched` (no strategy: an incident row each) and
`one-action` (every alert matches a `run` strategy of a `command` executor, as in
bench.remediate: the incident, its runbook run, the planned action rendered from the
alert's labels and its event). Logs are written as `remediator serve` writes them
(text, INFO), into /dev/null, so their cost is in the CPU figures.

`--store` and `--alerts` (repeatable) run only those rows, e.g. to profile one:
`py-spy record -o journal.svg -- python -m bench.journal --store sqlite --alerts one-action`.

    python -m bench.journal [--quick] [--out DIR] [--postgres URL] [--store S] [--alerts A]
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench import common, payloads
from bench.common import fmt
from receiver import logs
from receiver.alerts import parse_notification
from receiver.config import parse_config
from receiver.engine import journal_work
from receiver.store import open_store

THREADS = 8
CONFIGS = {
    "unmatched": parse_config("executors: {audit: {type: log}}\nstrategies: []\n"),
    "one-action": parse_config(
        """
executors:
  local: {type: command, timeout: 30s}
strategies:
  - name: append-line
    matchers: ['alertname="BenchJournal"']
    action: run
    executor: local
    target: '{{ labels.instance }}'
    command: ['/bin/sh', '-c', 'echo "$1 $(date +%s.%N)" >> lines.txt', 'append',
              '{{ labels.instance }}']
"""
    ),
}
DEFAULT_POSTGRES = os.environ.get(
    "REMEDIATOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def sqlite_url(keep: bool) -> Iterator[str]:
    with common.workdir("journal", keep) as wd:
        yield f"sqlite:///{wd / 'journal.db'}"


@contextmanager
def postgres_url(url: str) -> Iterator[str]:
    """A throwaway schema; every connection the store opens lands in it."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            separator = "&" if "?" in url else "?"
            yield f"{url}{separator}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def notifications(count: int, run: str) -> list[Any]:
    template = payloads.template(1, "BenchJournal", payloads.now_rfc3339(-60))
    filled = (
        template.replace("@RUN@", run).replace("@TID@", "00").replace("@SEQ@", f"{i:08x}")
        for i in range(count)
    )
    return [parse_notification(json.loads(body)) for body in filled]


def one_commit_each(store: Any, work: Callable[[Any], Any]) -> Any:
    with store.transaction() as tx:
        return work(tx)


def group_commit(store: Any, work: Callable[[Any], Any]) -> Any:
    return store.write(work)


def measure(
    url: str, notes: list[Any], write: Callable[[Any, Any], Any], kind: str = "unmatched"
) -> dict[str, Any]:
    """Journal every notification from THREADS threads with the config of `kind` (a key
    of CONFIGS); reconcile with the journal."""
    config = CONFIGS[kind]
    store = open_store(url)
    try:
        shares = [notes[i::THREADS] for i in range(THREADS)]
        failures: list[BaseException] = []

        def run(share: list[Any]) -> None:
            try:
                for note in share:
                    write(store, journal_work(config, note, time.time()))
            except BaseException as exc:  # reported in the result, never hidden
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(share,)) for share in shares]
        cpu, start = time.process_time(), time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        counts = store.counts()
        group = store.writes
        return {
            "seconds": round(seconds, 3),
            "notifications_per_s": round(len(notes) / seconds, 1),
            "cpu_ms_per_notification": round(1000 * cpu / len(notes), 3),
            "commits": group.batches if write is group_commit else len(notes),
            "failures": [repr(f) for f in failures],
            "journal_ok": not failures
            and counts["notifications"] == counts["incidents"] == len(notes)
            and counts["actions"] == (0 if kind == "unmatched" else len(notes)),
        }
    finally:
        store.close()


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Log as `remediator serve` does (text, INFO), into /dev/null; the root logger as
    it was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("text")
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        handler.setStream(devnull)
        try:
            yield
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


STORES = ("sqlite", "postgresql")


def bench(
    quick: bool,
    keep: bool,
    postgres: str = DEFAULT_POSTGRES,
    stores: tuple[str, ...] = STORES,
    kinds: tuple[str, ...] = tuple(CONFIGS),
) -> dict[str, Any]:
    """The rows of `stores` (STORES) x `kinds` (keys of CONFIGS)."""
    count = 1000 if quick else 4000
    rows = []
    openers: dict[str, Callable[[], Any]] = {
        "sqlite": lambda: sqlite_url(keep),
        "postgresql": lambda: postgres_url(postgres),
    }
    with quiet_logs():
        for name in stores:
            rows += [_row(name, alerts, openers[name], count) for alerts in kinds]
    return _result(quick, count, rows)


def _row(store: str, alerts: str, opener: Callable[[], Any], count: int) -> dict[str, Any]:
    """One store and kind of alerts, one commit each then group commit."""
    row: dict[str, Any] = {"store": store, "alerts": alerts}
    try:
        for kind, write in (("baseline", one_commit_each), ("group", group_commit)):
            with opener() as url:
                notes = notifications(count, uuid.uuid4().hex[:2])
                row[kind] = measure(url, notes, write, alerts)
    except Exception as exc:  # e.g. PostgreSQL not reachable: say so, go on
        row["skipped"] = f"{type(exc).__name__}: {exc}"
        return row
    row["ratio"] = common.ratio(
        row["group"]["notifications_per_s"], row["baseline"]["notifications_per_s"]
    )
    print(f"  journal {store}, {alerts}: ratio {fmt(row['ratio'], 2)}", file=sys.stderr)
    return row


def _result(quick: bool, count: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "benchmark": "journal",
        "quick": quick,
        "load": {
            "threads": THREADS,
            "notifications": count,
            "how": "engine ingest work for distinct 1-alert notifications, unmatched or "
            "each planning one `run` action, called from threads in one process (no HTTP), "
            "logging as the server does into /dev/null",
        },
        "machine": common.machine(),
        "rows": rows,
        "target": {"note": "no target in the issue: shows what group commit buys"},
        "journal_ok": all(
            r[k]["journal_ok"] for r in rows if "skipped" not in r for k in ("baseline", "group")
        ),
    }


def render(result: dict[str, Any]) -> str:
    headers = [
        "store",
        "alerts",
        "one commit each notif/s",
        "group commit notif/s",
        "ratio",
        "notifications per commit",
        "CPU ms/notif (each / group)",
        "journal complete",
    ]
    body = []
    for row in result["rows"]:
        if "skipped" in row:
            skipped = f"skipped: {row['skipped']}"
            body.append([row["store"], row["alerts"], "-", "-", "-", "-", "-", skipped])
            continue
        base, group = row["baseline"], row["group"]
        body.append(
            [
                row["store"],
                row["alerts"],
                fmt(base["notifications_per_s"]),
                fmt(group["notifications_per_s"]),
                fmt(row["ratio"], 2),
                fmt(result["load"]["notifications"] / max(1, group["commits"]), 1),
                f"{base['cpu_ms_per_notification']:.3f} / {group['cpu_ms_per_notification']:.3f}",
                fmt(base["journal_ok"] and group["journal_ok"]),
            ]
        )
    load = result["load"]
    return "\n".join(
        [
            "## Journal writes: group commit vs one commit per notification",
            "",
            common.table(headers, body),
            "",
            f"Load: {load['notifications']:,} notifications, {load['threads']} threads; "
            f"{load['how']}.",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server for the PostgreSQL row")
    p.add_argument("--store", choices=STORES, action="append", help="only this store's rows")
    p.add_argument("--alerts", choices=tuple(CONFIGS), action="append", help="only these rows")
    args = p.parse_args(argv)
    stores, kinds = tuple(args.store or STORES), tuple(args.alerts or CONFIGS)
    result = bench(args.quick, args.keep, args.postgres, stores, kinds)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'journal', result)}")
    return result


if __name__ == "__main__":
    main()
