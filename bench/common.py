"""What the benchmarks share: servers, the journal, HTTP clients, tables and results.

Both servers run as real subprocesses under gunicorn with the same settings, the ones
`remediator serve` uses (receiver.server.RemediatorServer.load_config):

- remediator: `python -m receiver.cli serve --config C --listen L --store sqlite:///...`
- baseline:   `python -m bench.baseline_app --config C --listen L` (same config file,
  same RemediatorServer settings, a Flask app that only parses the JSON).
- remediate_baseline: `python -m bench.remediate_baseline --config C --listen L` (the
  same again; a WSGI callable that spawns the config's command per firing alert).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789"
AUTH_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
DEFAULT_OUT = Path(tempfile.gettempdir()) / "remediator-bench"
KINDS = ("baseline", "remediator")


# ---------------------------------------------------------------- command line


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short run (smoke test of the bench)")
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for the JSON results (default {DEFAULT_OUT})",
    )
    p.add_argument("--keep", action="store_true", help="keep the servers' work folders and logs")
    return p


# ---------------------------------------------------------------- config


def config_text(
    strategies: str = "[]", defaults: str = "", executors: str = "  audit: {type: log}"
) -> str:
    """A receiver config: bearer auth, the default gunicorn threads, a `log` executor
    named audit unless `executors` says otherwise.

    `strategies`, `defaults` and `executors` are YAML blocks (already indented for their
    key)."""
    return f"""# written by bench/common.py
server:
  auth: {{bearer_token_file: token}}
defaults:
{defaults or "  dry_run: false"}
executors:
{executors}
strategies: {strategies}
"""


def write_config(workdir: Path, text: str) -> Path:
    (workdir / "token").write_text(TOKEN + "\n")
    path = workdir / "remediation.yml"
    path.write_text(text)
    return path


def gunicorn_settings(config_path: Path) -> dict[str, Any]:
    """The settings `remediator serve` gives gunicorn for this config, read from
    RemediatorServer itself (constructing it loads the settings, starts nothing)."""
    from receiver.config import load_config
    from receiver.server import RemediatorServer, ServeOptions

    config = load_config(str(config_path))
    cfg = RemediatorServer(ServeOptions(str(config_path), config, {})).cfg
    return {
        "worker_class": cfg.worker_class_str,
        "worker_connections": cfg.worker_connections,
        "workers": cfg.workers,
        "threads": cfg.threads,
        "keepalive": cfg.keepalive,
        "timeout": cfg.timeout,
    }


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Server:
    kind: str  # baseline | remediator
    process: subprocess.Popen
    url: str
    workdir: Path
    log: Path
    db: Path | None = None
    _workers: list[int] = field(default_factory=list)

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)

    def workers(self) -> list[int]:
        if not self._workers:
            self._workers = _children(self.process.pid)
        return self._workers

    def writers(self) -> list[int]:
        """The workers' children: remediator's journal writer (the baseline has none)."""
        return [pid for worker in self.workers() for pid in _children(worker)]

    def dispatchers(self) -> list[int]:
        """The writers' dispatch processes: their children with the writer's own command
        line (forked, never exec'd); the commands they run have their own."""
        found = []
        for writer in self.writers():
            line = _cmdline(writer)
            found += [pid for pid in _children(writer) if line and _cmdline(pid) == line]
        return found

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master, workers, writers and their
        dispatch processes (not the commands those run)."""
        total = 0.0
        for pid in (self.process.pid, *self.workers(), *self.writers(), *self.dispatchers()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def memory(self) -> dict[str, Any]:
        """VmHWM (peak resident set) and VmRSS of the gunicorn master, its workers, their
        journal writers and the writers' dispatch processes, MB."""

        def mb(kb: int | None) -> float | None:
            return None if kb is None else round(kb / 1024, 1)

        master = self.process.pid
        figures: dict[str, Any] = {
            "master_pid": master,
            "master_peak_mb": mb(_status_kb(master, "VmHWM")),
            "master_rss_mb": mb(_status_kb(master, "VmRSS")),
            "workers": [
                {
                    "pid": pid,
                    "peak_mb": mb(_status_kb(pid, "VmHWM")),
                    "rss_mb": mb(_status_kb(pid, "VmRSS")),
                }
                for pid in self.workers()
            ],
        }
        figures["writers"] = [
            {
                "pid": pid,
                "peak_mb": mb(_status_kb(pid, "VmHWM")),
                "rss_mb": mb(_status_kb(pid, "VmRSS")),
            }
            for pid in self.writers()
        ]
        figures["dispatchers"] = [
            {
                "pid": pid,
                "peak_mb": mb(_status_kb(pid, "VmHWM")),
                "rss_mb": mb(_status_kb(pid, "VmRSS")),
            }
            for pid in self.dispatchers()
        ]
        peaks = [w["peak_mb"] or 0.0 for w in figures["workers"]]
        writer_peaks = [w["peak_mb"] or 0.0 for w in figures["writers"]]
        dispatcher_peaks = [d["peak_mb"] or 0.0 for d in figures["dispatchers"]]
        figures["worker_peak_mb"] = max(peaks) if peaks else None
        figures["writer_peak_mb"] = max(writer_peaks) if writer_peaks else None
        figures["dispatcher_peak_mb"] = max(dispatcher_peaks) if dispatcher_peaks else None
        # VmHWM counts pages shared with the writer (forked) in both: an upper bound.
        figures["sum_of_peaks_mb"] = round(
            (figures["master_peak_mb"] or 0.0)
            + sum(peaks)
            + sum(writer_peaks)
            + sum(dispatcher_peaks),
            1,
        )
        return figures

    def output_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    """Wait until the server's /-/ready answers 200; RuntimeError (with the tail of its
    log) if it exits first or is not ready within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.kind} exited with {server.process.returncode} before it was ready:\n"
                + server.output_tail()
            )
        try:
            with urllib.request.urlopen(server.url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.kind} not ready within {timeout}s:\n{server.output_tail()}")


def stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM (gunicorn's graceful stop: requests in flight finish), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch(kind: str, workdir: Path, config_path: Path, store_url: str | None = None) -> Server:
    """Start `remediator serve` or a baseline (kind: remediator, baseline or
    remediate_baseline) on a free loopback port, its output in workdir/KIND.log, without
    waiting for it to be ready (see wait_ready); the caller stops it (see stop).
    remediator's journal is `store_url`, else a SQLite file workdir/journal.db."""
    listen = f"127.0.0.1:{free_port()}"
    db = None
    if kind == "remediator":
        if store_url is None:
            db = workdir / "journal.db"
            store_url = f"sqlite:///{db}"
        argv = [sys.executable, "-m", "receiver.cli", "serve", "--config", str(config_path)]
        argv += ["--listen", listen, "--store", store_url]
    elif kind in ("baseline", "remediate_baseline"):
        module = "bench.baseline_app" if kind == "baseline" else "bench.remediate_baseline"
        argv = [sys.executable, "-m", module, "--config", str(config_path), "--listen", listen]
    else:
        raise ValueError(kind)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    log = workdir / f"{kind}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    return Server(kind, process, f"http://{listen}", workdir, log, db)


@contextmanager
def server(kind: str, workdir: Path, config_path: Path) -> Iterator[Server]:
    """Start `remediator serve` or a baseline (see launch), wait until it is ready;
    stop it after."""
    running = launch(kind, workdir, config_path)
    try:
        wait_ready(running)
        yield running
    finally:
        stop(running.process)


@contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"remediator-bench-{prefix}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"  (kept {path})", file=sys.stderr)
        else:
            for child in sorted(path.rglob("*"), reverse=True):
                child.unlink() if not child.is_dir() else child.rmdir()
            path.rmdir()


# ---------------------------------------------------------------- journal


class Journal:
    """A look at the SQLite journal; it only reads (WAL: reads never block the server)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, timeout=30)

    def scalar(self, sql: str, *args: Any) -> Any:
        return self.conn.execute(sql, args).fetchone()[0]

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self.conn.close()

    def wait_settled(self, timeout: float, interval: float = 0.2) -> float | None:
        """Seconds until no action is planned or running; None if the timeout passed."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            busy = self.scalar(
                "SELECT COUNT(*) FROM actions WHERE status IN ('planned', 'running')"
            )
            if not busy:
                return time.monotonic() - start
            time.sleep(interval)
        return None

    def wait_judged(self, timeout: float, interval: float = 0.2) -> float | None:
        """Seconds until the dispatcher has judged every planned action: none running and
        none planned that no gate has looked at yet (a gate that delays an action, as
        `locked` and `cooldown` do since issue 14, journals what it waits for in
        `waiting`); None if the timeout passed."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            busy = self.scalar(
                "SELECT COUNT(*) FROM actions WHERE status = 'running' "
                "OR (status = 'planned' AND waiting IS NULL)"
            )
            if not busy:
                return time.monotonic() - start
            time.sleep(interval)
        return None


# ---------------------------------------------------------------- HTTP client


class Connection:
    """One keep-alive HTTP/1.1 connection (like one of Alertmanager's), reconnecting on
    failure; post() returns (status, body, seconds)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body=body, headers=AUTH_HEADERS)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a keep-alive connection the server closed before this request: retry once
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def post_all(
    server: Server, bodies: Sequence[bytes], concurrency: int
) -> tuple[float, list[tuple[int, bytes]]]:
    """POST every body (closed loop, `concurrency` keep-alive connections, each sending
    its next body when the previous one is answered). Returns (seconds, answers)."""
    host, port = server.host_port
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)
    lock = threading.Lock()
    next_index = [0]

    def work() -> None:
        conn = Connection(host, port)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(bodies):
                    return
                try:
                    answers[i] = conn.post("/webhook", bodies[i])
                except OSError as exc:
                    answers[i] = (-1, str(exc).encode())
                    conn.close()
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, answers


# ---------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (readable in a terminal too)."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def machine() -> dict[str, Any]:
    import flask
    import gunicorn

    cpu = ""
    try:
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                cpu = text_line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
        "flask": flask.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def write_result(out: Path, name: str, result: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path
