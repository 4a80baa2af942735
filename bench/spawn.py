"""Spawn cost: `subprocess.Popen` as the command executor used it vs `os.posix_spawn`.

A trivial program (`/bin/true`) is started N times, one after the other, each way:

- popen: `subprocess.Popen(argv, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, env=...,
  start_new_session=True, close_fds=True)`, as receiver/executors/command.py did
  before it moved to posix_spawn (and still does for an executor with a `cwd`);
- posix_spawn: `receiver.executors.spawn.spawn`, as the executor does now
  (os.posix_spawn with `setsid=True`, stdin from /dev/null, stdout and stderr to the
  capture pipe; close-on-exec keeps every other descriptor out of the child);
- posix_spawn + scan: the same after a scan of /proc/self/fd for inheritable
  descriptors, what closing them at every spawn would cost (the executor seals them
  once per process instead: see receiver/executors/spawn.py);

then the output pipe is read to its end and the child reaped, as the executor does.
Two more rows run the whole `CommandExecutor.execute` for an action of a firing alert
(environment from its labels, process identity for the journal, output capture):
`executor, posix_spawn` as configured by default, `executor, Popen` with a `cwd` (the
one case the executor still starts programs with Popen).
The spawning process holds `--fds` open descriptors (default 20, as many as the
journal writer holds) besides its own. Per spawn: the spawning process's own CPU
(user + system, from os.times), the children's CPU before and in `/bin/true` (the
kernel's accounting of reaped children), and wall time. The modes alternate in rounds
so that a change of load hits all of them alike.

    python -m bench.spawn [--quick] [--count N] [--fds N] [--out DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import common
from bench.common import fmt
from receiver.config import Config, ExecutorConfig
from receiver.executors import build_executors
from receiver.executors.base import ActionRequest, Executor
from receiver.executors.spawn import inheritable_fds, spawn

PROGRAM = ["/bin/true"]
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "REMEDIATOR_TARGET": "web-1"}
ROUNDS = 5
#: the saving below which the executor keeps Popen (see the executor's docstring)
CLEARLY_CHEAPER = 0.20


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
    child = spawn(PROGRAM, ENV)
    while child.stdout.read(65536):
        pass
    child.stdout.close()
    child.wait()


def run_posix_spawn_scanned() -> None:
    inheritable_fds()
    run_posix_spawn()


def command_executor(**settings: str) -> Executor:
    spec = ExecutorConfig("local", "command", settings)
    return build_executors(Config(executors={"local": spec}))["local"]


REQUEST = ActionRequest(
    action_id=1,
    action="run",
    target="web-1",
    rendered={"command": [*PROGRAM, "web-1"], "params": {}},
    labels={"alertname": "BenchSpawn", "service": "web", "instance": "web-1", "job": "web"},
    annotations={"summary": "BenchSpawn on web-1", "description": "web instance web-1 is down"},
    timeout=30.0,
    strategy="append-line",
    on_process=lambda identity: None,
)
EXECUTORS = {"posix_spawn": command_executor(), "Popen": command_executor(cwd="/")}


def run_executor(kind: str) -> Callable[[], None]:
    def run() -> None:
        result = EXECUTORS[kind].execute(REQUEST)
        assert result.ok, result.detail

    return run


MODES: dict[str, Callable[[], None]] = {
    "popen": run_popen,
    "posix_spawn": run_posix_spawn,
    "posix_spawn + scan": run_posix_spawn_scanned,
    "executor, Popen": run_executor("Popen"),
    "executor, posix_spawn": run_executor("posix_spawn"),
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
    spawns = per_round * ROUNDS
    rows = {
        name: {
            "own_cpu_us": round(1e6 * t["own_cpu_s"] / spawns, 1),
            "children_cpu_us": round(1e6 * t["children_cpu_s"] / spawns, 1),
            "wall_us": round(1e6 * t["wall_s"] / spawns, 1),
            "spawns_per_s": round(spawns / t["wall_s"], 1),
        }
        for name, t in totals.items()
    }
    saved = 1 - rows["posix_spawn"]["own_cpu_us"] / rows["popen"]["own_cpu_us"]
    executor = rows["executor, posix_spawn"]["own_cpu_us"] / rows["executor, Popen"]["own_cpu_us"]
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
        "executor_own_cpu_saved": round(1 - executor, 3),
        "clearly_cheaper": saved >= CLEARLY_CHEAPER,
    }


def render(result: dict[str, Any]) -> str:
    headers = ["mode", "own CPU µs/spawn", "children CPU µs/spawn", "wall µs/spawn", "spawns/s"]
    body = [
        [
            name,
            fmt(r["own_cpu_us"]),
            fmt(r["children_cpu_us"]),
            fmt(r["wall_us"]),
            fmt(r["spawns_per_s"]),
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
            f"{100 * result['own_cpu_saved']:.0f}% of the spawning process's CPU per spawn, "
            f"{100 * result['executor_own_cpu_saved']:.0f}% per executor action. Load "
            f"average before / after: {before[0]:.2f} / {after[0]:.2f}.",
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
