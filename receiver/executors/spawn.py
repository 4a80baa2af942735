"""Start a program with os.posix_spawn: argv only, its own session, output to a pipe.

The command executor's way to start a remediation program: the same child as
`subprocess.Popen(argv, stdin=DEVNULL, stdout=PIPE, stderr=STDOUT, env=env,
start_new_session=True, close_fds=True)` gave, for less of the parent's CPU
(bench/spawn.py: 23-38% less per spawn, 30-65 us; bench/README.md, "Ingest per alert,
and the cheapest safe spawn"):

    argv             a list, exec'd directly: never a shell
    program          argv[0] as it is when it holds a `/`; else looked up in the
                     child's PATH (from `env`), folder by folder, as Popen does
    session, group   setsid: the child leads a new session and process group
                     (pgid = pid), so a timeout can kill everything it started
    stdin            /dev/null
    stdout, stderr   the write end of one pipe; the parent reads `Child.stdout`
    environment      exactly `env`
    signals          SIGPIPE and SIGXFSZ back to their defaults (Python ignores them;
                     an ignored signal stays ignored across exec), as Popen's
                     restore_signals does; the signal mask is the caller's, as with Popen
    descriptors      0, 1 and 2 only (see below)

Descriptors. Popen closed every other descriptor in the child; posix_spawn leaves
that to close-on-exec, which every descriptor Python opens has (PEP 446), as have
SQLite's (O_CLOEXEC) and libpq's. What this process was given inheritable by its
parent (a shell's or a supervisor's descriptors passed down a fork) is made
close-on-exec once, at the first spawn in each process (`seal_inherited`): that is
what a per-spawn scan of /proc/self/fd would find, and such a scan costs about 1 us per
open descriptor, most of what posix_spawn saves (the `posix_spawn + scan` row). A
descriptor made inheritable on purpose later would be passed on: nothing here does so.

Errors are Popen's: OSError from exec (FileNotFoundError, PermissionError, E2BIG ...)
raised in the caller, ValueError for a NUL byte in argv or env.
"""

from __future__ import annotations

import errno
import io
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SELF_FDS = "/proc/self/fd"
#: exec errors that mean "not in this PATH folder" (any other is kept to be raised)
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR)
#: signals Python ignores that the child gets back at their default (Popen's list)
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
_sealed_in: int | None = None  # the pid whose inherited descriptors were sealed
_seal_lock = threading.Lock()


@dataclass
class Child:
    """A spawned program: `pid` (also its session and process group id), `stdout` the
    read end of its stdout/stderr pipe (the caller closes it), `returncode` once reaped
    (negative: killed by that signal). Offers what the executor uses of
    subprocess.Popen: poll(), wait(timeout), stdout, returncode, pid.

    `pidfd` (Linux 5.3+, else None) becomes readable when the program exits, so that
    wait(timeout) wakes at its exit instead of looking every few milliseconds as
    Popen.wait does; it is closed once the program is reaped."""

    pid: int
    stdout: io.FileIO
    pidfd: int | None = None
    returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code if the program has ended (reaping it), else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return self._reaped(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit code once the program ends; subprocess.TimeoutExpired after
        `timeout` seconds (None: no limit)."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            self._until_exit(timeout)
        _, status = os.waitpid(self.pid, 0)
        return self._reaped(status)

    def _until_exit(self, timeout: float) -> None:
        """Return once the program has exited (not reaped); TimeoutExpired after
        `timeout` seconds. Without a pidfd: looks with sleeps growing from 0.5 ms to
        50 ms, as Popen.wait does."""
        if self.pidfd is not None:
            exited = select.poll()  # not select(): that refuses descriptors past 1023
            exited.register(self.pidfd, select.POLLIN)
            if not exited.poll(max(timeout, 0.0) * 1000):
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            return
        end, delay = time.monotonic() + timeout, 0.0005
        while os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _reaped(self, status: int) -> int:
        self.returncode = os.waitstatus_to_exitcode(status)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        return self.returncode


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> Child:
    """Start argv (see the module docstring) and return it running. Raises OSError
    when it cannot be started, ValueError for a NUL byte in argv or env."""
    seal_inherited()
    read_end, write_end = os.pipe()  # both close-on-exec; dup2 clears it on 1 and 2
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_DUP2, write_end, 2),
        ]
        pid = _spawn_in_path(list(argv), dict(env), actions)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return Child(pid, io.FileIO(read_end, "rb"), _pidfd(pid))


def _pidfd(pid: int) -> int | None:
    """A descriptor readable once `pid` exits (close-on-exec), or None on a system
    without pidfd_open (Linux before 5.3, other systems)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def seal_inherited() -> None:
    """Once per process: make close-on-exec every descriptor above 2 that exec would
    pass on (ones this process inherited inheritable; Python's own never are)."""
    global _sealed_in
    pid = os.getpid()
    if _sealed_in == pid:
        return
    with _seal_lock:
        if _sealed_in == pid:
            return
        for fd in inheritable_fds():
            os.set_inheritable(fd, False)
        _sealed_in = pid


def inheritable_fds() -> list[int]:
    """This process's descriptors above 2 that exec would pass on (a scan of /proc)."""
    found = []
    for name in os.listdir(_SELF_FDS):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                continue
    return found


def _spawn_in_path(argv: list[str], env: dict[str, str], actions: list[tuple[Any, ...]]) -> int:
    """posix_spawn argv[0], searched in env's PATH when it holds no `/`: the first error
    other than "not there" (ENOENT, ENOTDIR) is raised if no folder has it, as Popen does."""
    program = argv[0]
    if "/" in program:
        return _posix_spawn(program, argv, env, actions)
    first: OSError | None = None
    for folder in os.get_exec_path(env):
        path = os.path.join(folder, program)
        if not os.path.exists(path):
            continue  # exec would say ENOENT or ENOTDIR: spare a spawn that must fail
        try:
            return _posix_spawn(path, argv, env, actions)
        except OSError as exc:
            if first is None and exc.errno not in _NOT_THERE:
                first = exc
    if first is not None:
        raise first
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _posix_spawn(
    path: str, argv: list[str], env: dict[str, str], actions: list[tuple[Any, ...]]
) -> int:
    return os.posix_spawn(
        path, argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS
    )
