"""Run every benchmark, print their tables, write their JSON and a summary.

    python -m bench [--quick] [--out DIR]      (same as python -m bench.run_all)

A full run takes about 4 minutes on 2 cores; --quick about 1 minute.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench import common, fleets, ingest, journal, latency, storm

# journal last: its PostgreSQL rows keep that server busy for a while after
BENCHMARKS = {
    "ingest": ingest,
    "latency": latency,
    "storm": storm,
    "fleets": fleets,
    "journal": journal,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="repeatable")
    args = p.parse_args(argv)
    started = time.monotonic()
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
        "targets": {name: result["target"] for name, result in results.items()},
    }
    print("\n\n".join(tables))
    path = common.write_result(args.out, "summary", summary)
    print(f"\nJSON: {args.out}/{{{','.join(results)}}}.json and {path} ({summary['seconds']} s)")
    return summary


if __name__ == "__main__":
    main()
