"""Finding a command's process group again after its parent died (executors/processes.py).

Real processes started as the command executor starts them (own session and group). A
pid alone is not an identity: a recorded start time that differs means another process
has the number, and the group is gone.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from receiver.executors.processes import (
    ELSEWHERE,
    GONE,
    RUNNING,
    ProcessIdentity,
    group_state,
    identify,
    kill_identified,
)


@pytest.fixture
def started() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_running_group_is_found_running(started):
    identity = identify(started.pid, time.time())
    assert identity is not None and identity.pgid == started.pid
    assert group_state(identity) == RUNNING


def test_the_identity_survives_the_journal_as_json(started):
    identity = identify(started.pid, time.time())
    assert identity is not None
    assert ProcessIdentity.from_dict(identity.to_dict()) == identity
    assert ProcessIdentity.from_dict({"pgid": "x"}) is None


def test_an_ended_group_is_gone_even_before_it_is_reaped(started):
    identity = identify(started.pid, time.time())
    assert identity is not None
    started.kill()  # not waited for yet: a zombie still holds the pid
    wait_until(lambda: group_state(identity) == GONE)
    started.wait()
    assert group_state(identity) == GONE


def test_another_start_time_means_the_pid_was_reused(started):
    identity = identify(started.pid, time.time())
    assert identity is not None
    reused = replace(identity, start_ticks=identity.start_ticks - 1)
    assert group_state(reused) == GONE


def test_children_left_in_the_group_keep_it_running():
    # the leader exits at once; its child, in the same group, sleeps on
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & exit 0"], start_new_session=True)
    identity = identify(leader.pid, time.time())
    assert identity is not None
    leader.wait()
    assert group_state(identity) == RUNNING
    kill_identified(identity, grace=1.0)
    wait_until(lambda: group_state(identity) == GONE)


def test_a_group_recorded_on_another_host_cannot_be_judged_here(started):
    identity = identify(started.pid, time.time())
    assert identity is not None
    assert group_state(replace(identity, host="elsewhere.example")) == ELSEWHERE


def test_a_group_recorded_before_a_reboot_is_gone(started):
    identity = identify(started.pid, time.time())
    assert identity is not None
    assert group_state(replace(identity, boot_id="another-boot")) == GONE


def test_killing_by_identity_ends_the_whole_group():
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & sleep 30"], start_new_session=True)
    identity = identify(leader.pid, time.time())
    assert identity is not None
    kill_identified(identity, grace=1.0)
    leader.wait(10)
    wait_until(lambda: group_state(identity) == GONE)


def test_a_reused_pid_is_never_signalled(started):
    identity = identify(started.pid, time.time())
    assert identity is not None
    kill_identified(replace(identity, start_ticks=identity.start_ticks - 1), grace=0.1)
    assert started.poll() is None  # not ours by its start time: left alone
