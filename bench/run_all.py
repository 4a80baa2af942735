"""Run every benchmark, print their tables, write their JSON and a summary.

    python -m bench [--quick] [--out DIR] [--only NAME]   (same as python -m bench.run_all)

Exits 1 when any target is missed (missed_targets lists them), 0 otherwise. Prints the
machine's load (1/5/15-minute load averages before and after, CPU count): on a shared
machine a figure means little without it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from bench import common, fleets, ingest, journal, latency, metrics, remediate, replicas, storm

# journal last: its PostgreSQL rows keep that server busy for a while after
BENCHMARKS = {
    "ingest": ingest,
    "latency": latency,
    "storm": storm,
    "fleets": fleets,
    "remediate": remediate,
    "replicas": replicas,
    "metrics": metrics,
    "journal": journal,
}


def missed_targets(targets: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every missed target, as `benchmark.key` paths: a target dict's boolean that is
    False (`met`, `*_met`, and the correctness checks such as `all_answered_200`) is a
    miss; nested dicts are walked; numbers and strings (limits, figures, notes) are not
    verdicts. Example: {"latency": {"decision_p99_met": False, "decision_p99_max_ms": 50}}
    -> ["latency.decision_p99_met"]."""
    missed = []
    for key, value in targets.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            missed += missed_targets(value, path + ".")
        elif value is False:
            missed.append(path)
    return missed


def load_line(label: str, load: tuple[float, float, float], cpus: int | None) -> str:
    return f"load average {label}: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {cpus} CPUs"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="repeatable")
    args = p.parse_args(argv)
    started = time.monotonic()
    load_before = os.getloadavg()
    results, tables = {}, []
    for name, module in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"running bench.{name}{' --quick' if args.quick else ''} ...", file=sys.stderr)
        result = module.bench(args.quick, args.keep)
        results[name] = result
        common.write_result(args.out, name, result)
        tables.append(module.render(result))
    summary = {
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": common.machine(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "targets": {name: result["target"] for name, result in results.items()},
    }
    summary["missed"] = missed_targets(summary["targets"])
    print("\n\n".join(tables))
    print("\n" + load_line("before (1/5/15 min)", load_before, summary["cpus"]))
    print(load_line("after  (1/5/15 min)", summary["load_average_after"], summary["cpus"]))
    path = common.write_result(args.out, "summary", summary)
    print(f"\nJSON: {args.out}/{{{','.join(results)}}}.json and {path} ({summary['seconds']} s)")
    if summary["missed"]:
        print("\ntargets MISSED: " + ", ".join(summary["missed"]))
    else:
        print("\nevery target met")
    return summary


def exit_status(summary: Mapping[str, Any]) -> int:
    """1 when any target was missed, else 0 (so CI and `make bench` can tell)."""
    return 1 if summary["missed"] else 0


if __name__ == "__main__":
    sys.exit(exit_status(main()))
