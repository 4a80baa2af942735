"""Profile `remediator serve` under the latency benchmark's load with py-spy.

Starts the server as `bench.latency` does (every alert matches a `log` executor,
target = the alert's instance), attaches one `py-spy record` per server process (the
gunicorn worker and its journal writer, where ingest and the dispatcher run), drives the
open-loop load at `--rate` notifications/s for `--seconds`, and writes one flame graph
(SVG) and one raw collapsed-stack file per process to `--out`, then prints the top
functions by share of samples per process (self time and inclusive time).

py-spy must be installed (`pip install -e '.[profile]'`) and may need root (ptrace).

    python -m bench.profile [--rate 200] [--seconds 10] [--out bench/profiles]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import common, latency

SAMPLE_RATE = 200  # py-spy samples per second per process


def record(pid: int, out: Path, seconds: float, fmt: str, gil: bool) -> subprocess.Popen:
    """Start `py-spy record` on pid for `seconds`; fmt is 'flamegraph' or 'raw'; `gil`:
    sample only the thread holding the GIL (where the process spends CPU in Python)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [py_spy, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE)]
    argv += ["--duration", str(int(seconds)), "--format", fmt, "-o", str(out), "--nonblocking"]
    argv += ["--gil"] if gil else []
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def top(collapsed: Path, count: int = 12) -> tuple[int, list, list]:
    """Parse py-spy's collapsed stacks: (samples, top self frames, top inclusive frames),
    each a list of (frame, share of samples as a ratio)."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        frames = stack.split(";")
        total += samples
        self_counts[frames[-1]] += samples
        for frame in set(frames):
            incl[frame] += samples
    if not total:
        return 0, [], []

    def shares(c: Counter[str]) -> list:
        return [(f, round(n / total, 3)) for f, n in c.most_common(count)]

    return total, shares(self_counts), shares(incl)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=latency.RATE)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path("bench/profiles"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    p.add_argument("--no-spy", action="store_true", help="measure CPU only, no py-spy")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    warm = int(latency.WARMUP_S * args.rate)
    count = warm + int(args.seconds * args.rate)
    _, items = latency.bodies(count)
    with common.workdir("profile", False) as wd:
        config = common.write_config(wd, common.config_text(strategies=latency.STRATEGIES))
        with common.server("remediator", wd, config) as srv:
            procs = {"worker": srv.workers()[0], "writer": srv.writers()[0]}
            spies = []
            for name, pid in procs.items() if not args.no_spy else ():
                stem = args.out / f"{name}{args.tag}"
                for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
                    out = stem.with_suffix(suffix)
                    spies.append(record(pid, out, args.seconds, fmt, args.gil))
            cpu = {name: cpu_seconds(pid) for name, pid in procs.items()}
            latency.open_loop(srv, items, args.rate)
            settled = common.Journal(srv.db)
            try:
                settled.wait_settled(60)
            finally:
                settled.close()
            for name, pid in procs.items():
                cpu[name] = cpu_seconds(pid) - cpu[name]
            for spy in spies:
                spy.wait()
    for name, used in cpu.items():
        print(f"{name}: {used:.2f} s CPU, {used / count * 1000:.2f} ms per notification")
    for name in procs if not args.no_spy else ():
        total, selfs, incls = top(args.out / f"{name}{args.tag}.txt")
        print(f"## {name}: {total} samples")
        print("self:")
        for frame, share in selfs:
            print(f"  {share:6.1%}  {frame}")
        print("inclusive:")
        for frame, share in incls:
            print(f"  {share:6.1%}  {frame}")


if __name__ == "__main__":
    main()
