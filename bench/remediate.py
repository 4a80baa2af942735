"""Command remediation end to end: alerts/s, server CPU per alert, POST -> script start, memory.

Every alert is a distinct firing alert (its own `instance`), one per notification, and
matches one `run` strategy of a `command` executor whose argv runs a one-line script
that appends the target and the wall-clock time, taken at its first statement, to a
file: a small C program built in the work folder when `cc` is on PATH (start-up well
under a millisecond), else this interpreter with a three-line script (`-S -I`; about
10 ms of start-up, which then dominates every figure). Never a shell: the target is
one argv entry. The baseline (bench/remediate_baseline.py) runs under the same gunicorn
settings and spawns the same argv per firing alert straight from the WSGI callable (no
journal, no gates, no authentication): the ceiling for doing this in Python.

Each server, after a 20-alert warm-up:

1. POST -> script start at a fixed rate (50/s, open loop as in bench.latency, 1 s
   warm-up not counted): the script's timestamp minus the client's wall-clock send time.
   It includes the script's own start-up before its first statement; that start-up,
   measured alone (the bench spawning the script itself), is reported too.
2. Throughput: N alerts (default 500) from 8 client threads, closed loop; alerts/s =
   N / (last script timestamp - first POST). Every target must appear exactly once.
3. Server CPU per alert over phase 2, until the server is idle again (remediator: no
   action planned or running): utime + stime from /proc/<pid>/stat of every process of
   the server's tree (gunicorn master, worker, journal writer, the writer's dispatch
   process; snapshot taken idle, so no script is in it). The scripts' own CPU is the
   growth of those processes' cutime + cstime (children they reaped: the dispatch
   process reaps the scripts) and is reported apart.
4. Memory over phases 1-2: the sum over the tree's processes of Rss and Pss from
   /proc/<pid>/smaps_rollup, sampled every 50 ms (peak of the sums), and each
   process's VmHWM. Also each process's Pss at start, once the server answers and
   before the first alert: what the imported code and the processes cost alone.
5. Growth: the tree's Pss, idle after phase 2, then after a second burst of N new
   alerts, idle again; the difference must stay within TARGET_GROWTH_MB.

    python -m bench.remediate [--quick] [--out DIR] [--alerts N] [--script auto|c|python]
                              [--max-concurrent-actions N]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common, latency, payloads
from bench.common import Journal, fmt

KINDS = ("remediate_baseline", "remediator")
ALERTNAME = "BenchRemediate"
ALERTS = 500
QUICK_ALERTS = 100
CLIENTS = 8
RATE = 50.0
RATE_WARMUP = 50
RATE_MEASURED = 250
QUICK_RATE_MEASURED = 100
WARMUP_ALERTS = 20
SETTLE_TIMEOUT_S = 180.0
TARGET_RATIO = 0.7
TARGET_CPU_MS = 1.5
TARGET_START_P99_MS = 10.0
TARGET_PSS_MB = 60.0
#: "nothing grows with alerts handled": the tree's PSS, idle, after a second burst of as
#: many alerts as the first, against idle after the first (bounded caches filling up and
#: the allocator's noise measured 0.15-0.35 MB; a leak of 2 KiB per alert passes it)
TARGET_GROWTH_MB = 1.0

PYTHON_SCRIPT = """import sys, time
t = time.time()
with open(sys.argv[2], "a") as f:
    f.write(f"{sys.argv[1]} {t:.6f}\\n")
"""

# The same in C: a one-line script's start-up (a few hundred microseconds) rather than
# an interpreter's (about 10 ms here), so the figures measure the servers, not Python.
C_SCRIPT = r"""#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now); /* first: the script's start */
    if (argc != 3) return 2;
    char line[512];
    int n = snprintf(line, sizeof line, "%s %lld.%06ld\n", argv[1], (long long)now.tv_sec,
                     now.tv_nsec / 1000);
    if (n < 0 || n >= (int)sizeof line) return 3;
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return 4;
    ssize_t written = write(fd, line, (size_t)n); /* one O_APPEND write: lines never mix */
    close(fd);
    return written == n ? 0 : 5;
}
"""


@dataclass(frozen=True)
class Script:
    """The command both servers run: `program` then the target and the output file, as
    argv entries (never a shell). kind: "c" (compiled here) or "python"."""

    kind: str
    program: tuple[str, ...]
    output: Path

    def argv(self, target: str, output: Path | None = None) -> list[str]:
        return [*self.program, target, str(output or self.output)]

    @property
    def describe(self) -> str:
        if self.kind == "c":
            return "a 20-line C program (line.c, built with cc -O2): appends target and time"
        return "python -S -I line.py (appends target and time.time())"


def prepare_script(workdir: Path, kind: str) -> Script:
    """Write the script into `workdir`; kind "auto" compiles the C one when a C compiler
    is on PATH (else Python). Raises RuntimeError when "c" was asked and cannot build."""
    output = workdir / "lines"
    if kind in ("auto", "c") and shutil.which("cc"):
        (workdir / "line.c").write_text(C_SCRIPT)
        built = subprocess.run(
            ["cc", "-O2", "-o", str(workdir / "line"), str(workdir / "line.c")],
            capture_output=True,
            text=True,
        )
        if built.returncode == 0:
            return Script("c", (str(workdir / "line"),), output)
        if kind == "c":
            raise RuntimeError(f"cannot build line.c: {built.stderr.strip()}")
    elif kind == "c":
        raise RuntimeError("no C compiler (cc) on PATH: use --script python")
    (workdir / "line.py").write_text(PYTHON_SCRIPT)
    return Script("python", (sys.executable, "-S", "-I", str(workdir / "line.py")), output)


def config_for(workdir: Path, script: Script, max_concurrent: int | None = None) -> Path:
    """The bench's config: one `run` strategy of a `command` executor running `script`
    per alert; `max_concurrent` sets `defaults.max_concurrent_actions` (None: its
    default, 4), which is also the dispatcher's pool of threads."""
    command = json.dumps(script.argv("{{ target }}"))
    strategies = f"""
  - name: append-line
    matchers: ['alertname="{ALERTNAME}"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: {command}
"""
    executors = "  local: {type: command, timeout: 30s}"
    defaults = "  dry_run: false"
    if max_concurrent is not None:
        defaults += f"\n  max_concurrent_actions: {max_concurrent}"
    return common.write_config(
        workdir, common.config_text(strategies=strategies, defaults=defaults, executors=executors)
    )


def bodies(first: int, count: int) -> tuple[list[str], list[bytes]]:
    """`count` 1-alert notifications, targets rem-<first>... (distinct across phases)."""
    starts_at = payloads.now_rfc3339(-60)
    targets, encoded = [], []
    for i in range(first, first + count):
        target = f"rem-{i:06d}"
        alert = payloads.alert(
            f"{i:016x}",
            alertname=ALERTNAME,
            service=f"svc-{i % 10}",
            instance=target,
            starts_at=starts_at,
        )
        group_key = f'{{}}:{{alertname="{ALERTNAME}",instance="{target}"}}'
        targets.append(target)
        encoded.append(payloads.encode(payloads.notification([alert], group_key)))
    return targets, encoded


# ---------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    """The children of every thread of `pid` (/proc/<pid>/task/<tid>/children: a child
    is listed under the thread that forked it, e.g. a dispatcher thread)."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children(current))
    return found


def _stat(pid: int) -> tuple[float, float] | None:
    """(own utime + stime, reaped children's cutime + cstime), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot, over all its CPUs: the
    `cpu` line of /proc/stat less idle and iowait (proc(5))."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Context switches so far of every thread of `pid`, voluntary and not (the sum over
    /proc/<pid>/task/*/status; 0 once it is gone). A thread switches out whenever it
    waits: for another thread's hand-over or the interpreter lock, for a lock, a pipe,
    the disk; so it shows how much a process's threads pass work to one another."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        for line in status.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[-1])
    return total


def cpu(pids: list[int]) -> tuple[float, float]:
    """Summed (own, children's) CPU seconds of the processes (gone ones count 0)."""
    own = children = 0.0
    for pid in pids:
        figures = _stat(pid)
        if figures:
            own, children = own + figures[0], children + figures[1]
    return own, children


def rollup_kb(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process from /proc/<pid>/smaps_rollup, KiB; (0, 0) if gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def pss_by_process(pids: list[int]) -> list[int]:
    """Pss of each process of `pids` (KiB, in their order): the tree at start, before any
    alert, is what the imported code and the process layout cost alone."""
    return [rollup_kb(pid)[1] for pid in pids]


@dataclass
class MemorySampler:
    """Samples the summed Rss and Pss of `pids` every `interval` seconds in a thread."""

    pids: list[int]
    interval: float = 0.05
    peak_rss_kb: int = 0
    peak_pss_kb: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        rss = pss = 0
        for pid in self.pids:
            r, p = rollup_kb(pid)
            rss, pss = rss + r, pss + p
        self.peak_rss_kb, self.peak_pss_kb = max(self.peak_rss_kb, rss), max(self.peak_pss_kb, pss)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


# ---------------------------------------------------------------- waiting


def read_lines(path: Path) -> list[tuple[str, float]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        target, _, stamp = line.rpartition(" ")  # the time is last; a target may hold spaces
        if stamp:
            rows.append((target, float(stamp)))
    return rows


def wait_lines(path: Path, count: int, timeout: float) -> list[tuple[str, float]]:
    """The file's lines once it has `count` (or what it has after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = read_lines(path)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def wait_idle(srv: common.Server, pids: list[int], timeout: float) -> bool:
    """True once no process outside `pids` is in the server's tree (every script exited
    and was reaped) and, for remediator, no action is planned or running."""
    if srv.db is not None:
        journal = Journal(srv.db)
        try:
            if journal.wait_settled(timeout) is None:
                return False
        finally:
            journal.close()
    deadline = time.monotonic() + timeout
    while set(tree(srv.process.pid)) - set(pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------- phases


def startup_ms(script: Script, workdir: Path, runs: int = 20) -> dict[str, Any]:
    """The script's own start-up: the bench spawns it `runs` times, time.time() just
    before Popen to the script's timestamp (exec, start-up, first statement)."""
    out = workdir / "startup-lines"
    delays = []
    for i in range(runs):
        argv = script.argv(f"startup-{i}", out)
        before = time.time()
        subprocess.run(argv, check=True)
        delays.append(read_lines(out)[-1][1] - before)
    return latency.summary_ms(delays)


def rate_phase(srv: common.Server, lines: Path, quick: bool) -> dict[str, Any]:
    """POST -> script start at RATE/s, open loop, the first RATE_WARMUP not counted."""
    measured = QUICK_RATE_MEASURED if quick else RATE_MEASURED
    targets, items = bodies(WARMUP_ALERTS, RATE_WARMUP + measured)
    before = len(read_lines(lines))
    times = latency.open_loop(srv, items, RATE)
    rows = wait_lines(lines, before + len(items), SETTLE_TIMEOUT_S)
    started = dict(rows)
    delays = [
        started[t] - times["sent_wall"][i]
        for i, t in enumerate(targets)
        if i >= RATE_WARMUP and t in started
    ]
    return {
        "rate_per_s": RATE,
        "measured": measured,
        "statuses": dict(Counter(times["status"][RATE_WARMUP:])),
        "started": len(delays),
        "post_to_start_ms": latency.summary_ms(delays),
    }


def throughput_phase(
    srv: common.Server, lines: Path, pids: list[int], first: int, alerts: int
) -> dict[str, Any]:
    """`alerts` notifications from CLIENTS threads; CPU of the tree until idle again."""
    targets, items = bodies(first, alerts)
    before = len(read_lines(lines))
    cpu_before = cpu(pids)
    each_before = [_stat(pid) or (0.0, 0.0) for pid in pids]
    switches_before = [context_switches(pid) for pid in pids]
    busy_before, client_before, started = machine_busy_s(), time.process_time(), time.monotonic()
    first_post = time.time()
    posting, answers = common.post_all(srv, items, CLIENTS)
    client = time.process_time() - client_before
    rows = wait_lines(lines, before + alerts, SETTLE_TIMEOUT_S)[before:]
    # whether the burst was bound by the machine's CPUs: everything that ran on them
    # (servers, scripts, this client, anything else) from the first POST to the last line
    busy = (machine_busy_s() - busy_before) / max(time.monotonic() - started, 1e-9)
    idle = wait_idle(srv, pids, SETTLE_TIMEOUT_S)
    own, children = (a - b for a, b in zip(cpu(pids), cpu_before, strict=True))
    each = [
        round(((_stat(pid) or (0.0, 0.0))[0] - was[0]) / alerts * 1000, 3)
        for pid, was in zip(pids, each_before, strict=True)
    ]
    switches = [
        round((context_switches(pid) - was) / alerts, 1)
        for pid, was in zip(pids, switches_before, strict=True)
    ]
    written = Counter(t for t, _ in rows)
    last = max((stamp for _, stamp in rows), default=None)
    seconds = None if last is None else last - first_post
    return {
        "alerts": alerts,
        "client_threads": CLIENTS,
        "statuses": dict(Counter(status for status, _ in answers)),
        "lines": len(rows),
        "every_target_once": all(written[t] == 1 for t in targets) and len(rows) == alerts,
        "idle_after": idle,
        "seconds": None if seconds is None else round(seconds, 3),
        "alerts_per_s": None if not seconds else round(alerts / seconds, 1),
        # the last POST answered: what follows is the actions still to be carried out
        "posting_s": round(posting, 3),
        "server_cpu_s": round(own, 3),
        "server_cpu_per_alert_ms": round(own / alerts * 1000, 3),
        "server_cpu_per_alert_ms_by_process": each,
        "context_switches_per_alert_by_process": switches,
        "scripts_cpu_s": round(children, 3),
        "scripts_cpu_per_alert_ms": round(children / alerts * 1000, 3),
        "client_cpu_per_alert_ms": round(client / alerts * 1000, 3),
        "machine_busy_cores": round(busy, 2),
    }


def growth_phase(
    srv: common.Server, lines: Path, pids: list[int], first: int, alerts: int
) -> dict[str, Any]:
    """Whether memory grows with the alerts handled: the tree's PSS idle (after the
    throughput burst), then after a second burst of as many new alerts, idle again."""
    before = pss_by_process(pids)
    already = len(read_lines(lines))
    _, items = bodies(first, alerts)
    common.post_all(srv, items, CLIENTS)
    wait_lines(lines, already + alerts, SETTLE_TIMEOUT_S)
    wait_idle(srv, pids, SETTLE_TIMEOUT_S)
    after = pss_by_process(pids)
    return {
        "alerts": alerts,
        "pss_idle_before_mb": round(sum(before) / 1024, 1),
        "pss_idle_after_mb": round(sum(after) / 1024, 1),
        "growth_mb": round((sum(after) - sum(before)) / 1024, 2),
        "growth_by_process_mb": [
            round((a - b) / 1024, 2) for a, b in zip(after, before, strict=True)
        ],
    }


def server_pids(srv: common.Server, script: Script) -> list[int]:
    """The server's own processes: its tree without the scripts still running, nor those
    that exited and wait to be reaped (zombies: counted by wait_idle). A zombie's
    command line reads empty, so one read of /proc per process tells both apart."""
    mark = script.program[-1].encode() + b"\0"  # the program's path as a whole argument
    own = []
    for pid in tree(srv.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # a script that just exited
        if cmdline and mark not in cmdline:
            own.append(pid)
    return own


#: A journal writer forked from the worker keeps the worker's command line and takes
#: this name; an executed one (a restart) runs `python -m receiver.writer.process`.
WRITER_NAME = "journal-writer"


def _is_writer(pid: int) -> bool:
    """A journal writer or its dispatch process (forked from it, the same identity)."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == WRITER_NAME:
            return True
        return b"receiver.writer.process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def describe(pids: list[int]) -> list[dict[str, Any]]:
    """Each server process: pid, its command line (shortened; a journal writer's and its
    dispatch process's prefixed with their role), VmHWM (peak RSS) MB."""
    writers = {pid for pid in pids if _is_writer(pid)}
    found = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = " ".join(a.decode(errors="replace") for a in argv if a)[:80]
        if pid in writers:  # the dispatch process is forked by the writer, never exec'd
            role = "dispatch process" if _parent(pid) in writers else "journal writer"
            name = f"({role}) {name}"
        peak = common._status_kb(pid, "VmHWM")
        found.append({"pid": pid, "cmdline": name, "peak_rss_mb": round((peak or 0) / 1024, 1)})
    return found


def run_server(
    kind: str,
    quick: bool,
    keep: bool,
    alerts: int,
    script_kind: str,
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    with common.workdir(f"remediate-{kind}", keep) as wd:
        script = prepare_script(wd, script_kind)
        config = config_for(wd, script, max_concurrent)
        lines = script.output
        with common.server(kind, wd, config) as srv:
            at_start = pss_by_process(server_pids(srv, script))
            _, items = bodies(0, WARMUP_ALERTS)
            common.post_all(srv, items, CLIENTS)
            wait_lines(lines, WARMUP_ALERTS, SETTLE_TIMEOUT_S)
            pids = server_pids(srv, script)
            wait_idle(srv, pids, SETTLE_TIMEOUT_S)
            with MemorySampler(pids) as memory:
                rate = rate_phase(srv, lines, quick)
                wait_idle(srv, pids, SETTLE_TIMEOUT_S)
                first = WARMUP_ALERTS + RATE_WARMUP + rate["measured"]
                burst = throughput_phase(srv, lines, pids, first, alerts)
            growth = growth_phase(srv, lines, pids, first + alerts, alerts)
            entry: dict[str, Any] = {
                "rate": rate,
                "throughput": burst,
                "memory": {
                    "peak_rss_mb": round(memory.peak_rss_kb / 1024, 1),
                    "peak_pss_mb": round(memory.peak_pss_kb / 1024, 1),
                    "pss_at_start_mb": round(sum(at_start) / 1024, 1),
                    "pss_at_start_by_process_mb": [round(kb / 1024, 1) for kb in at_start],
                    "samples": memory.samples,
                    "processes": describe(pids),
                    "growth": growth,
                },
                "script": script.kind,
                "script_startup_ms": startup_ms(script, wd),
            }
            if srv.db is not None:
                journal = Journal(srv.db)
                try:
                    entry["actions_by_status"] = dict(
                        journal.rows("SELECT status, COUNT(*) FROM actions GROUP BY status")
                    )
                finally:
                    journal.close()
    return entry


def bench(
    quick: bool,
    keep: bool,
    alerts: int | None = None,
    script: str = "auto",
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    alerts = alerts or (QUICK_ALERTS if quick else ALERTS)
    with common.workdir("remediate-config", keep=False) as wd:
        chosen = prepare_script(wd, script)
        settings = common.gunicorn_settings(config_for(wd, chosen))
    result: dict[str, Any] = {
        "benchmark": "remediate",
        "quick": quick,
        "load": {
            "alerts": alerts,
            "client_threads": CLIENTS,
            "rate_per_s": RATE,
            "rate_warmup": RATE_WARMUP,
            "rate_measured": QUICK_RATE_MEASURED if quick else RATE_MEASURED,
            "command": chosen.describe,
            # None: the config's default (4); the baseline has no such setting
            "max_concurrent_actions": max_concurrent,
        },
        "machine": common.machine(),
    }
    result["server"] = settings
    for kind in KINDS:
        print(f"  remediate {kind} ...", file=sys.stderr)
        result[kind] = run_server(kind, quick, keep, alerts, chosen.kind, max_concurrent)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    base, rem = result["remediate_baseline"], result["remediator"]
    result["ratio"] = {
        "alerts_per_s": common.ratio(
            rem["throughput"]["alerts_per_s"], base["throughput"]["alerts_per_s"]
        ),
        "server_cpu_per_alert": common.ratio(
            rem["throughput"]["server_cpu_per_alert_ms"],
            base["throughput"]["server_cpu_per_alert_ms"],
        ),
        "start_p99": common.ratio(
            rem["rate"]["post_to_start_ms"]["p99"], base["rate"]["post_to_start_ms"]["p99"]
        ),
        "peak_pss": common.ratio(rem["memory"]["peak_pss_mb"], base["memory"]["peak_pss_mb"]),
    }
    result["target"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets (throughput, CPU, start latency, peak memory and its growth) and
    the correctness checks, each with its verdict."""
    rem = result["remediator"]
    ratio = result["ratio"]["alerts_per_s"]
    cpu_ms = rem["throughput"]["server_cpu_per_alert_ms"]
    p99 = rem["rate"]["post_to_start_ms"]["p99"]
    pss = rem["memory"]["peak_pss_mb"]
    growth = rem["memory"]["growth"]["growth_mb"]
    checks = [result[kind] for kind in KINDS]
    return {
        "throughput_ratio_min": TARGET_RATIO,
        "throughput_ratio": ratio,
        "throughput_met": ratio is not None and ratio >= TARGET_RATIO,
        "cpu_per_alert_max_ms": TARGET_CPU_MS,
        "cpu_per_alert_ms": cpu_ms,
        "cpu_per_alert_met": cpu_ms <= TARGET_CPU_MS,
        "start_p99_max_ms": TARGET_START_P99_MS,
        "start_p99_ms": p99,
        "start_p99_met": p99 is not None and p99 <= TARGET_START_P99_MS,
        "peak_pss_max_mb": TARGET_PSS_MB,
        "peak_pss_mb": pss,
        "peak_pss_met": pss <= TARGET_PSS_MB,
        "pss_growth_max_mb": TARGET_GROWTH_MB,
        "pss_growth_mb": growth,
        "pss_growth_met": growth <= TARGET_GROWTH_MB,
        "every_alert_ran_once": all(c["throughput"]["every_target_once"] for c in checks)
        and all(c["rate"]["started"] == c["rate"]["measured"] for c in checks),
        "all_answered_200": all(
            c["throughput"]["statuses"] == {200: c["throughput"]["alerts"]}
            and c["rate"]["statuses"] == {200: c["rate"]["measured"]}
            for c in checks
        ),
    }


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _per_kind(
    result: dict[str, Any],
    figures: Callable[[dict[str, Any]], list[float]],
    show: Callable[[float], str] = lambda x: f"{x:g}",
) -> str:
    """One figure per process of each server, `kind: a, b; kind: c, d, ...`: `figures`
    picks the list (in the order of the server's pids) out of the server's result."""
    return "; ".join(
        f"{kind}: " + ", ".join(show(x) for x in figures(result[kind])) for kind in KINDS
    )


def _threads(load: dict[str, Any]) -> str:
    """The dispatcher's threads when the run set them (--max-concurrent-actions), else ""."""
    threads = load["max_concurrent_actions"]
    return "" if threads is None else f", defaults.max_concurrent_actions {threads}"


def _busy(entry: dict[str, Any]) -> str:
    """The burst's machine-wide busy cores and the client's CPU per alert (ms)."""
    burst = entry["throughput"]
    return (
        f"{burst['machine_busy_cores']:g} ({burst['client_cpu_per_alert_ms']:g} ms); "
        f"every POST answered after {burst['posting_s']:g} s, the last line at "
        f"{burst['seconds']:g} s"
    )


def render(result: dict[str, Any]) -> str:
    base, rem = result["remediate_baseline"], result["remediator"]
    ratio, target, load = result["ratio"], result["target"], result["load"]
    headers = ["measure", "baseline", "remediator", "ratio", "target"]
    rows = [
        [
            f"alerts/s ({load['alerts']} alerts, {load['client_threads']} client threads)",
            fmt(base["throughput"]["alerts_per_s"]),
            fmt(rem["throughput"]["alerts_per_s"]),
            fmt(ratio["alerts_per_s"], 2),
            f"ratio >= {target['throughput_ratio_min']:g}: {_verdict(target['throughput_met'])}",
        ],
        [
            "server CPU per alert, ms (scripts excluded)",
            fmt(base["throughput"]["server_cpu_per_alert_ms"], 2),
            fmt(rem["throughput"]["server_cpu_per_alert_ms"], 2),
            fmt(ratio["server_cpu_per_alert"], 2),
            f"<= {target['cpu_per_alert_max_ms']:g} ms: {_verdict(target['cpu_per_alert_met'])}",
        ],
        [
            "scripts' CPU per alert, ms",
            fmt(base["throughput"]["scripts_cpu_per_alert_ms"], 2),
            fmt(rem["throughput"]["scripts_cpu_per_alert_ms"], 2),
            "",
            "",
        ],
        [
            f"POST -> script start p50, ms (at {load['rate_per_s']:g}/s)",
            fmt(base["rate"]["post_to_start_ms"]["p50"], 2),
            fmt(rem["rate"]["post_to_start_ms"]["p50"], 2),
            fmt(
                common.ratio(
                    rem["rate"]["post_to_start_ms"]["p50"], base["rate"]["post_to_start_ms"]["p50"]
                ),
                2,
            ),
            "",
        ],
        [
            f"POST -> script start p99, ms (at {load['rate_per_s']:g}/s)",
            fmt(base["rate"]["post_to_start_ms"]["p99"], 2),
            fmt(rem["rate"]["post_to_start_ms"]["p99"], 2),
            fmt(ratio["start_p99"], 2),
            f"<= {target['start_p99_max_ms']:g} ms: {_verdict(target['start_p99_met'])}",
        ],
        [
            "peak PSS of the server tree, MB",
            fmt(base["memory"]["peak_pss_mb"]),
            fmt(rem["memory"]["peak_pss_mb"]),
            fmt(ratio["peak_pss"], 2),
            f"<= {target['peak_pss_max_mb']:g} MB: {_verdict(target['peak_pss_met'])}",
        ],
        [
            "PSS of the server tree at start (idle, no alert yet), MB",
            fmt(base["memory"].get("pss_at_start_mb")),
            fmt(rem["memory"].get("pss_at_start_mb")),
            "",
            "",
        ],
        [
            f"PSS growth, idle, over a second burst of {load['alerts']} alerts, MB",
            fmt(base["memory"]["growth"]["growth_mb"], 2),
            fmt(rem["memory"]["growth"]["growth_mb"], 2),
            "",
            f"<= {target['pss_growth_max_mb']:g} MB: {_verdict(target['pss_growth_met'])}",
        ],
        [
            "peak RSS of the server tree (sum), MB",
            fmt(base["memory"]["peak_rss_mb"]),
            fmt(rem["memory"]["peak_rss_mb"]),
            "",
            "",
        ],
    ]
    processes = "; ".join(
        f"{kind}: "
        + ", ".join(f"{p['peak_rss_mb']:g}" for p in result[kind]["memory"]["processes"])
        for kind in KINDS
    )
    startup = rem["script_startup_ms"]
    load_avg = result["machine"]
    return "\n".join(
        [
            "## Command remediation (run a script per firing alert)",
            "",
            common.table(headers, rows),
            "",
            f"Each alert distinct, one per notification, a `run` strategy of a `command` "
            f"executor: {load['command']}{_threads(load)}. Baseline: a bare WSGI endpoint "
            "spawning the same argv per firing alert (no journal, no gates), same gunicorn "
            "settings.",
            f"Every alert ran exactly once: {fmt(target['every_alert_ran_once'])}; all "
            f"answered 200: {fmt(target['all_answered_200'])}; remediator actions: "
            + ", ".join(f"{k} {v:,}" for k, v in rem.get("actions_by_status", {}).items())
            + ".",
            f"Script ({rem['script']}) start-up alone (spawn to first statement, by the bench): "
            f"p50 {fmt(startup['p50'], 2)} ms, p99 {fmt(startup['p99'], 2)} ms; it is inside "
            "the POST -> start figures of both servers.",
            f"VmHWM per process, MB (master, worker, writer, dispatch...): {processes}.",
            "PSS per process at start, MB (same order): "
            + _per_kind(result, lambda r: r["memory"]["pss_at_start_by_process_mb"])
            + ".",
            "Server CPU per alert by process, ms (same order): "
            + _per_kind(
                result, lambda r: r["throughput"]["server_cpu_per_alert_ms_by_process"], str
            )
            + ".",
            "Context switches per alert by process, all its threads (same order): "
            + _per_kind(result, lambda r: r["throughput"]["context_switches_per_alert_by_process"])
            + ".",
            "During the burst the machine's CPUs were busy (all processes, cores on "
            "average, first POST to last line; the bench's client CPU per alert), and "
            "when the posting and the commands ended: "
            + "; ".join(f"{kind}: {_busy(result[kind])}" for kind in KINDS)
            + ".",
            f"Load average at start {tuple(round(x, 2) for x in load_avg['load_average_at_start'])}"
            f", at end {tuple(round(x, 2) for x in load_avg['load_average_at_end'])}, "
            f"{load_avg['cpus']} CPUs.",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=None, help=f"alerts in the burst ({ALERTS})")
    p.add_argument(
        "--script",
        choices=("auto", "c", "python"),
        default="auto",
        help="the command run per alert: auto = C when cc is on PATH, else Python",
    )
    p.add_argument(
        "--max-concurrent-actions",
        type=int,
        default=None,
        help="remediator's defaults.max_concurrent_actions, its dispatcher's threads (4)",
    )
    args = p.parse_args(argv)
    result = bench(args.quick, args.keep, args.alerts, args.script, args.max_concurrent_actions)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'remediate', result)}")
    return result


if __name__ == "__main__":
    main()
