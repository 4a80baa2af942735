"""Latency at a fixed rate: `POST /webhook` p50/p99, and decision latency, vs the baseline.

An open-loop client sends 1-alert notifications at a fixed rate (200/s): a scheduler
thread releases request i at t0 + i/rate whatever happened to earlier ones, and a
pool of worker threads, each with its own keep-alive connection, sends them. A
request's latency runs from its scheduled time to the end of its answer, so a
server (or client) that falls behind is charged for the wait (no coordinated
omission). The first second is warm-up and is not counted.

Every alert matches a strategy with a `log` executor (target = the alert's instance,
so no lock, cooldown or budget gate holds it back). Decision latency comes from the
journal: actions.started_at (the claim by a dispatcher thread) minus the incident's
first_seen (the time the webhook handler journaled it, i.e. request arrival plus
parsing); the same minus the client's send time is given too.

Then the knee (capacity): on a fresh server of each kind, the highest rate at which
every request is answered 200, every action claimed and decision p99 <= 50 ms, by
bench.knee.find_knee (doubling, then bisecting; probes of 0.5 s warm-up + 3 s). The
baseline claims nothing: its "decision" is its answer, so its probes pass on request
p99 <= 50 ms (see _Prober and bench/README.md). The ratio is remediator / baseline.

    python -m bench.latency [--quick] [--out DIR] [--rate N]
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from bench import common, payloads
from bench.common import KINDS, Journal, fmt, percentile
from bench.knee import Knee, KneeSettings, find_knee

RATE = 200.0
WORKERS = 16
WARMUP_S = 1.0
ALERTNAME = "BenchLatency"
TARGET_REQUEST_P99_MS = 20.0
TARGET_DECISION_P99_MS = 50.0
TARGET_KNEE_MIN = 400.0  # notifications/s (one action each) within the decision target
# a failing rate is tried twice (retries=1): one hiccup of a shared machine is not a knee
KNEE_SEARCH = KneeSettings(
    start=25, floor=5, ceiling=1600, resolution=1.15, retries=1, max_probes=16
)
QUICK_KNEE_SEARCH = KneeSettings(
    start=25, floor=5, ceiling=800, resolution=1.5, retries=0, max_probes=6
)
PROBE_WARMUP_S = 0.5
PROBE_S = 3.0
QUICK_PROBE_S = 1.5

STRATEGIES = f"""
  - name: restart-instance
    matchers: ['alertname="{ALERTNAME}"']
    action: restart
    executor: audit
    target: '{{{{ labels.instance }}}}'
"""


def bodies(count: int, offset: int = 0) -> tuple[list[str], list[bytes]]:
    """`count` distinct 1-alert notifications, numbered from `offset` (a later probe on
    the same server passes a higher offset, so no alert is a duplicate of an earlier one)."""
    starts_at = payloads.now_rfc3339(-60)
    fingerprints, encoded = [], []
    for i in range(offset, offset + count):
        fingerprint = f"{i:016x}"
        alert = payloads.alert(
            fingerprint,
            alertname=ALERTNAME,
            service=f"svc-{i % 10}",
            instance=f"host-{i:06d}:9100",
            starts_at=starts_at,
        )
        group_key = f'{{}}:{{alertname="{ALERTNAME}",instance="host-{i:06d}:9100"}}'
        fingerprints.append(fingerprint)
        encoded.append(payloads.encode(payloads.notification([alert], group_key)))
    return fingerprints, encoded


def open_loop(server: common.Server, items: list[bytes], rate: float) -> dict[str, list]:
    """Send items[i] at t0 + i/rate; return per request: scheduled, sent and done times
    (perf_counter), the wall-clock send time, and the status."""
    host, port = server.host_port
    n = len(items)
    scheduled, sent, done = [0.0] * n, [0.0] * n, [0.0] * n
    sent_wall, status = [0.0] * n, [0] * n
    jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()

    def worker() -> None:
        conn = common.Connection(host, port)
        try:
            while (i := jobs.get()) is not None:
                sent[i] = time.perf_counter()
                sent_wall[i] = time.time()
                try:
                    status[i], _ = conn.post("/webhook", items[i])
                except OSError:
                    status[i] = -1
                    conn.close()
                done[i] = time.perf_counter()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    t0 = time.perf_counter() + 0.05
    for i in range(n):
        at = t0 + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        scheduled[i] = at
        jobs.put(i)
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    return {
        "scheduled": scheduled,
        "sent": sent,
        "done": done,
        "sent_wall": sent_wall,
        "status": status,
    }


def summary_ms(values_s: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values_s]

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "count": len(ms),
        "p50": r(percentile(ms, 50)),
        "p90": r(percentile(ms, 90)),
        "p99": r(percentile(ms, 99)),
        "max": r(max(ms) if ms else None),
    }


def decisions(db: Any, fingerprints: list[str], sent_wall: list[float], skip: int) -> dict:
    journal = Journal(db)
    try:
        settled_s = journal.wait_settled(60)
        rows = journal.rows(
            "SELECT i.fingerprint, i.first_seen, a.started_at, a.status "
            "FROM actions a JOIN incidents i ON i.id = a.incident_id"
        )
        counts = {
            "notifications": journal.scalar("SELECT COUNT(*) FROM notifications"),
            "incidents": journal.scalar("SELECT COUNT(*) FROM incidents"),
            "actions": len(rows),
        }
    finally:
        journal.close()
    index = {f: i for i, f in enumerate(fingerprints)}
    # rows of earlier probes on the same server are not this run's
    measured = [r for r in rows if r[0] in index and index[r[0]] >= skip]
    claimed = [r for r in measured if r[2] is not None]
    return {
        "settled_after_s": None if settled_s is None else round(settled_s, 2),
        "journal": counts,
        "actions_by_status": dict(Counter(r[3] for r in rows)),
        "measured_actions": len(measured),
        "claimed": len(claimed),
        "received_to_claimed_ms": summary_ms([r[2] - r[1] for r in claimed]),
        "sent_to_claimed_ms": summary_ms([r[2] - sent_wall[index[r[0]]] for r in claimed]),
    }


@dataclass
class _Prober:
    """Runs knee probes against one running server: each probe sends fresh alerts (an
    offset past every earlier probe's) at its rate for `seconds`, after a short warm-up.

    Pass rule: every measured request answered 200 and, for remediator, every measured
    action claimed with decision p99 (received -> claimed) <= the decision target. The
    baseline journals nothing and claims nothing: its equivalent of "decided" is "its
    answer is back", so it passes when its request p99 (scheduled send -> end of answer,
    the harsher of the two clocks: it includes the client and the network) is within the
    same target. See bench/README.md."""

    kind: str
    srv: common.Server
    seconds: float
    offset: int = 0

    def __call__(self, rate: float) -> tuple[bool, dict[str, Any]]:
        warm = int(PROBE_WARMUP_S * rate)
        count = warm + max(1, int(self.seconds * rate))
        fingerprints, items = bodies(count, self.offset)
        self.offset += count
        times = open_loop(self.srv, items, rate)
        statuses = Counter(times["status"][warm:])
        request = summary_ms(
            [d - s for d, s in zip(times["done"], times["scheduled"], strict=True)][warm:]
        )
        send_lag = summary_ms(
            [s - c for s, c in zip(times["sent"], times["scheduled"], strict=True)][warm:]
        )
        detail: dict[str, Any] = {
            "requests": count - warm,
            "statuses": dict(statuses),
            "request_p99_ms": request["p99"],
            "client_send_lag_p99_ms": send_lag["p99"],
        }
        passed = statuses == {200: count - warm}
        if self.kind == "remediator":
            decision = decisions(self.srv.db, fingerprints, times["sent_wall"], warm)
            p99 = decision["received_to_claimed_ms"]["p99"]
            detail.update(
                decision_p99_ms=p99,
                claimed=decision["claimed"],
                settled_after_s=decision["settled_after_s"],
            )
            passed = passed and decision["claimed"] == count - warm
        else:
            p99 = request["p99"]
        passed = passed and p99 is not None and p99 <= TARGET_DECISION_P99_MS
        verdict = "pass" if passed else "fail"
        print(f"    {self.kind} {rate:g}/s: p99 {fmt(p99, 2)} ms, {verdict}", file=sys.stderr)
        return passed, detail


def knee_search(kind: str, quick: bool, keep: bool) -> Knee:
    """The knee of one server (remediator or the baseline app): find_knee with _Prober
    as the measure, all probes on one server started for the search."""
    settings = QUICK_KNEE_SEARCH if quick else KNEE_SEARCH
    with common.workdir(f"knee-{kind}", keep) as wd:
        config = common.write_config(wd, common.config_text(strategies=STRATEGIES))
        with common.server(kind, wd, config) as srv:
            prober = _Prober(kind, srv, QUICK_PROBE_S if quick else PROBE_S)
            return find_knee(prober, settings)


def knee_result(quick: bool, keep: bool) -> dict[str, Any]:
    """Both searches, their probes, the ratio of the knees and the target's verdict."""
    settings = QUICK_KNEE_SEARCH if quick else KNEE_SEARCH
    knees = {kind: knee_search(kind, quick, keep) for kind in KINDS}
    rem, base = knees["remediator"], knees["baseline"]
    return {
        "search": asdict(settings),
        "probe_s": QUICK_PROBE_S if quick else PROBE_S,
        "probe_warmup_s": PROBE_WARMUP_S,
        "criterion_ms": TARGET_DECISION_P99_MS,
        **{kind: asdict(knee) for kind, knee in knees.items()},
        "ratio": common.ratio(rem.rate, base.rate),
        "min_per_s": TARGET_KNEE_MIN,
        "met": rem.rate is not None and rem.rate >= TARGET_KNEE_MIN,
    }


def bench(quick: bool, keep: bool, rate: float = RATE) -> dict[str, Any]:
    duration = 4.0 if quick else 20.0
    warm = int(WARMUP_S * rate)
    count = warm + int(duration * rate)
    fingerprints, items = bodies(count)
    result: dict[str, Any] = {
        "benchmark": "latency",
        "quick": quick,
        "load": {
            "rate_per_s": rate,
            "warmup_s": WARMUP_S,
            "duration_s": duration,
            "requests_measured": count - warm,
            "alerts_per_notification": 1,
            "client_connections": WORKERS,
            "how": f"open loop: Python scheduler thread releases each request at its time, "
            f"{WORKERS} worker threads with one keep-alive connection each (http.client); "
            "latency from scheduled send to end of answer",
        },
        "strategy_description": "every alert matches one strategy (restart, `log` executor, "
        "target = the alert's instance: no gate holds it back)",
        "machine": common.machine(),
    }
    for kind in KINDS:
        with common.workdir(f"latency-{kind}", keep) as wd:
            config = common.write_config(wd, common.config_text(strategies=STRATEGIES))
            result["server"] = common.gunicorn_settings(config)
            with common.server(kind, wd, config) as srv:
                times = open_loop(srv, items, rate)
                entry: dict[str, Any] = {
                    "statuses": dict(Counter(times["status"][warm:])),
                    "request_ms": summary_ms(
                        [d - s for d, s in zip(times["done"], times["scheduled"], strict=True)][
                            warm:
                        ]
                    ),
                    "service_ms": summary_ms(
                        [d - s for d, s in zip(times["done"], times["sent"], strict=True)][warm:]
                    ),
                    "send_lag_ms": summary_ms(
                        [s - c for s, c in zip(times["sent"], times["scheduled"], strict=True)][
                            warm:
                        ]
                    ),
                    "achieved_rate_per_s": round(
                        (count - warm) / (times["scheduled"][-1] - times["scheduled"][warm]), 1
                    ),
                }
                if kind == "remediator":
                    entry["decision"] = decisions(srv.db, fingerprints, times["sent_wall"], warm)
                entry["memory"] = srv.memory()
            result[kind] = entry
        print(f"  latency {kind}: p99 {fmt(entry['request_ms']['p99'], 2)} ms", file=sys.stderr)
    base, rem = result["baseline"]["request_ms"], result["remediator"]["request_ms"]
    decision = result["remediator"]["decision"]
    result["ratio"] = {
        "p50": common.ratio(rem["p50"], base["p50"]),
        "p99": common.ratio(rem["p99"], base["p99"]),
        "decision_p50_vs_baseline_request_p50": common.ratio(
            decision["received_to_claimed_ms"]["p50"], base["p50"]
        ),
        "decision_p99_vs_baseline_request_p99": common.ratio(
            decision["received_to_claimed_ms"]["p99"], base["p99"]
        ),
    }
    all_ok = result["remediator"]["statuses"] == {200: count - warm}
    all_claimed = decision["claimed"] == decision["measured_actions"] == count - warm
    result["target"] = {
        "request_p99_max_ms": TARGET_REQUEST_P99_MS,
        "request_p99_met": rem["p99"] is not None and rem["p99"] <= TARGET_REQUEST_P99_MS,
        "decision_p99_max_ms": TARGET_DECISION_P99_MS,
        "decision_p99_met": all_claimed
        and decision["received_to_claimed_ms"]["p99"] is not None
        and decision["received_to_claimed_ms"]["p99"] <= TARGET_DECISION_P99_MS,
        "all_answered_200": all_ok,
        "every_action_claimed": all_claimed,
    }
    result["knee"] = knee_result(quick, keep)
    result["target"]["knee_min_per_s"] = TARGET_KNEE_MIN
    result["target"]["knee_per_s"] = result["knee"]["remediator"]["rate"]
    result["target"]["knee_met"] = result["knee"]["met"]
    return result


def render_knee(knee: dict[str, Any]) -> str:
    """The capacity table: each server's knee, the ratio, every probe's verdict."""

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    def probes(entry: dict[str, Any]) -> str:
        return ", ".join(
            f"{p['rate']:g}/s {'pass' if p['passed'] else 'FAIL'} "
            f"({fmt(p['detail'].get('decision_p99_ms', p['detail'].get('request_p99_ms')), 1)} ms)"
            for p in entry["probes"]
        )

    base, rem = knee["baseline"], knee["remediator"]
    verdict = "met" if knee["met"] else "MISSED"
    rows = [
        ["baseline (request p99)", rate(base["rate"]), rate(base["first_failing"]), "1.00", ""],
        [
            "remediator (decision p99)",
            rate(rem["rate"]),
            rate(rem["first_failing"]),
            fmt(knee["ratio"], 2),
            f">= {knee['min_per_s']:g}/s: {verdict}",
        ],
    ]
    headers = ["server", "knee notif/s", "first failing /s", "ratio", "target"]
    return "\n".join(
        [
            f"## Capacity: the highest rate with p99 <= {knee['criterion_ms']:g} ms "
            "(1 alert, 1 action per notification)",
            "",
            common.table(headers, rows),
            "",
            f"Search: doubling from {knee['search']['start']:g}/s (up to "
            f"{knee['search']['ceiling']:g}/s), then bisecting to within "
            f"{knee['search']['resolution']:g}x, a failing rate tried "
            f"{1 + knee['search']['retries']} times; each probe {knee['probe_warmup_s']:g} s "
            f"warm-up + {knee['probe_s']:g} s, open loop, fresh alerts, one server per search.",
            f"Remediator probes: {probes(rem)}; {rem['reason']}.",
            f"Baseline probes: {probes(base)}; {base['reason']}.",
        ]
    )


def render(result: dict[str, Any]) -> str:
    base, rem = result["baseline"], result["remediator"]
    decision = rem["decision"]
    ratio, target, load = result["ratio"], result["target"], result["load"]
    received, sent = decision["received_to_claimed_ms"], decision["sent_to_claimed_ms"]
    headers = ["measure", "p50 ms", "p99 ms", "max ms", "p50 ratio", "p99 ratio", "target"]
    rows = [
        [
            "baseline POST /webhook",
            fmt(base["request_ms"]["p50"], 2),
            fmt(base["request_ms"]["p99"], 2),
            fmt(base["request_ms"]["max"], 2),
            "1.00",
            "1.00",
            "",
        ],
        [
            "remediator POST /webhook",
            fmt(rem["request_ms"]["p50"], 2),
            fmt(rem["request_ms"]["p99"], 2),
            fmt(rem["request_ms"]["max"], 2),
            fmt(ratio["p50"], 2),
            fmt(ratio["p99"], 2),
            f"p99 <= {target['request_p99_max_ms']:g} ms: "
            + ("met" if target["request_p99_met"] else "MISSED"),
        ],
        [
            "decision: received -> claimed",
            fmt(received["p50"], 2),
            fmt(received["p99"], 2),
            fmt(received["max"], 2),
            fmt(ratio["decision_p50_vs_baseline_request_p50"], 2),
            fmt(ratio["decision_p99_vs_baseline_request_p99"], 2),
            f"p99 <= {target['decision_p99_max_ms']:g} ms: "
            + ("met" if target["decision_p99_met"] else "MISSED"),
        ],
        [
            "decision: client send -> claimed",
            fmt(sent["p50"], 2),
            fmt(sent["p99"], 2),
            fmt(sent["max"], 2),
            "",
            "",
            "",
        ],
    ]
    return "\n".join(
        [
            f"## Latency at {load['rate_per_s']:g} notifications/s",
            "",
            common.table(headers, rows),
            "",
            f"{load['requests_measured']:,} requests measured per server "
            f"(achieved {fmt(rem['achieved_rate_per_s'])}/s), 1 alert each, after "
            f"{load['warmup_s']:g} s warm-up; all answered 200: {fmt(target['all_answered_200'])};"
            f" actions claimed: {decision['claimed']:,}/{decision['measured_actions']:,}"
            " (all actions, warm-up included: "
            + ", ".join(f"{k} {v:,}" for k, v in decision["actions_by_status"].items())
            + ").",
            f"Load: {load['how']}. Ratios: remediator / baseline request latency at the same "
            "rate (decision rows: against the baseline's request latency).",
            f"Strategies: {result['strategy_description']}.",
            "",
            render_knee(result["knee"]),
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=RATE, help="notifications per second")
    args = p.parse_args(argv)
    result = bench(args.quick, args.keep, args.rate)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'latency', result)}")
    return result


if __name__ == "__main__":
    main()
