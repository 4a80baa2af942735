"""Alert storm: 10,000 distinct firing alerts in 100 notifications, re-sent, then resolved.

Three phases of 100 notifications of 100 alerts each, posted over 4 keep-alive
connections (closed loop, like Alertmanager flushing many groups at once):

1. fire:    10,000 new alerts on 20 services -> 10,000 incidents, one action planned each;
   then wait until the dispatcher has judged every planned action (drain): it ran, or
   it waits for a gate;
2. re-send: the same 100 notifications again (Alertmanager's repeat) -> duplicates only;
3. resolve: all 10,000 resolved -> every incident closed, every waiting action cancelled.

The strategy restarts the alert's service (`log` executor) with a 5m cooldown and a
budget of 2 actions per hour per service, so the gates bound what runs: at most one
action per service in this run. The other actions wait (`locked`, `cooldown` delay an
action rather than skip it since issue 14) until their alerts resolve, which cancels
them; the journal keeps the gate each one waited for. Peak RSS (VmHWM) of the gunicorn
master and worker is read from /proc at the end. The baseline gets the same 300 requests
over the same connections; its time per phase is the ratio's denominator.

    python -m bench.storm [--quick] [--out DIR]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from bench import common, payloads
from bench.common import KINDS, Journal, fmt

ALERTNAME = "BenchStorm"
PER_NOTIFICATION = 100
SERVICES = 20
CONCURRENCY = 4
COOLDOWN = "5m"
BUDGET = 2
TARGET_PEAK_MB = 150.0

STRATEGIES = f"""
  - name: restart-service
    matchers: ['alertname="{ALERTNAME}"']
    action: restart
    executor: audit
    target: '{{{{ labels.service }}}}'
    cooldown: {COOLDOWN}
    budget: {{max_actions: {BUDGET}, window: 1h}}
"""


def phases(notifications: int) -> dict[str, list[bytes]]:
    starts_at = payloads.now_rfc3339(-600)
    ends_at = payloads.now_rfc3339(-5)
    fire, resolve = [], []
    for k in range(notifications):
        group_key = f'{{}}:{{alertname="{ALERTNAME}",shard="{k:03d}"}}'
        firing, resolved = [], []
        for j in range(PER_NOTIFICATION):
            n = k * PER_NOTIFICATION + j
            common_args = {
                "alertname": ALERTNAME,
                "service": f"svc-{n % SERVICES:02d}",
                "instance": f"host-{n:05d}:9100",
                "starts_at": starts_at,
            }
            firing.append(payloads.alert(f"{n:016x}", **common_args))
            resolved.append(
                payloads.alert(f"{n:016x}", status="resolved", ends_at=ends_at, **common_args)
            )
        fire.append(payloads.encode(payloads.notification(firing, group_key)))
        resolve.append(payloads.encode(payloads.notification(resolved, group_key)))
    return {"fire": fire, "re-send": list(fire), "resolve": resolve}


def _summaries(answers: list[tuple[int, bytes]]) -> dict[str, Any]:
    statuses = Counter(status for status, _ in answers)
    totals: Counter[str] = Counter()
    for status, body in answers:
        if status == 200:
            try:
                data = json.loads(body)
            except ValueError:
                continue
            totals.update({k: v for k, v in data.items() if isinstance(v, int)})
    return {"statuses": {str(k): v for k, v in statuses.items()}, "summed_answers": dict(totals)}


def waiting_now(db: Any) -> dict[str, int]:
    """Planned actions by the gate they wait for (`queued`: not judged yet)."""
    journal = Journal(db)
    try:
        rows = journal.rows(
            "SELECT COALESCE(waiting, 'queued'), COUNT(*) FROM actions "
            "WHERE status = 'planned' GROUP BY 1"
        )
    finally:
        journal.close()
    return dict(rows)


def journal_check(db: Any, alerts: int, notifications: int) -> dict[str, Any]:
    journal = Journal(db)
    try:
        incidents = journal.scalar("SELECT COUNT(*) FROM incidents")
        distinct = journal.scalar("SELECT COUNT(DISTINCT fingerprint) FROM incidents")
        resolved = journal.scalar(
            "SELECT COUNT(*) FROM incidents WHERE status = 'resolved' AND duration_seconds > 0"
        )
        notes = journal.scalar("SELECT COUNT(*) FROM notifications")
        by_status = Counter(dict(journal.rows("SELECT status, COUNT(*) FROM actions GROUP BY 1")))
        reasons = Counter()
        for status, reason, waiting, count in journal.rows(
            "SELECT status, reason, waiting, COUNT(*) FROM actions WHERE status IN "
            "('skipped', 'cancelled') GROUP BY 1, 2, 3"
        ):
            if status == "skipped":
                reasons[f"skipped: {reason.split(':', 1)[0]}"] += count
            else:  # cancelled by the resolve, while waiting for the gate it names
                reasons[f"cancelled waiting: {waiting or 'queued'}"] += count
        started = journal.scalar("SELECT COUNT(*) FROM actions WHERE started_at IS NOT NULL")
        per_target = journal.scalar(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM actions "
            "WHERE started_at IS NOT NULL GROUP BY target)"
        )
    finally:
        journal.close()
    actions = sum(by_status.values())
    ran = by_status.get("succeeded", 0) + by_status.get("failed", 0) + by_status.get("timed_out", 0)
    return {
        "notifications": notes,
        "incidents": incidents,
        "distinct_fingerprints": distinct,
        "incidents_resolved": resolved,
        "actions": actions,
        "actions_by_status": dict(by_status),
        "not_run_by_reason": dict(reasons),
        "actions_ran": ran,
        "actions_started": started,
        "max_started_per_target": per_target,
        "bound": {"targets": SERVICES, "cooldown": COOLDOWN, "budget_per_hour": BUDGET},
        "ok": notes == 3 * notifications
        and incidents == distinct == resolved == alerts
        and actions == alerts
        and by_status.get("planned", 0) == by_status.get("running", 0) == 0
        and per_target <= 1  # the 5m cooldown: one action per service in this run
        and started <= SERVICES,
    }


def bench(quick: bool, keep: bool) -> dict[str, Any]:
    notifications = 20 if quick else 100
    alerts = notifications * PER_NOTIFICATION
    bodies = phases(notifications)
    result: dict[str, Any] = {
        "benchmark": "storm",
        "quick": quick,
        "alerts": alerts,
        "notifications_per_phase": notifications,
        "alerts_per_notification": PER_NOTIFICATION,
        "load": {
            "client_connections": CONCURRENCY,
            "how": f"closed loop: {CONCURRENCY} Python threads, one keep-alive connection "
            "each (http.client), each posting its next notification when the last is answered",
        },
        "strategy_description": f"every alert matches `restart {{{{ labels.service }}}}` "
        f"(`log` executor) on {SERVICES} services, cooldown {COOLDOWN}, budget {BUDGET}/1h",
        "machine": common.machine(),
    }
    for kind in KINDS:
        entry: dict[str, Any] = {"phases": {}}
        with common.workdir(f"storm-{kind}", keep) as wd:
            config = common.write_config(wd, common.config_text(strategies=STRATEGIES))
            result["server"] = common.gunicorn_settings(config)
            with common.server(kind, wd, config) as srv:
                for phase, items in bodies.items():
                    seconds, answers = common.post_all(srv, items, CONCURRENCY)
                    entry["phases"][phase] = {
                        "requests": len(items),
                        "seconds": round(seconds, 3),
                        **_summaries(answers),
                    }
                    if kind == "remediator" and phase == "fire":
                        drained = Journal(srv.db).wait_judged(180)
                        entry["drain_after_fire_s"] = None if drained is None else round(drained, 2)
                        entry["waiting_after_drain"] = waiting_now(srv.db)
                entry["memory"] = srv.memory()
            if kind == "remediator":
                entry["journal"] = journal_check(srv.db, alerts, notifications)
        result[kind] = entry
        total = sum(p["seconds"] for p in entry["phases"].values())
        print(f"  storm {kind}: {total:.2f} s for {3 * notifications} requests", file=sys.stderr)
    base, rem = result["baseline"]["phases"], result["remediator"]["phases"]
    result["ratio"] = {p: common.ratio(rem[p]["seconds"], base[p]["seconds"]) for p in rem}
    result["ratio"]["total"] = common.ratio(
        sum(p["seconds"] for p in rem.values()), sum(p["seconds"] for p in base.values())
    )
    memory = result["remediator"]["memory"]
    result["target"] = {
        "peak_rss_max_mb": TARGET_PEAK_MB,
        "worker_peak_mb": memory["worker_peak_mb"],
        "master_peak_mb": memory["master_peak_mb"],
        "writer_peak_mb": memory["writer_peak_mb"],
        "dispatcher_peak_mb": memory["dispatcher_peak_mb"],
        "sum_of_peaks_mb": memory["sum_of_peaks_mb"],
        "peak_rss_met": max(
            memory["worker_peak_mb"] or 0,
            memory["master_peak_mb"] or 0,
            memory["writer_peak_mb"] or 0,
            memory["dispatcher_peak_mb"] or 0,
        )
        <= TARGET_PEAK_MB,
        "all_answered_200": all(
            p["statuses"] == {"200": p["requests"]}
            for e in (result["baseline"], result["remediator"])
            for p in e["phases"].values()
        ),
        "journal_ok": result["remediator"]["journal"]["ok"],
    }
    return result


def render(result: dict[str, Any]) -> str:
    base, rem = result["baseline"], result["remediator"]
    journal, target = rem["journal"], result["target"]
    headers = ["phase", "requests", "baseline s", "remediator s", "ratio", "remediator answers"]
    rows = []
    for phase, r in rem["phases"].items():
        answers = r["summed_answers"]
        shown = {
            k: answers.get(k, 0)
            for k in ("new_incidents", "duplicates", "resolved", "actions_planned")
            if answers.get(k)
        }
        if answers.get("actions_cancelled"):
            shown["actions_cancelled"] = answers["actions_cancelled"]
        rows.append(
            [
                phase,
                r["requests"],
                fmt(base["phases"][phase]["seconds"], 2),
                fmt(r["seconds"], 2),
                fmt(result["ratio"][phase], 2),
                ", ".join(f"{k} {v:,}" for k, v in shown.items()),
            ]
        )
    rows.append(
        [
            "total",
            sum(r["requests"] for r in rem["phases"].values()),
            fmt(sum(p["seconds"] for p in base["phases"].values()), 2),
            fmt(sum(p["seconds"] for p in rem["phases"].values()), 2),
            fmt(result["ratio"]["total"], 2),
            "",
        ]
    )
    memory, base_memory = rem["memory"], base["memory"]
    not_run = ", ".join(f"{k} {v:,}" for k, v in sorted(journal["not_run_by_reason"].items()))
    waiting = (
        ", ".join(f"{k} {v:,}" for k, v in sorted(rem.get("waiting_after_drain", {}).items()))
        or "none"
    )
    return "\n".join(
        [
            f"## Alert storm: {result['alerts']:,} alerts in {result['notifications_per_phase']} "
            f"notifications, fired, re-sent, resolved",
            "",
            common.table(headers, rows),
            "",
            f"Dispatcher judged all {journal['actions']:,} planned actions "
            f"{fmt(rem.get('drain_after_fire_s'), 2)} s after the fire phase ended (before "
            f"the re-send); then waiting: {waiting}.",
            f"Journal: {journal['notifications']:,} notifications, {journal['incidents']:,} "
            f"incidents ({journal['distinct_fingerprints']:,} distinct), "
            f"{journal['incidents_resolved']:,} resolved with a duration; actions: "
            f"{journal['actions_ran']:,} ran (at most {journal['max_started_per_target']} per "
            f"service), {not_run}; all as expected: {fmt(journal['ok'])}.",
            f"Peak RSS (VmHWM): worker {fmt(memory['worker_peak_mb'])} MB, journal writer "
            f"{fmt(memory['writer_peak_mb'])} MB, its dispatch process "
            f"{fmt(memory['dispatcher_peak_mb'])} MB, master {fmt(memory['master_peak_mb'])} MB "
            f"(target <= {target['peak_rss_max_mb']:g} MB each: "
            f"{'met' if target['peak_rss_met'] else 'MISSED'}; all together "
            f"{fmt(memory['sum_of_peaks_mb'])} MB); baseline worker "
            f"{fmt(base_memory['worker_peak_mb'])} MB, master "
            f"{fmt(base_memory['master_peak_mb'])} MB.",
            f"Load: {result['load']['how']}. Ratio: remediator seconds / baseline seconds.",
            f"Strategies: {result['strategy_description']}.",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    result = bench(args.quick, args.keep)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'storm', result)}")
    return result


if __name__ == "__main__":
    main()
