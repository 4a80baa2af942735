"""The first journal writer is forked from the worker, sharing its pages (issue 16):
it must hold nothing of the worker's that outlives it (the listening socket above all),
and a writer restarted after a kill -9 is executed as before and works.

SIGTERM to the whole process group with a forked writer: test_command_lifecycle.py
(sigterm_and_wait) and test_reload_signals.py cover it; they run with this writer."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.journal import all_actions, open_journal, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.pids import (
    FORKED_WRITER_NAME,
    WRITER_COMMAND,
    alive,
    cmdline,
    comm,
    dispatcher_of,
    worker_of,
    writer_of,
    writers_of,
)
from tests.support.processes import remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

STRATEGIES = AUTH_SERVER + LOG_RESTART


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on this TCP port (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(inode)
    return found


def socket_inodes(pid: int) -> set[str]:
    """The socket inodes among this process's open descriptors."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def exe(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


def fire(url: str, service: str) -> None:
    body = notification(alert("ServiceDown", service=service, starts_at="2026-05-01T00:00:00Z"))
    response = post_webhook(url, body)
    assert response.status_code == 200, response.text


def test_the_first_writer_is_forked_and_holds_no_listening_socket(tmp_path: Path) -> None:
    config = write_config(tmp_path, STRATEGIES)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        master = server.process.pid
        worker = worker_of(master)
        writer = writer_of(worker)
        dispatch = dispatcher_of(writer)
        # Forked: the worker's interpreter and command line, and the writer's own name.
        assert comm(writer) == FORKED_WRITER_NAME
        assert WRITER_COMMAND not in cmdline(writer)
        assert cmdline(writer) == cmdline(worker) and exe(writer) == exe(worker)
        # The listener is the master's (and the worker's), never the writer's nor its
        # dispatch process's: they would keep the port bound after the server left.
        port = int(server.url.rsplit(":", 1)[1])
        listeners = listening_inodes(port)
        assert listeners and listeners <= socket_inodes(master)
        assert listeners <= socket_inodes(worker)
        assert not listeners & socket_inodes(writer)
        assert not listeners & socket_inodes(dispatch)
        fire(server.url, "web")
        journal = open_journal(store)
        wait_for(lambda: [a["status"] for a in all_actions(journal)] == ["succeeded"], 30)


def test_a_writer_restarted_after_kill_9_is_executed_and_works(tmp_path: Path) -> None:
    config = write_config(tmp_path, STRATEGIES)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        worker = worker_of(server.process.pid)
        first = writer_of(worker)
        assert comm(first) == FORKED_WRITER_NAME
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not alive(first), 20, "the forked writer gone")
        [second] = wait_for(lambda: [p for p in writers_of(worker) if p != first], 30, "a writer")
        # The worker's threads run by now: a fork could inherit a held lock, so exec.
        assert second != first and WRITER_COMMAND in cmdline(second)
        dispatcher_of(second)

        body = notification(alert("ServiceDown", service="api", starts_at="2026-05-01T00:00:00Z"))
        wait_for(lambda: post_webhook(server.url, body).status_code == 200, 30, "a 200")
        journal = open_journal(store)
        wait_for(lambda: [a["status"] for a in all_actions(journal)] == ["succeeded"], 30)
        assert alive(worker)  # the same worker throughout
