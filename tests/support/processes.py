"""Start real components (Alertmanager, Prometheus, the receiver) on free loopback ports."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


#: Where test servers listen: below the kernel's ephemeral range (32768-60999 by
#: default), which the OS hands out as the local port of every outgoing connection. A
#: port from that range (bind to 0) could be taken by a client's connection between the
#: check and the server's bind (it happened in CI: "Address already in use").
PORTS = range(10_000, 32_768)
_next_port = 0


def free_port() -> int:
    """A loopback port free now, from this pytest worker's share of PORTS (xdist workers
    split it, so two workers never hand out the same port), each port handed out once
    per process, starting at a random place (a run right after another finds its ports
    in TIME_WAIT less often). Raises RuntimeError when the share has none left free."""
    global _next_port
    share = _worker_share()
    if not _next_port:
        _next_port = random.randrange(len(share))
    for _ in range(len(share)):
        port = share[_next_port % len(share)]
        _next_port += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {share}")


def _worker_share() -> range:
    """This pytest-xdist worker's slice of PORTS (all of it outside xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    size = len(PORTS) // max(count, 1)
    start = PORTS.start + (index % max(count, 1)) * size
    return range(start, start + size)


#: Seconds a started server gets to answer: generous, since a loaded 2-core machine can
#: take several seconds to start Python processes; a process that died fails at once.
READY_TIMEOUT = 60.0


def wait_http(
    url: str, timeout: float = READY_TIMEOUT, process: subprocess.Popen | None = None
) -> None:
    """Poll until url answers 200; fail early with the process's output if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`remediator ARGS...` run to its end from the repository's root (60 s at most),
    its output captured as text; `env` replaces the environment when given."""
    return subprocess.run(
        [sys.executable, "-m", "receiver.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def checked_config(path: Path, text: str) -> Path:
    """Write a config to `path` and require `remediator check` to accept it."""
    path.write_text(text)
    checked = run_cli("check", "--config", str(path))
    assert checked.returncode == 0, checked.stderr
    return path


def explain(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`remediator explain --config CONFIG ARGS...`, required to succeed."""
    result = run_cli("explain", "--config", str(config), *args)
    assert result.returncode == 0, result.stderr
    return result


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: `make test` installs it (Debian package)")
    return path


@dataclass
class Running:
    process: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(argv: list[str], url: str, log: Path, ready_path: str, **kwargs) -> Iterator[Running]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    proc = Running(process, url, log)
    try:
        try:
            wait_http(url + ready_path, process=process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- {argv[0]} output ---\n{proc.output()}") from exc
        yield proc
    finally:
        stop(process)


def alertmanager_config(
    webhook_url: str,
    *,
    credentials_file: Path | None = None,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    auth = ""
    if credentials_file is not None:
        auth = (
            "\n      http_config:\n        authorization:"
            f"\n          credentials_file: {credentials_file}"
        )
    return f"""route:
  receiver: remediator
  group_by: ['alertname', 'service']
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: remediator
    webhook_configs:
    - url: {webhook_url}
      send_resolved: true{auth}
"""


@contextmanager
def alertmanager(
    workdir: Path, config_text: str, *, extra_args: list[str] | None = None
) -> Iterator[Running]:
    """A real Alertmanager on a free port; clustering off unless extra_args enable it."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(config_text)
    port = free_port()
    argv = [
        binary("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *(extra_args or ["--cluster.listen-address="]),
    ]
    with running(argv, f"http://127.0.0.1:{port}", workdir / "alertmanager.log", "/-/ready") as am:
        yield am


def cluster_args(own: int, peer: int | None, peer_timeout: float) -> list[str]:
    """Alertmanager flags clustering the member on loopback port `own` with the one on
    `peer`, with fast gossip (50 ms) and probes; `peer_timeout` (seconds) is how long a
    later member waits for an earlier one's notification log before it sends too. With
    `peer` None: no clustering at all (a partitioned pair, each member delivers
    everything)."""
    if peer is None:
        return ["--cluster.listen-address="]
    return [
        f"--cluster.listen-address=127.0.0.1:{own}",
        f"--cluster.advertise-address=127.0.0.1:{own}",
        f"--cluster.peer=127.0.0.1:{peer}",
        "--cluster.gossip-interval=50ms",
        "--cluster.pushpull-interval=1s",
        "--cluster.settle-timeout=2s",
        f"--cluster.peer-timeout={peer_timeout:g}s",
        "--cluster.probe-interval=200ms",
    ]


def cluster_peers(am: Running) -> int:
    """How many members the Alertmanager sees in its cluster (itself included)."""
    return len(requests.get(f"{am.url}/api/v2/status", timeout=5).json()["cluster"]["peers"])


def webhook_deliveries(am: Running) -> tuple[float, float]:
    """(attempted, failed) webhook notifications, from Alertmanager's own metrics."""
    attempted = failed = 0.0
    for line in requests.get(f"{am.url}/metrics", timeout=5).text.splitlines():
        if 'integration="webhook"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("alertmanager_notifications_total"):
            attempted += value
        elif line.startswith("alertmanager_notifications_failed_total"):
            failed += value
    return attempted, failed


@contextmanager
def prometheus(workdir: Path, config_text: str, rule_files: dict[str, str] | None = None):
    """A real Prometheus on a free port with the given config (and rule files beside it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in (rule_files or {}).items():
        (workdir / name).write_text(text)
    config = workdir / "prometheus.yml"
    config.write_text(config_text)
    port = free_port()
    argv = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    with running(argv, f"http://127.0.0.1:{port}", workdir / "prometheus.log", "/-/ready") as prom:
        yield prom


def remediator_argv(
    config: Path, listen: str, store: str, *extra: str, program: Sequence[str] = ()
) -> list[str]:
    """The argv of `remediator serve --config --listen --store` plus `extra` flags;
    `program` is the command that runs it (default: this Python's `-m receiver.cli`)."""
    return [
        *(program or (sys.executable, "-m", "receiver.cli")),
        "serve",
        "--config",
        str(config),
        "--listen",
        listen,
        "--store",
        store,
        *extra,
    ]


@contextmanager
def remediator(
    workdir: Path, config: Path, store: str, *extra: str, log_name: str = "remediator.log"
) -> Iterator[Running]:
    """`remediator serve` as a real subprocess (gunicorn), ready when /-/ready answers."""
    port = free_port()
    argv = remediator_argv(config, f"127.0.0.1:{port}", store, *extra)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with running(
        argv, f"http://127.0.0.1:{port}", workdir / log_name, "/-/ready", cwd=workdir, env=env
    ) as server:
        yield server
