"""Spawn cost: `subprocess.Popen` as the command executor uses it vs `os.posix_spawn`.

A trivial program (`/bin/true`) is started N times, one after the other, each way:

- popen: `subprocess.Popen(argv, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, env=...,
  start_new_session=True, close_fds=True)`, as receiver/executors/command.py does;
- posix_spawn: the same child with os.posix_spawn (`setsid=True`, stdin from
  /dev/null, stdout and stderr to the capture pipe, SIGPIPE and SIGXFSZ back at their
  defaults as Popen's restore_signals does; close-on-exec keeps the process's own
  descriptors out of the child);
- posix_spawn + scan: the same after a scan of /proc/self/fd for inheritable
  descriptors, which closing every descriptor Popen closes would take;

then the output pipe is read to its end and the child reaped, as the executor does.
The spawning process holds `--fds` open descriptors (default 20, as many as the
journal writer holds) besides its own. Per spawn: the spawning process's own CPU
(user + system, from os.times), the children's CPU before and in `/bin/true` (the
kernel's accounting of reaped children), and wall time. The modes alternate in rounds
so that a change of load hits all of them alike.

Then the same spawns again with a second thread that sleeps 1 ms at a time, as the
journal writer's other threads (ingest, the other dispatcher threads) wait for work:
how late its wake-ups come (p99 and max) says how long a spawn kept the interpreter
lock. Popen lets go of it while the child execs (CPython drops the GIL around its
vfork: gh-104372); os.posix_spawn holds it until the child has exec'd, so every
other thread of the process waits for each exec.

    python -m bench.spawn [--quick] [--count N] [--fds N] [--out DIR]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import common
from bench.common import fmt

PROGRAM = ["/bin/true"]
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "REMEDIATOR_TARGET": "web-1"}
ROUNDS = 5
#: the ticker thread's sleep (seconds)
TICK_S = 0.001
#: signals Python ignores that Popen gives the child back at their defaults
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def run_popen() -> None:
    process = subprocess.Popen(
        PROGRAM,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,
        close_fds=True,
    )
    assert process.stdout is not None
    while process.stdout.read(65536):
        pass
    process.stdout.close()
    process.wait()


def run_posix_spawn() -> None:
    read_end, write_end = os.pipe()  # close-on-exec; dup2 clears it on 1 and 2
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_DUP2, write_end, 2),
        ]
        pid = os.posix_spawn(
            PROGRAM[0],
            PROGRAM,
            ENV,
            file_actions=actions,
            setsid=True,
            setsigdef=DEFAULT_SIGNALS,
        )
    finally:
        os.close(write_end)
    while os.read(read_end, 65536):
        pass
    os.close(read_end)
    os.waitpid(pid, 0)


def inheritable_fds() -> list[int]:
    """This process's descriptors above 2 that exec would pass on (a scan of /proc)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                continue
    return found


def run_posix_spawn_scanned() -> None:
    inheritable_fds()
    run_posix_spawn()


MODES: dict[str, Callable[[], None]] = {
    "popen": run_popen,
    "posix_spawn": run_posix_spawn,
    "posix_spawn + scan": run_posix_spawn_scanned,
}


def measure(run: Callable[[], None], count: int) -> dict[str, float]:
    """Totals over `count` spawns: own CPU, reaped children's CPU, wall (seconds)."""
    before, start = os.times(), time.perf_counter()
    for _ in range(count):
        run()
    wall, after = time.perf_counter() - start, os.times()
    return {
        "own_cpu_s": (after.user + after.system) - (before.user + before.system),
        "children_cpu_s": (after.children_user + after.children_system)
        - (before.children_user + before.children_system),
        "wall_s": wall,
    }


def stalls(run: Callable[[], None], count: int) -> list[float]:
    """How late (seconds) each wake-up of a thread sleeping TICK_S came while `run`
    ran `count` times in this one: its wait for the interpreter lock, mostly."""
    late: list[float] = []
    done = threading.Event()

    def ticker() -> None:
        while not done.is_set():
            asleep = time.perf_counter()
            time.sleep(TICK_S)
            late.append(time.perf_counter() - asleep - TICK_S)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        for _ in range(count):
            run()
    finally:
        done.set()
        thread.join()
    return late


def bench(count: int, fds: int = 20) -> dict[str, Any]:
    """Each mode `count` times (see the module docstring) with `fds` descriptors open."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(max(0, fds - _open_fds()))]
    try:
        return _bench(count, _open_fds())
    finally:
        for fd in held:
            os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own


def _bench(count: int, fds: int) -> dict[str, Any]:
    for run in MODES.values():  # warm up: imports, page cache of /bin/true
        for _ in range(20):
            run()
    totals = {name: {"own_cpu_s": 0.0, "children_cpu_s": 0.0, "wall_s": 0.0} for name in MODES}
    per_round = max(1, count // ROUNDS)
    load_before = os.getloadavg()
    for _ in range(ROUNDS):
        for name, run in MODES.items():
            for key, value in measure(run, per_round).items():
                totals[name][key] += value
    late: dict[str, list[float]] = {name: [] for name in MODES}
    for _ in range(ROUNDS):
        for name, run in MODES.items():
            late[name] += stalls(run, per_round)
    spawns = per_round * ROUNDS
    rows = {
        name: {
            "own_cpu_us": round(1e6 * t["own_cpu_s"] / spawns, 1),
            "children_cpu_us": round(1e6 * t["children_cpu_s"] / spawns, 1),
            "wall_us": round(1e6 * t["wall_s"] / spawns, 1),
            "spawns_per_s": round(spawns / t["wall_s"], 1),
            "other_thread_late_p99_us": round(1e6 * (common.percentile(late[name], 99) or 0), 1),
            "other_thread_late_max_us": round(1e6 * max(late[name], default=0.0), 1),
        }
        for name, t in totals.items()
    }
    saved = 1 - rows["posix_spawn"]["own_cpu_us"] / rows["popen"]["own_cpu_us"]
    return {
        "benchmark": "spawn",
        "load": {
            "spawns_per_mode": spawns,
            "rounds": ROUNDS,
            "program": PROGRAM,
            "open_fds": fds,
        },
        "machine": common.machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
        "own_cpu_saved": round(saved, 3),
    }


def render(result: dict[str, Any]) -> str:
    headers = [
        "mode",
        "own CPU µs/spawn",
        "children CPU µs/spawn",
        "wall µs/spawn",
        "spawns/s",
        "other thread late p99 / max µs",
    ]
    body = [
        [
            name,
            fmt(r["own_cpu_us"]),
            fmt(r["children_cpu_us"]),
            fmt(r["wall_us"]),
            fmt(r["spawns_per_s"]),
            f"{fmt(r['other_thread_late_p99_us'])} / {fmt(r['other_thread_late_max_us'])}",
        ]
        for name, r in result["rows"].items()
    ]
    load = result["load"]
    before, after = result["load_average"]["before"], result["load_average"]["after"]
    return "\n".join(
        [
            "## Spawn: subprocess.Popen vs os.posix_spawn",
            "",
            common.table(headers, body),
            "",
            f"Load: {load['spawns_per_mode']:,} spawns of {' '.join(load['program'])} per "
            f"mode, alternating in {load['rounds']} rounds, {load['open_fds']} descriptors "
            f"open in the spawning process. posix_spawn saves "
            f"{100 * result['own_cpu_saved']:.0f}% of the spawning process's CPU per spawn. "
            f"Other thread: one sleeping {1000 * TICK_S:g} ms at a time during a second "
            "pass, how late it woke. Load average before / after: "
            f"{before[0]:.2f} / {after[0]:.2f}.",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--count", type=int, help="spawns per mode (default 5,000; --quick 500)")
    p.add_argument("--fds", type=int, default=20, help="descriptors open while spawning")
    args = p.parse_args(argv)
    result = bench(args.count or (500 if args.quick else 5000), args.fds)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'spawn', result)}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
