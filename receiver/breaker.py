"""Circuit breaker for remediation strategies, one per (strategy, target).

A remediation that keeps failing (a restart that never fixes the pod, a scale-up the cluster
cannot schedule) must stop being retried on every alert, or the remediator itself becomes the
incident. The breaker is a pure state machine: the caller injects ``now`` (seconds) and
persists the returned ``BreakerState`` wherever it likes, so the logic is testable with plain
floats and survives restarts without a background thread.

Lifecycle::

    closed --(failure_threshold consecutive failures, or failure rate over window)--> open
    open --(recovery_timeout elapsed)--> half_open
    half_open --(success_threshold successes)--> closed
    half_open --(any failure)--> open (opened_at = now)
    any --(reset)--> closed
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


def _require(condition: bool, message: str) -> None:
    """Fail at config load rather than letting a bad threshold silently disable the breaker."""
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class BreakerSettings:
    """Tuning for one breaker; defaults suit slow remediations (minutes, not milliseconds)."""

    failure_threshold: int = 3
    recovery_timeout: float = 600.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    failure_rate_threshold: float | None = None  # 0 < x <= 1; None disables the rate rule
    window: float = 600.0
    minimum_calls: int = 5

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_max_calls", "success_threshold"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)!r}")
        _require(self.minimum_calls >= 1, f"minimum_calls must be >= 1, got {self.minimum_calls!r}")
        # NaN compares false both ways, so it is rejected explicitly rather than slipping through.
        _require(
            not math.isnan(self.recovery_timeout) and self.recovery_timeout >= 0,
            f"recovery_timeout must be >= 0 seconds, got {self.recovery_timeout!r}",
        )
        _require(
            not math.isnan(self.window) and self.window > 0,
            f"window must be > 0 seconds, got {self.window!r}",
        )
        rate = self.failure_rate_threshold
        _require(
            rate is None or 0 < rate <= 1,
            f"failure_rate_threshold must be in (0, 1] or None, got {rate!r}",
        )


@dataclass(frozen=True)
class BreakerState:
    """Everything the breaker needs to remember; small enough to store as one JSON blob."""

    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    half_open_in_flight: int = 0
    half_open_successes: int = 0
    calls: tuple[tuple[float, bool], ...] = ()  # (time, succeeded) within the window, oldest first

    def __post_init__(self) -> None:
        _require(self.state in STATES, f"state must be one of {STATES}, got {self.state!r}")

    def to_dict(self) -> dict:
        """Plain JSON types only, so any store (file, SQLite, Postgres JSONB) can hold it."""
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "opened_at": self.opened_at,
            "half_open_in_flight": self.half_open_in_flight,
            "half_open_successes": self.half_open_successes,
            "calls": [[t, ok] for t, ok in self.calls],
        }

    @classmethod
    def from_dict(cls, data: dict) -> BreakerState:
        """Missing keys fall back to defaults so state written by older versions still loads."""
        opened_at = data.get("opened_at")
        return cls(
            state=data.get("state", CLOSED),
            consecutive_failures=int(data.get("consecutive_failures", 0)),
            opened_at=None if opened_at is None else float(opened_at),
            half_open_in_flight=int(data.get("half_open_in_flight", 0)),
            half_open_successes=int(data.get("half_open_successes", 0)),
            calls=tuple((float(t), bool(ok)) for t, ok in data.get("calls", ())),
        )


def reset() -> BreakerState:
    """Operator override: forget history entirely, as if the breaker had just been created."""
    return BreakerState()


def trip(state: BreakerState, now: float) -> BreakerState:
    """Open the breaker at `now` whatever its state: a fleet's halted wave (fleets.py)
    keeps the fleet from being acted on for the recovery timeout, as a failure would."""
    return _open(state, now)


def current(state: BreakerState, settings: BreakerSettings, now: float) -> BreakerState:
    """Apply the only time-driven transition, so readers (status pages, admit) agree on state."""
    if state.state != OPEN or state.opened_at is None:
        return state
    if now - state.opened_at < settings.recovery_timeout:
        return state
    return replace(state, state=HALF_OPEN, half_open_in_flight=0, half_open_successes=0)


def admit(state: BreakerState, settings: BreakerSettings, now: float) -> tuple[bool, BreakerState]:
    """Decide whether a call may run; a half-open trial is counted in flight until recorded.

    Counting at admission (not at record) is what bounds concurrent trials: two alerts
    arriving together must not both probe a target that may still be broken.
    """
    state = current(state, settings, now)
    if state.state == CLOSED:
        return True, state
    if state.state == OPEN:
        return False, state
    if state.half_open_in_flight >= settings.half_open_max_calls:
        return False, state
    return True, replace(state, half_open_in_flight=state.half_open_in_flight + 1)


def record(
    state: BreakerState, settings: BreakerSettings, now: float, succeeded: bool
) -> BreakerState:
    """Fold the outcome of an admitted call into the state.

    The breaker cannot tell which call a result belongs to, so a result arriving in
    half_open is treated as a trial result even if it was admitted earlier while closed.
    That errs towards caution: a late failure reopens, a late success can at worst close
    the breaker one trial early.
    """
    state = current(state, settings, now)
    calls = (*_window(state.calls, settings, now), (now, succeeded))
    if state.state == CLOSED:
        # built directly, not with dataclasses.replace (several times the cost): every
        # action's outcome goes through here
        failures = 0 if succeeded else state.consecutive_failures + 1
        state = BreakerState(CLOSED, failures, state.opened_at, state.half_open_in_flight,
                             state.half_open_successes, calls)  # fmt: skip
        if failures >= settings.failure_threshold or _rate_tripped(calls, settings):
            return _open(state, now)
        return state
    state = replace(state, calls=calls)
    if state.state == HALF_OPEN:
        return _record_half_open(state, settings, now, succeeded)
    # OPEN: a call admitted before the breaker opened finished late. It must not close the
    # breaker, and a failure keeps opened_at unchanged: the breaker already reacted to this
    # failure streak, and pushing opened_at forward would let slow stragglers postpone recovery
    # indefinitely.
    return state


def _window(
    calls: tuple[tuple[float, bool], ...], settings: BreakerSettings, now: float
) -> tuple[tuple[float, bool], ...]:
    """Drop calls that fell out of the rate window so stored state stays bounded."""
    cutoff = now - settings.window
    return tuple(call for call in calls if call[0] >= cutoff)


def _record_half_open(
    state: BreakerState, settings: BreakerSettings, now: float, succeeded: bool
) -> BreakerState:
    in_flight = max(0, state.half_open_in_flight - 1)
    if not succeeded:
        return _open(state, now)
    successes = state.half_open_successes + 1
    if successes >= settings.success_threshold:
        # Clear the window too: the failures that opened the breaker would otherwise
        # re-trip the rate rule on the very next failure after recovery.
        return BreakerState()
    return replace(state, half_open_in_flight=in_flight, half_open_successes=successes)


def _rate_tripped(calls: tuple[tuple[float, bool], ...], settings: BreakerSettings) -> bool:
    """Catch flapping targets that never fail N times in a row but fail most of the time."""
    rate = settings.failure_rate_threshold
    if rate is None or len(calls) < settings.minimum_calls:
        return False
    failures = sum(1 for _, ok in calls if not ok)
    return failures / len(calls) >= rate


def _open(state: BreakerState, now: float) -> BreakerState:
    return replace(
        state,
        state=OPEN,
        opened_at=now,
        half_open_in_flight=0,
        half_open_successes=0,
    )
