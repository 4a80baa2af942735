"""The processes of a running `remediator serve`: gunicorn master, its worker, the
worker's journal writer and the writer's dispatch process, found through /proc (Linux)."""

from __future__ import annotations

import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, ...]; the name may hold spaces


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has left already


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


#: A journal writer forked from the worker keeps the worker's command line and takes this
#: name (receiver/writer/client.py, FORKED_NAME); an executed one (a restart) runs
#: `python -m receiver.writer.process`. Its dispatch process, forked, carries either.
WRITER_COMMAND = "receiver.writer.process"
FORKED_WRITER_NAME = "journal-writer"


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def is_writer(pid: int) -> bool:
    """A journal writer or its dispatch process (forked or executed)."""
    return WRITER_COMMAND in cmdline(pid) or comm(pid) == FORKED_WRITER_NAME


def worker_of(master: int, timeout: float = 20.0) -> int:
    """The gunicorn worker of this master (remediator serve runs exactly one)."""
    return _one(lambda: children(master), f"a worker of {master}", timeout)


def writers_of(worker: int) -> list[int]:
    """The journal writers this worker runs now (one, or none while it restarts one)."""
    return [pid for pid in children(worker) if is_writer(pid)]


def writer_of(worker: int, timeout: float = 20.0) -> int:
    """The journal writer started by this worker."""
    return _one(lambda: writers_of(worker), f"a journal writer of {worker}", timeout)


def dispatcher_of(writer: int, timeout: float = 20.0) -> int:
    """The dispatch process forked by this journal writer (the same command line and
    name; the commands it runs have their own once exec'd)."""

    def found() -> list[int]:
        return [pid for pid in children(writer) if is_writer(pid)]

    return _one(found, f"a dispatch process of {writer}", timeout)


def _one(find, what: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if len(found) == 1:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"expected one {what}, found {found}")
        time.sleep(0.05)
