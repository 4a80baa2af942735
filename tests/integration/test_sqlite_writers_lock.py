"""Write transactions of several processes on one SQLite journal queue on the lock file
beside it (`<journal>-writers`, store/sqlite.py), not in SQLite's busy handler.

A process holds a write transaction open; another process's write transaction must then
wait in flock (the kernel lists it as a blocked waiter in /proc/locks) for as long as it
is held, longer than that process's busy timeout, and then commit: no "database is
locked". And a forked child, whose parent used the store before the fork, must open a
lock of its own: a shared one would let it straight through to SQLite's busy handler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver.store import open_store
from tests.support.journal import wait_for

pytestmark = pytest.mark.integration

#: The other process: a busy timeout far shorter than the time the lock is held, so that
#: if it waited in SQLite's busy handler it would fail with "database is locked".
WRITE = """
import sys
import receiver.store.sqlite as sqlite
import receiver.store.sqlitefile as sqlitefile
sqlite.BUSY_TIMEOUT_MS = sqlitefile.BUSY_TIMEOUT_MS = 200
from receiver.store import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
with store.transaction() as tx:
    tx.execute("INSERT INTO probe (who) VALUES ('other')")
print("committed", flush=True)
"""

#: One process that uses the store, then forks: the parent holds a write transaction
#: until told on stdin, while the child tries to write.
FORKED = """
import os, sys
import receiver.store.sqlite as sqlite
import receiver.store.sqlitefile as sqlitefile
sqlite.BUSY_TIMEOUT_MS = sqlitefile.BUSY_TIMEOUT_MS = 200
from receiver.store import open_store
store = open_store(sys.argv[1])
with store.transaction() as tx:  # the lock file is open in the parent before the fork
    tx.execute("INSERT INTO probe (who) VALUES ('before')")
go_read, go_write = os.pipe()
pid = os.fork()  # outside any transaction, as the journal writer forks
if pid == 0:
    os.read(go_read, 1)  # the parent holds its write transaction now
    try:
        with store.transaction() as child_tx:
            child_tx.execute("INSERT INTO probe (who) VALUES ('child')")
        os._exit(0)
    except BaseException as exc:
        print("child failed:", exc, flush=True)
        os._exit(1)
with store.transaction() as tx:
    tx.execute("INSERT INTO probe (who) VALUES ('parent')")
    os.write(go_write, b"x")
    print("forked", pid, flush=True)
    sys.stdin.readline()
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
"""


def _script(code: str, journal: str) -> subprocess.Popen[str]:
    """`python -c code journal`, talked to line by line over its stdin and stdout."""
    return subprocess.Popen(
        [sys.executable, "-c", code, journal],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _blocked_on(lock_path: Path, pid: int) -> bool:
    """Whether pid waits for an flock on lock_path (a `->` line of /proc/locks)."""
    inode = lock_path.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields:
            at = fields.index("->")
            waiter, where = int(fields[at + 4]), fields[at + 5]
            if waiter == pid and int(where.split(":")[2]) == inode:
                return True
    return False


@pytest.fixture
def journal(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    store = open_store(url)
    with store.transaction() as tx:
        tx.execute("CREATE TABLE probe (who TEXT)")
    store.close()
    return url


def _rows(url: str) -> list[str]:
    store = open_store(url)
    try:
        with store.transaction(write=False) as tx:
            return [row[0] for row in tx.execute("SELECT who FROM probe ORDER BY rowid")]
    finally:
        store.close()


def test_a_write_transaction_waits_for_another_processs_and_then_commits(journal, tmp_path):
    store = open_store(journal)
    lock_path = store.lock_path
    other = _script(WRITE, journal)
    try:
        assert other.stdout.readline().strip() == "ready"
        with store.transaction() as tx:
            tx.execute("INSERT INTO probe (who) VALUES ('holder')")
            other.stdin.write("go\n")
            other.stdin.flush()
            wait_for(lambda: _blocked_on(lock_path, other.pid), 20, "the other writer to queue")
            time.sleep(1.0)  # five times its busy timeout: SQLite's handler would give up
            assert other.poll() is None
        out, _ = other.communicate(timeout=20)
    finally:
        store.close()
        if other.poll() is None:
            other.kill()
    assert other.returncode == 0, out
    assert out.strip() == "committed"
    assert _rows(journal) == ["holder", "other"]


def test_a_forked_child_opens_a_lock_of_its_own(journal):
    process = _script(FORKED, journal)
    try:
        first = process.stdout.readline().split()
        assert first[0] == "forked", first
        child = int(first[1])
        lock_path = Path(journal.removeprefix("sqlite:///") + "-writers")
        wait_for(lambda: _blocked_on(lock_path, child), 20, "the child to queue on the lock")
        time.sleep(1.0)  # past the child's busy timeout
        process.stdin.write("go\n")
        process.stdin.flush()
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out
    assert out.strip() == "child exit 0", out
    assert _rows(journal) == ["before", "parent", "child"]
