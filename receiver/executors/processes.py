"""Find, wait for and kill a command's process group, even after its parent has died.

The command executor starts each program as the leader of a new session and process
group (pgid = the leader's pid). When the process that started it dies (kill -9 of the
journal writer), the group keeps running, and the next dispatcher must know whether it
still does before the crash rule re-runs anything on the same target. A pid alone
cannot say so, since pids are reused; so the executor records a `ProcessIdentity`:

    host + boot id   which machine, and which boot of it (pids restart at a reboot)
    pgid             the leader's pid, which is also the group's id
    start_ticks      the leader's start time, field 22 of /proc/<pid>/stat (clock ticks
                     since boot): a reused pid has another one

Linux frees a pid number only once no process uses it as pid, process group id or
session id, so while any member of the group lives, the number cannot name anything
else. Hence `group_state`:

    leader alive with the recorded start time           -> RUNNING
    another process now has that pid                    -> GONE (the number was freed)
    no leader (or a zombie one), live members of pgid   -> RUNNING (its children)
    nothing                                             -> GONE
    recorded on another host or boot                    -> ELSEWHERE (cannot tell here)

Linux only (/proc); elsewhere `identify` returns None and nothing is recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
BOOT_ID = PROC / "sys/kernel/random/boot_id"

RUNNING = "running"
GONE = "gone"
ELSEWHERE = "elsewhere"


@dataclass(frozen=True)
class ProcessIdentity:
    """What identifies a started command's process group across a crash of its parent.

    `started_at` is wall-clock seconds (epoch) when it was started, for its timeout."""

    host: str
    boot_id: str
    pgid: int
    start_ticks: int
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        """The identity as journaled (JSON object of its five fields). Built by hand:
        `dataclasses.asdict` copies recursively: 8-19 us per command started, against 0.2."""
        return {
            "host": self.host,
            "boot_id": self.boot_id,
            "pgid": self.pgid,
            "start_ticks": self.start_ticks,
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessIdentity | None:
        """None when data is not a recorded identity (an older or damaged journal row)."""
        try:
            return cls(
                str(data["host"]),
                str(data["boot_id"]),
                int(data["pgid"]),
                int(data["start_ticks"]),
                float(data["started_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class _Stat:
    state: str
    pgrp: int
    start_ticks: int


def _stat(pid: int) -> _Stat | None:
    """Fields 3, 5 and 22 of /proc/<pid>/stat; None when there is no such process.
    Read with os.read: a command's start reads it once, and a text file object costs
    more than the read (21 against 8 us)."""
    try:
        fd = os.open(f"{PROC}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096).decode("ascii", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    # comm (field 2) is in parentheses and may itself hold spaces and parentheses
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return _Stat(fields[0], int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


_boot_ids: dict[Path, str] = {}  # read once: a process cannot outlive its boot


def _boot_id() -> str:
    """This boot's id ("" when unknown), read once per process (17 us a read)."""
    known = _boot_ids.get(BOOT_ID)
    if known is None:
        try:
            known = BOOT_ID.read_text(encoding="ascii").strip()
        except OSError:
            known = ""
        _boot_ids[BOOT_ID] = known
    return known


def identify(pid: int, started_at: float) -> ProcessIdentity | None:
    """The identity of a group leader just started (pid == pgid); None without /proc."""
    stat = _stat(pid)
    if stat is None:
        return None
    return ProcessIdentity(socket.gethostname(), _boot_id(), pid, stat.start_ticks, started_at)


def _live_members(pgid: int, not_before: int) -> list[int]:
    """Pids of living (non-zombie) processes in group pgid started no earlier than the
    leader; a scan of /proc, used only by crash recovery."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat and stat.pgrp == pgid and stat.state != "Z" and stat.start_ticks >= not_before:
            members.append(int(entry.name))
    return members


def group_state(identity: ProcessIdentity) -> str:
    """RUNNING, GONE or ELSEWHERE, by the rule in the module docstring."""
    if identity.host != socket.gethostname() or identity.boot_id != _boot_id():
        # Same host, another boot: everything it ran is gone.
        return GONE if identity.host == socket.gethostname() else ELSEWHERE
    leader = _stat(identity.pgid)
    if leader is not None and leader.start_ticks != identity.start_ticks:
        return GONE  # another process has the number: it was freed, the group is gone
    if leader is not None and leader.state != "Z":
        return RUNNING
    return _members_state(identity)


def _members_state(identity: ProcessIdentity) -> str:
    return RUNNING if _live_members(identity.pgid, identity.start_ticks) else GONE


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send sig to a whole process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # members that are not ours: nothing we may do
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process (a zombie too) is left in group pgid."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_identified(identity: ProcessIdentity, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after grace; only while it is still the one recorded
    (checked before each signal, so a freed and reused pgid is never signalled)."""
    if group_state(identity) != RUNNING:
        return
    signal_group(identity.pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and group_state(identity) == RUNNING:
        time.sleep(0.05)
    if group_state(identity) == RUNNING:
        with contextlib.suppress(OSError):
            signal_group(identity.pgid, signal.SIGKILL)
