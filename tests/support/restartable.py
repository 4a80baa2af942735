"""`remediator serve` that a test can SIGKILL and start again on the same port and store.

The server runs in its own session, so `kill9()` kills the gunicorn master and its
worker together, exactly like a machine losing the process (no shutdown handlers run).
Commands started by the command executor run in sessions of their own and survive the
kill, as they would in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.processes import READY_TIMEOUT, free_port, remediator_argv, wait_http


class RestartableServer:
    def __init__(self, workdir: Path, config: Path, store: str, *extra: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = remediator_argv(config, f"127.0.0.1:{self.port}", store, *extra)
        self.log = workdir / "remediator.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        self.starts += 1
        try:
            wait_http(f"{self.url}/-/ready", timeout=timeout, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- remediator output ---\n{self.output()}") from exc

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole server (master, worker, journal writer) and reap it."""
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()
        except ProcessLookupError:
            pass

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def restartable_remediator(
    workdir: Path, config: Path, store: str, *extra: str
) -> Iterator[RestartableServer]:
    server = RestartableServer(workdir, config, store, *extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()
