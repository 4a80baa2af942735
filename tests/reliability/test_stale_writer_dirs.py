"""Issue 11, item 12: `kill -9` of master and worker left `remediator-writer-*` behind
in the temp directory. A start removes those whose worker is dead, never a live one's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.journal import wait_for
from tests.support.pids import alive, worker_of, writer_of
from tests.support.processes import free_port, remediator_argv, running
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

STRATEGIES = AUTH_SERVER + LOG_RESTART


def serve(tmp_path: Path, temp: Path, name: str):
    """`remediator serve` with its own temp directory (TMPDIR), so only it is looked at."""
    config = write_config(tmp_path, STRATEGIES)
    port = free_port()
    argv = remediator_argv(config, f"127.0.0.1:{port}", f"sqlite:///{tmp_path / 'journal.db'}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(temp)}
    url = f"http://127.0.0.1:{port}"
    return running(argv, url, tmp_path / f"{name}.log", "/-/ready", cwd=tmp_path, env=env)


def writer_dirs(temp: Path) -> set[str]:
    return {path.name for path in temp.glob("remediator-writer-*")}


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_a_start_removes_dirs_of_dead_workers_and_keeps_live_ones(tmp_path: Path) -> None:
    # A short TMPDIR of its own: pytest's tmp_path is too deep for a socket path, and
    # the server would then (rightly) put its directory elsewhere.
    temp = Path(tempfile.mkdtemp(prefix="rw-", dir="/tmp"))
    try:
        stale_and_live(tmp_path, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def stale_and_live(tmp_path: Path, temp: Path) -> None:
    stale = temp / f"remediator-writer-{dead_pid()}-abc123"
    stale.mkdir(mode=0o700)
    (stale / "config.yml").write_text("left behind\n")
    live = temp / f"remediator-writer-{os.getpid()}-def456"  # this test process: alive
    live.mkdir(mode=0o700)
    (live / "config.yml").write_text("in use\n")

    with serve(tmp_path, temp, "killed") as killed:
        worker = worker_of(killed.process.pid)
        writer = writer_of(worker)
        assert not stale.exists()
        assert (live / "config.yml").read_text() == "in use\n"
        mine = writer_dirs(temp) - {live.name}
        assert len(mine) == 1 and mine.copy().pop().startswith(f"remediator-writer-{worker}-"), mine
        [left] = mine
        # The case: kill -9 master and worker; their writer's directory stays...
        os.kill(killed.process.pid, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not alive(worker) and not alive(writer), 20, "worker and writer gone")
    assert writer_dirs(temp) == {live.name, left}

    with serve(tmp_path, temp, "next") as server:  # ...until the next start
        worker = worker_of(server.process.pid)
        own = writer_dirs(temp) - {live.name}
        assert len(own) == 1 and own.pop().startswith(f"remediator-writer-{worker}-"), own
        assert (live / "config.yml").read_text() == "in use\n"
    assert not (temp / left).exists()
