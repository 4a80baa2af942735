"""The dispatcher's idle threads (receiver/dispatcher.py `_IdlePool`): who claims, who
waits for a hand-over, who is woken. Real threads, no journal; every wait has a
timeout only so that a broken pool fails the test instead of hanging it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from receiver.dispatcher import _Handed, _IdlePool, _Seat

GUARD = 10.0  # seconds: a wait that lasts this long is a failure, not a measurement


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def waiting(pool: _IdlePool, seat: _Seat, *, queued: bool = False) -> dict[str, Any]:
    """Start a thread that waits on `seat` (timeout far beyond the test); its result
    lands in the returned dict once the wait ends."""
    ended: dict[str, Any] = {}

    def run() -> None:
        ended["handed"] = pool.wait(seat, 60.0, queued=queued)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ended["thread"] = thread
    until(lambda: seat in pool._idle)
    return ended


def handed(number: int) -> _Handed:
    row = SimpleNamespace(id=number)
    return _Handed(config=SimpleNamespace(), row=row, more=False)  # type: ignore[arg-type]


def test_a_claiming_thread_hands_the_reserved_threads_its_extra_actions() -> None:
    pool = _IdlePool()
    claimer, first, second = pool.seat(), pool.seat(), pool.seat()
    one, two = waiting(pool, first), waiting(pool, second)
    reserved = pool.enter(claimer)
    assert reserved == [first, second]
    pool.hand(claimer, reserved, [handed(7)])
    one["thread"].join(GUARD)
    assert one["handed"].row.id == 7
    # the one left without an action goes back to idle, not woken to claim for nothing
    assert second in pool._idle and two["thread"].is_alive()
    pool.stop()
    two["thread"].join(GUARD)
    assert two["handed"] is None


def test_a_thread_that_would_claim_while_another_does_waits_for_the_next_claim() -> None:
    pool = _IdlePool()
    claimer, later = pool.seat(), pool.seat()
    assert pool.enter(claimer) == []
    assert pool.enter(later) is None  # one claim of the pool at a time
    queued = waiting(pool, later, queued=True)
    pool.hand(claimer, [], [])
    queued["thread"].join(GUARD)
    assert queued["handed"] is None  # woken: it claims now
    assert pool.enter(later) == []


def test_a_thread_outside_the_pool_claims_even_while_a_pool_thread_does() -> None:
    pool = _IdlePool()
    claimer = pool.seat()
    assert pool.enter(claimer) == []
    assert pool.enter(None) == []


def test_a_wake_up_finds_one_idle_thread_and_is_owed_when_none_is_idle() -> None:
    pool = _IdlePool()
    pool.size = 4
    first, second = pool.seat(), pool.seat()
    one, two = waiting(pool, first), waiting(pool, second)
    pool.wake(3)  # one thread claims for all: the other stays idle, to be reserved
    until(lambda: "handed" in one or "handed" in two)
    assert len(pool._idle) == 1
    pool.stop()
    for ended in (one, two):
        ended["thread"].join(GUARD)

    busy = _IdlePool()
    busy.size = 4
    busy.wake(2)  # nobody idle: owed to the next threads that would wait
    seat = busy.seat()
    assert busy.wait(seat, 60.0) is None
    assert busy.wait(seat, 60.0) is None
    assert busy._wakeups == 0
