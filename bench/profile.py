"""Profile `remediator serve` under the latency benchmark's load with py-spy.

Starts the server as `bench.latency` does (every alert matches a `log` executor,
target = the alert's instance), attaches one `py-spy record` per server process (the
gunicorn worker, its journal writer where ingest runs, and the writer's dispatch process
where the dispatcher runs), drives the
open-loop load at `--rate` notifications/s for `--seconds`, and writes one flame graph
(SVG) and one raw collapsed-stack file per process to `--out`, then prints the top
functions by share of samples per process (self time and inclusive time).

py-spy comes with the test extra (`pip install -e '.[test]'`); attaching to a process
needs ptrace rights (root, or CAP_SYS_PTRACE).

    python -m bench.profile [--rate 200] [--seconds 10] [--out bench/profiles] [--gil] [--command]
    python -m bench.profile --dispatch 1000 [--pool [RATE]] [--log-format text|json]

`--command` drives bench.remediate's load instead: every alert matches a `run`
strategy of a `command` executor whose program appends a line to a file.
`--gil` samples only the thread holding the interpreter lock: where Python spends CPU,
but not SQLite's own work (the sqlite3 module releases the lock while a statement
runs), which shows in the CPU seconds printed instead. `--dispatch N` needs no server
and no py-spy: it journals N one-alert notifications (one action each, as the latency
benchmark's) on a temporary SQLite journal, then runs the dispatcher's `run_once` in
this thread until nothing is left, and prints the CPU per action (ingest excluded).
With `--pool` the dispatcher's whole pool of threads carries them out (its threads' CPU
and its claim transactions are counted), all planned beforehand, or with `--pool RATE`
planned at RATE notifications/s meanwhile, each followed by a wake-up as the journal
writer gives. Log lines are dropped unless `--log-format` formats them (to /dev/null).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


#: What a sample was doing, by the first of these frames found from the stack's top (the
#: innermost call first would name sqlite3 for everything): (area, frame name prefix).
AREAS = [
    ("claim: gate reads", "GateReader."),
    ("claim: other", "DispatchStore.claim"),
    ("outcome: note (own transaction)", "DispatchStore.note"),
    ("outcome: finish + runbook follow", "DispatchStore.finish"),
    ("logging", "Logger."),
    ("executor", "LogExecutor.execute"),
    ("executor: process record", "Dispatcher._record_process"),
    ("executor: spawn (Popen)", "Popen.__init__"),
    ("executor: command, other", "CommandExecutor.execute"),
    ("dispatcher: idle pool hand-over", "_IdlePool."),
    ("ingest: group commit", "commit_together"),
    ("ingest: other", "JournalWriter.journal"),
    ("writer: IPC read/answer", "JournalWriter."),
    ("dispatcher: other", "Dispatcher."),
    ("http: gunicorn + webhook", "ThreadWorker."),
    ("http: accept/poll loop", "BufferingWorker."),
]


def areas(collapsed: Path) -> list[tuple[str, float]]:
    """Share of samples per AREAS entry (outermost matching frame wins), as ratios."""
    counts: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        frames = stack.split(";")
        counts[_area(frames)] += int(n)
    return [(area, round(n / total, 3)) for area, n in counts.most_common()] if total else []


def _area(frames: list[str]) -> str:
    for area, prefix in AREAS:
        if any(f.startswith(prefix) for f in frames):
            return area
    return "other"


def dispatch_cpu(count: int) -> float:
    """CPU seconds (this process) per action for the dispatcher to claim, carry out and
    finish `count` actions planned beforehand, one thread, no server."""
    from receiver.dispatcher import Dispatcher

    with _journal(count) as (store, source):
        dispatcher = Dispatcher(source, store)
        start = time.process_time()
        done = 0
        while dispatcher.run_once():
            done += 1
        used = time.process_time() - start
    if done != count:
        raise RuntimeError(f"dispatched {done} of {count} actions")
    return used / count


def pool_cpu(count: int, rate: float) -> tuple[float, int]:
    """(CPU seconds per action of the dispatcher's pool threads, claim transactions) to
    carry out `count` actions with the whole pool (defaults.max_concurrent_actions
    threads), no server. `rate` 0: all planned beforehand, then one wake-up (a backlog);
    else planned one notification at a time at `rate`/s by this thread, each followed
    by a wake-up as the journal writer gives (this thread's ingest is not counted)."""
    from receiver.dispatcher import Dispatcher

    with _journal(0 if rate else count) as (store, source):
        claims = _count_claims(store)
        dispatcher = Dispatcher(source, store)
        dispatcher.start()
        try:
            pool = _pool_threads()
            before = sum(_thread_cpu(tid) for tid in pool)
            if rate:
                _plan_at(store, source.config, dispatcher, count, rate)
            else:
                dispatcher.wake(count)
            _wait_done(store, count)
            used = sum(_thread_cpu(tid) for tid in pool) - before
        finally:
            dispatcher.stop()
    return used / count, claims[0]


@contextlib.contextmanager
def _journal(count: int) -> Iterator[tuple[Any, SimpleNamespace]]:
    """A temporary SQLite journal with `count` one-alert notifications journaled (one
    action each, as the latency benchmark's), and a config source: (store, source)."""
    from receiver.config import parse_config
    from receiver.store import open_store

    with common.workdir("dispatch-cpu", False) as wd:
        path = common.write_config(wd, common.config_text(strategies=latency.STRATEGIES))
        config = parse_config(path.read_text(), base_dir=wd)
        store = open_store(f"sqlite:///{wd / 'journal.db'}")
        try:
            _, items = latency.bodies(count)
            for body in items:
                _ingest(store, config, body)
            yield store, SimpleNamespace(config=config)
        finally:
            store.close()


def _ingest(store: Any, config: Any, body: bytes) -> int:
    from receiver.alerts import parse_notification
    from receiver.engine import ingest

    return ingest(store, config, parse_notification(json.loads(body)), time.time()).actions_planned


def _plan_at(store: Any, config: Any, dispatcher: Any, count: int, rate: float) -> None:
    """Journal `count` notifications at `rate`/s (open loop), waking the dispatcher."""
    _, items = latency.bodies(count, offset=1_000_000)
    start = time.monotonic()
    for number, body in enumerate(items):
        delay = start + number / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        dispatcher.wake(_ingest(store, config, body))


def _count_claims(store: Any) -> list[int]:
    """Count the store's claim transactions from now on: [count], updated in place."""
    claims = [0]
    claim_due = store.claim_due  # the dispatcher's claims (claim_many's too)

    def counted(*args: Any, **kwargs: Any) -> Any:
        claims[0] += 1
        return claim_due(*args, **kwargs)

    store.claim_due = counted
    return claims


def _pool_threads() -> list[int]:
    """Native ids of the dispatcher's action threads (named dispatch-<n>)."""
    return [
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith("dispatch-") and t.name[9:].isdigit() and t.native_id
    ]


def _thread_cpu(tid: int) -> float:
    """User + system CPU seconds used so far by thread `tid` of this process."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_done(store: Any, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while store.list_actions(status="succeeded", limit=1).total < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pool did not carry out {count} actions in {timeout:g}s")
        time.sleep(0.05)


def _dispatch_main(args: argparse.Namespace) -> None:
    """--dispatch: print the dispatcher's CPU per action (one thread, or --pool)."""
    if args.log_format == "none":
        logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])
    else:
        from receiver import logs

        logs.configure(args.log_format, "INFO")
        logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115
    n = args.dispatch
    if args.pool is None:
        per_action = dispatch_cpu(n)
        print(f"dispatcher: {per_action * 1000:.3f} ms CPU per action ({n:,} actions)")
        return
    rate = args.pool
    per_action, claims = pool_cpu(n, rate)
    how = f"planned at {rate:g}/s" if rate else "planned beforehand"
    print(
        f"dispatcher pool: {per_action * 1000:.3f} ms CPU per action, {claims:,} claim "
        f"transactions ({n:,} actions {how})"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=latency.RATE)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path("bench/profiles"))
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    p.add_argument("--no-spy", action="store_true", help="measure CPU only, no py-spy")
    p.add_argument("--dispatch", type=int, metavar="N", help="dispatcher CPU per action only")
    p.add_argument(
        "--command",
        action="store_true",
        help="bench.remediate's strategy (a `command` executor running a small program "
        "per alert) instead of the latency benchmark's `log` executor",
    )
    p.add_argument(
        "--pool",
        type=float,
        nargs="?",
        const=0.0,
        metavar="RATE",
        help="with --dispatch: the whole pool; RATE notifications/s planned meanwhile "
        "(default: all planned beforehand)",
    )
    p.add_argument(
        "--log-format",
        choices=("none", "text", "json"),
        default="none",
        help="with --dispatch: format the log lines (written to /dev/null) or drop them",
    )
    args = p.parse_args(argv)
    if args.dispatch:
        _dispatch_main(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    warm = int(latency.WARMUP_S * args.rate)
    count = warm + int(args.seconds * args.rate)
    with common.workdir("profile", False) as wd:
        if args.command:  # bench.remediate's load: a `run` of a small C program each
            from bench import remediate

            config = remediate.config_for(wd, remediate.prepare_script(wd, "auto"))
            _, items = remediate.bodies(0, count)
        else:
            config = common.write_config(wd, common.config_text(strategies=latency.STRATEGIES))
            _, items = latency.bodies(count)
        with common.server("remediator", wd, config) as srv:
            procs = {
                "worker": srv.workers()[0],
                "writer": srv.writers()[0],
                "dispatch": srv.dispatchers()[0],
            }
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
        print("by area:")
        for area, share in areas(args.out / f"{name}{args.tag}.txt"):
            print(f"  {share:6.1%}  {area}")
        print("self:")
        for frame, share in selfs:
            print(f"  {share:6.1%}  {frame}")
        print("inclusive:")
        for frame, share in incls:
            print(f"  {share:6.1%}  {frame}")


if __name__ == "__main__":
    main()
