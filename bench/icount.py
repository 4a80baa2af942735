"""Instructions per alert, which the machine's load does not move: valgrind's callgrind.

Journals N one-alert notifications, each planning one `run` action of a `command`
executor (bench.remediate's config: a C program per action), through the real ingest on
a fresh SQLite journal; with `--dispatch`, then carries them out with the real
dispatcher's `run_once` in this thread (the WAL checkpointed every 50 actions, as the
dispatch process's checkpoint thread does at 200 actions/s, but counted in actions, not
seconds). `main` runs that under callgrind four times (N and 2N alerts,
with and without dispatch) and prints the marginal instructions per ingested alert and
per dispatched action, so start-up and set-up cancel out, and the same split by the
shared object that executed them (libpython: the interpreter running our Python code;
libsqlite3: SQLite's own work; libc; the C modules), which says how much of an alert's
cost is the journal's SQL itself and how much the Python around it:

    python -m bench.icount [--alerts 100]

Needs valgrind (Debian package) and a C compiler for the program (else Python runs it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench import inprocess, remediate

COLLECTED = re.compile(r"Collected : (\d+)")
#: actions between two WAL checkpoints: the dispatch process's checkpoint thread, every
#: 0.25 s, at 200 actions/s
CHECKPOINT_EVERY = 50


def journal_and_dispatch(alerts: int, dispatch: bool) -> None:
    """The measured work (run under callgrind by `main`). The WAL is checkpointed every
    CHECKPOINT_EVERY actions, in this thread: the dispatch process's checkpoint thread
    runs every 0.25 s of wall time, which under callgrind's slowdown made the count
    depend on how busy the machine was (a checkpoint copies pages)."""
    with inprocess.command_path("icount") as path:
        _, bodies = remediate.bodies(0, alerts)
        path.ingest(bodies)
        if dispatch:
            done = path.dispatch(checkpoint_every=CHECKPOINT_EVERY)
            if done != alerts:
                raise RuntimeError(f"dispatched {done} of {alerts}")


NAMED = re.compile(r"c?ob=\((\d+)\)(?: (.*))?")


def self_cost_by_object(lines: Iterable[str]) -> Counter[str]:
    """Instructions executed in each shared object (its file name: "libpython3.11.so.1.0"),
    from a callgrind output file's lines: the self cost of every function, summed by the
    object (`ob=`) it belongs to. Callgrind's format names an object once as
    `ob=(id) path` (also in a call's `cob=`) and then by `(id)` alone; the cost line
    after a `calls=` line is that call's inclusive cost, which belongs to the callee
    and is skipped (callgrind's own documentation of the format)."""
    names: dict[str, str] = {}
    cost: Counter[str] = Counter()
    current = "?"
    after_call = False
    for line in lines:
        if line.startswith(("ob=", "cob=")):
            found = NAMED.match(line.strip())
            if found is None:  # an uncompressed name
                name = line.split("=", 1)[1].strip()
            else:
                if found.group(2):
                    names[found.group(1)] = found.group(2)
                name = names.get(found.group(1), "?")
            if line.startswith("ob="):
                current = os.path.basename(name)
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            fields = line.split()
            if len(fields) > 1:
                cost[current] += int(fields[1])
    return cost


def instructions(alerts: int, dispatch: bool) -> tuple[int, Counter[str]]:
    """Instructions callgrind counts for journal_and_dispatch (this interpreter): the
    total and the split by shared object (self_cost_by_object)."""
    with tempfile.TemporaryDirectory(prefix="remediator-icount-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        argv += ["-m", "bench.icount", "--run", str(alerts)]
        argv += ["--dispatch"] if dispatch else []
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        with out.open() as lines:
            split = self_cost_by_object(lines)
    return int(COLLECTED.findall(done.stderr)[0]), split


def marginal(
    small: Counter[str], large: Counter[str], less: Counter[str], more: Counter[str], n: int
) -> dict[str, float]:
    """Per-object marginal instructions per item: ((large - small) - (more - less)) / n."""
    names = set(small) | set(large) | set(less) | set(more)
    return {name: ((large[name] - small[name]) - (more[name] - less[name])) / n for name in names}


def shares(split: dict[str, float], top: int = 4) -> str:
    """`split`'s largest objects as "libpython3.11 60%, libsqlite3 26%, ..." (the rest
    summed)."""
    total = sum(split.values()) or 1.0
    ranked = sorted(split.items(), key=lambda item: -item[1])
    parts = [f"{_short(name)} {value / total:.0%}" for name, value in ranked[:top]]
    rest = sum(value for _, value in ranked[top:])
    return ", ".join(parts + ([f"other {rest / total:.0%}"] if rest else []))


def _short(name: str) -> str:
    """libpython3.11.so.1.0 -> libpython3.11; _json.cpython-311-x86_64-linux-gnu.so -> _json."""
    return name.split(".so")[0].split(".cpython")[0] or name


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=100, help="N: measured from N to 2N")
    p.add_argument("--run", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dispatch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run is not None:
        journal_and_dispatch(args.run, args.dispatch)
        return {}
    n = args.alerts
    ingest_n, ingest_n_split = instructions(n, False)
    both_n, both_n_split = instructions(n, True)
    ingest_2n, ingest_2n_split = instructions(2 * n, False)
    both_2n, both_2n_split = instructions(2 * n, True)
    empty: Counter[str] = Counter()
    ingest_split = marginal(ingest_n_split, ingest_2n_split, empty, empty, n)
    dispatch_split = marginal(both_n_split, both_2n_split, ingest_n_split, ingest_2n_split, n)
    result = {
        "ingest_per_alert": (ingest_2n - ingest_n) / n,
        "dispatch_per_action": ((both_2n - ingest_2n) - (both_n - ingest_n)) / n,
        "ingest_by_object": ingest_split,
        "dispatch_by_object": dispatch_split,
    }
    print(
        f"ingest {result['ingest_per_alert'] / 1000:,.0f}k instructions per alert; dispatch "
        f"{result['dispatch_per_action'] / 1000:,.0f}k per action (marginal, {n} to {2 * n})"
    )
    print(f"ingest by object: {shares(ingest_split)}")
    print(f"dispatch by object: {shares(dispatch_split)}")
    return result


if __name__ == "__main__":
    main()
