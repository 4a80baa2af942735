"""Ingest throughput: notifications/s and alerts/s into `POST /webhook`, against the baseline.

For payloads of 1, 10 and 100 alerts, a fresh server of each kind (baseline, then
`remediator serve` with a fresh SQLite journal) is loaded by wrk: a warm-up run, then
the measured run. Every request carries distinct alerts (new incidents, never
duplicates). Afterwards the server is stopped gracefully and the journal reconciled
with what wrk saw answered: every notification answered 200 is journaled with all of
its alerts, nothing else is (requests still in flight when wrk's timer stopped are left
aside and counted separately).

Strategies (--strategy): `none` (default) routes every alert through a strategy whose
matchers do not match, so alerts are journaled unmatched and no action is planned;
`dry-run` matches every alert with a `log` executor in dry_run, so each alert also
plans an action that the dispatcher claims and skips.

    python -m bench.ingest [--quick] [--out DIR] [--strategy none|dry-run]
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import common, payloads, wrk
from bench.common import KINDS, Journal, fmt

SIZES = (1, 10, 100)
ALERTNAME = "BenchIngest"
TARGET_RATIO = 0.8  # for 1-alert payloads

STRATEGIES = {
    "none": """
  - name: restart-something-else
    matchers: ['alertname="SomethingElse"']
    action: restart
    executor: audit
    target: '{{ labels.service }}'
""",
    "dry-run": f"""
  - name: restart-dry-run
    matchers: ['alertname="{ALERTNAME}"']
    action: restart
    executor: audit
    target: '{{{{ labels.instance }}}}'
    dry_run: true
""",
}
STRATEGY_TEXT = {
    "none": "no strategy matches: every alert is journaled unmatched, no action planned",
    "dry-run": "every alert matches a `log` executor strategy in dry_run: one action "
    "planned per alert, claimed and skipped by the dispatcher",
}


def reconcile(db: Path, runs: list[wrk.WrkRun], size: int, strategy: str) -> dict[str, Any]:
    """Compare the journal with the 200s wrk saw (after the server stopped)."""
    journal = Journal(db)
    try:
        notes = journal.rows("SELECT group_key, alerts FROM notifications")
        per_request = dict(
            journal.rows("SELECT substr(fingerprint, 1, 12), COUNT(*) FROM incidents GROUP BY 1")
        )
        statuses = Counter(
            dict(journal.rows("SELECT status, COUNT(*) FROM incidents GROUP BY status"))
        )
        matched = journal.scalar("SELECT COALESCE(SUM(matched), 0) FROM incidents")
        actions = Counter(dict(journal.rows("SELECT status, COUNT(*) FROM actions GROUP BY 1")))
    finally:
        journal.close()
    ids = [m.group(1) for g, _ in notes if (m := re.search(r'req="([0-9a-f]{12})"', g))]
    unanswered = {u for r in runs for u in r.unanswered}
    accepted = sum(r.accepted for r in runs)
    answered_ids = [i for i in ids if i not in unanswered]
    incidents_answered = sum(n for req, n in per_request.items() if req not in unanswered)
    whole = all(per_request.get(i) == size for i in ids) and set(per_request) <= set(ids)
    expected_actions = 0 if strategy == "none" else incidents_answered
    actions_of_answered = sum(actions.values()) - (len(ids) - len(answered_ids)) * (
        0 if strategy == "none" else size
    )
    ok = (
        len(ids) == len(notes) == len(set(ids))
        and len(answered_ids) == accepted
        and incidents_answered == accepted * size
        and whole
        and statuses.get("firing", 0) == sum(statuses.values())
        and actions_of_answered == expected_actions
    )
    return {
        "ok": ok,
        "accepted_200": accepted,
        "notifications_journaled": len(ids),
        "notifications_journaled_of_200s": len(answered_ids),
        "incidents_journaled": sum(per_request.values()),
        "incidents_journaled_of_200s": incidents_answered,
        "expected_incidents": accepted * size,
        "unanswered_requests": len(unanswered),
        "unanswered_but_journaled": len(ids) - len(answered_ids),
        "every_notification_whole": whole,
        "incidents_matched": matched,
        "actions_by_status": dict(actions),
    }


def bench(quick: bool, keep: bool, strategy: str = "none") -> dict[str, Any]:
    duration, warmup = (3.0, 1.0) if quick else (10.0, 2.0)
    connections = 8
    starts_at = payloads.now_rfc3339(-60)
    rows: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for size in SIZES:
        row: dict[str, Any] = {"alerts_per_notification": size}
        for kind in KINDS:
            with common.workdir(f"ingest-{kind}-{size}", keep) as wd:
                config = common.write_config(
                    wd, common.config_text(strategies=STRATEGIES[strategy])
                )
                settings = common.gunicorn_settings(config)
                template = wd / "body.json"
                template.write_text(payloads.template(size, ALERTNAME, starts_at))
                with common.server(kind, wd, config) as srv:
                    warm = wrk.run(
                        srv.url, template, wd, run=1, connections=connections, duration=warmup
                    )
                    cpu_before = srv.cpu_seconds()
                    measured = wrk.run(
                        srv.url, template, wd, run=2, connections=connections, duration=duration
                    )
                    cpu = srv.cpu_seconds() - cpu_before
                    if kind == "remediator":
                        common.Journal(srv.db).wait_settled(30)  # dry-run skips, if any
                    memory = srv.memory()
                entry = {
                    "warmup": warm.as_dict(),
                    **measured.as_dict(),
                    "alerts_per_s": round(measured.rate * size, 1),
                    "server_cpu_ms_per_notification": round(
                        1000 * cpu / max(1, measured.requests), 3
                    ),
                    "server_cpu_cores": round(cpu / measured.seconds, 2)
                    if measured.seconds
                    else None,
                    "body_bytes": len(wrk.fill(template.read_text(), 1, 1, 1)),
                    "memory": memory,
                }
                if kind == "remediator":
                    entry["journal"] = reconcile(srv.db, [warm, measured], size, strategy)
                row[kind] = entry
        row["ratio"] = common.ratio(
            row["remediator"]["notifications_per_s"], row["baseline"]["notifications_per_s"]
        )
        rows.append(row)
        print(f"  ingest {size:>3} alerts: ratio {fmt(row['ratio'], 2)}", file=sys.stderr)
    one = rows[0]["ratio"]
    return {
        "benchmark": "ingest",
        "quick": quick,
        "strategy": strategy,
        "strategy_description": STRATEGY_TEXT[strategy],
        "load": {
            "tool": wrk.version(),
            "connections": connections,
            "threads": connections,
            "warmup_s": warmup,
            "duration_s": duration,
            "how": "wrk, one keep-alive connection per wrk thread, each request a distinct "
            "notification from a Lua-filled template (Authorization: Bearer), closed loop",
        },
        "server": settings,
        "machine": common.machine(),
        "rows": rows,
        "target": {
            "ratio_1_alert_min": TARGET_RATIO,
            "ratio_1_alert": one,
            "met": one is not None and one >= TARGET_RATIO,
        },
        "journal_ok": all(r["remediator"]["journal"]["ok"] for r in rows),
    }


def _rejected(entry: dict[str, Any]) -> str:
    codes = Counter(entry["warmup"]["rejected_codes"]) + Counter(entry["rejected_codes"])
    if not codes:
        return "0"
    return f"{sum(codes.values())} ({', '.join(f'{k}: {v}' for k, v in sorted(codes.items()))})"


def render(result: dict[str, Any]) -> str:
    headers = [
        "alerts/notification",
        "baseline notif/s",
        "remediator notif/s",
        "ratio",
        "remediator alerts/s",
        "p99 ms (base / rem)",
        "server CPU cores (base / rem)",
        "non-200 (base / rem)",
        "journaled = 200s",
    ]
    body = []
    for row in result["rows"]:
        base, rem = row["baseline"], row["remediator"]
        journal = rem["journal"]
        body.append(
            [
                row["alerts_per_notification"],
                fmt(base["notifications_per_s"]),
                fmt(rem["notifications_per_s"]),
                fmt(row["ratio"], 2),
                fmt(rem["alerts_per_s"]),
                f"{fmt(base['latency_ms']['p99'])} / {fmt(rem['latency_ms']['p99'])}",
                f"{fmt(base['server_cpu_cores'], 2)} / {fmt(rem['server_cpu_cores'], 2)}",
                f"{_rejected(base)} / {_rejected(rem)}",
                f"{fmt(journal['ok'])} ({journal['notifications_journaled_of_200s']:,} notif, "
                f"{journal['incidents_journaled_of_200s']:,} incidents)",
            ]
        )
    load, server, target = result["load"], result["server"], result["target"]
    return "\n".join(
        [
            "## Ingest throughput (POST /webhook)",
            "",
            common.table(headers, body),
            "",
            f"Target: ratio >= {target['ratio_1_alert_min']} for 1-alert payloads: "
            f"{'met' if target['met'] else 'MISSED'} ({fmt(target['ratio_1_alert'], 2)}).",
            f"Load: {load['tool']}, {load['connections']} connections / {load['threads']} "
            f"threads, {load['warmup_s']:g} s warm-up + {load['duration_s']:g} s measured per "
            f"row and server; {load['how']}.",
            "server CPU cores: CPU time of all the server's processes (gunicorn master, "
            "worker and, for remediator, its journal writer) over the measured run's seconds.",
            "non-200: answers other than 200 in the warm-up and measured runs, by status "
            "(503 = journal unavailable, e.g. its write lock not obtained within the store's "
            "5 s busy timeout; Alertmanager retries those).",
            f"Server (both): gunicorn {server['worker_class']}, {server['workers']} worker, "
            f"{server['threads']} threads. Strategies: {result['strategy_description']}.",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="none")
    args = p.parse_args(argv)
    result = bench(args.quick, args.keep, args.strategy)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'ingest', result)}")
    return result


if __name__ == "__main__":
    main()
