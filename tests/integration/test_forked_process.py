"""ForkedProcess (writer/client.py): the handle on a forked journal writer behaves as
subprocess.Popen does for what WriterProcess uses: poll, wait, kill, returncode."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from receiver.writer.client import ForkedProcess


def forked(code: int, sleep: float = 0.0) -> ForkedProcess:
    """A real child that sleeps, then exits with `code`."""
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        time.sleep(sleep)
        os._exit(code)
    return ForkedProcess(pid)


def test_wait_returns_the_exit_status_and_poll_keeps_it() -> None:
    child = forked(3)
    assert child.wait() == 3
    assert child.poll() == 3 and child.returncode == 3


def test_a_killed_child_returns_minus_the_signal_as_popen_does() -> None:
    child = forked(0, sleep=60)
    assert child.poll() is None
    child.kill()
    assert child.wait() == -signal.SIGKILL
    child.kill()  # reaped: never signals the pid again, which may be reused


def test_wait_with_a_timeout_raises_timeout_expired_while_it_runs() -> None:
    child = forked(0, sleep=60)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.05)
    child.kill()
    assert child.wait(10) == -signal.SIGKILL


def test_poll_from_another_thread_never_reaps_what_a_blocked_wait_reaps() -> None:
    child = forked(7, sleep=0.5)
    waited: list[int] = []
    waiter = threading.Thread(target=lambda: waited.append(child.wait()))
    waiter.start()
    while child.poll() is None:  # never raises ChildProcessError, never returns a wrong 0
        time.sleep(0.01)
    waiter.join(10)
    assert waited == [7] and child.returncode == 7
