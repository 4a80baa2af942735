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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.processes import READY_TIMEOUT, free_port, remediator_argv, wait_http


class RestartableServer:
    """One `remediator serve` in its own session, working dir (`workdir`) and loopback
    port, appending every start's output to workdir/remediator.log.

    `name` labels its errors; `program` is the command that runs `remediator` (see
    processes.remediator_argv); stop() gives a SIGTERM `stop_timeout` seconds before
    it SIGKILLs the process group."""

    def __init__(
        self,
        workdir: Path,
        config: Path,
        store: str,
        *extra: str,
        name: str = "remediator",
        program: Sequence[str] = (),
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        listen = f"127.0.0.1:{self.port}"
        self.argv = remediator_argv(config, listen, store, *extra, program=program)
        self.log = workdir / "remediator.log"
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def launch(self) -> None:
        """Start the process (without waiting for it to be ready: see ready())."""
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

    def ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until /-/ready answers; RuntimeError (with the server's output) if the
        process exits first or `timeout` seconds pass."""
        try:
            wait_http(f"{self.url}/-/ready", timeout=timeout, process=self.process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self.name}: {exc}\n--- its output ---\n{self.output()}") from exc

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        self.launch()
        self.ready(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group (master, worker, journal writer, dispatch
        process) and reap it."""
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(self.stop_timeout)
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
