"""Retention: how long the journal keeps what it no longer needs (pure; clock injected).

The journal grows by about 1 KB per alert. Retention bounds it: notifications older
than `retention.notifications` (default 7d) go, and so do closed incidents that ended
more than `retention.incidents` ago (default 90d), with their actions, action events and
runbook runs. What goes and what is always kept is listed in receiver/store/retention.py;
this module holds the rules that decide WHEN a row is old enough:

    config --settings--> RetentionSettings --cutoffs(now)--> Cutoffs --store--> deleted rows

- A cutoff is an epoch second: a row is old when its time is before it.
- Pruning never changes an exported figure or a gate verdict. Counters and histograms
  are running totals (metric_totals), never recomputed from rows, so they stay
  monotonic. What is read from rows within a window (MTTR and availability over
  `defaults.mttr_window`; cooldowns, budget windows, breaker windows, fleet size and
  escalation windows) is protected twice: an `incidents` retention shorter than the
  longest such window is a config error (`read_windows`, `shorter_than_windows`), and
  no action that started or ended within the longest window is pruned
  (`Cutoffs.actions`), whatever its incident.
- `0s` turns a kind of pruning off (kept forever).

The background job (dispatcher housekeeping) prunes every `interval` in batches of
`batch_size` parent rows, each batch its own short write transaction with `pause`
seconds between batches, so ingest and claims interleave with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from receiver.durations import format_duration

if TYPE_CHECKING:
    from receiver.config import Config

DAY = 86400.0
#: seconds between batches of one pass: long enough for a waiting writer to get in
PAUSE = 0.05


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class RetentionSettings:
    """The config's `retention` section.

    `notifications`, `incidents`: seconds a row is kept after it was received (a
    notification) or closed (an incident); 0 keeps it forever. `interval`: seconds
    between two passes of the background job (> 0). `batch_size`: notifications or
    incidents deleted per transaction, the incidents' actions, events and runs with them
    (>= 1). Raises ValueError on a negative or NaN duration or a batch below 1.
    """

    notifications: float = 7 * DAY
    incidents: float = 90 * DAY
    interval: float = 60.0
    batch_size: int = 500

    def __post_init__(self) -> None:
        for name in ("notifications", "incidents"):
            value = getattr(self, name)
            _require(
                math.isfinite(value) and value >= 0,
                f"{name} must be a duration of 0s or more, got {value!r}",
            )
        _require(
            math.isfinite(self.interval) and self.interval > 0,
            f"interval must be longer than 0s, got {self.interval!r}",
        )
        _require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size!r}")

    @property
    def enabled(self) -> bool:
        """Whether anything is ever pruned."""
        return bool(self.notifications or self.incidents)


@dataclass(frozen=True)
class Window:
    """A window (seconds) that something reads journal rows over, and its config path."""

    path: str
    seconds: float


@dataclass(frozen=True)
class Cutoffs:
    """What one pass prunes, as epoch seconds (None: that kind is kept forever).

    `notifications`: received before it. `incidents`: closed, and ended before it.
    `actions`: an incident is kept if any of its actions started, was updated or
    finished at or after it (the longest gate window back from now)."""

    now: float
    notifications: float | None
    incidents: float | None
    actions: float


def read_windows(config: Config) -> list[Window]:
    """Every window over which a metric or a gate reads journal rows, with its path:
    defaults.mttr_window; per strategy (each runbook step, each undo) its cooldown,
    budget window and breaker window; per fleet its size_window and escalation_window.
    Pure: reads the parsed config only."""
    found = [
        Window("defaults.mttr_window", config.defaults.mttr_window),
        Window("defaults.cooldown", config.defaults.cooldown),
        Window("defaults.breaker.window", config.defaults.breaker.window),
    ]
    if config.defaults.budget is not None:
        found.append(Window("defaults.budget.window", config.defaults.budget.window))
    for index, strategy in enumerate(config.strategies):
        path = f"strategies[{index}]"
        parts = [(path, strategy)]
        parts += [(f"{path}.steps[{n}]", step) for n, step in enumerate(strategy.steps)]
        if strategy.undo is not None:
            parts.append((f"{path}.undo", strategy.undo))
        for where, step in parts:
            found.append(Window(f"{where}.cooldown", step.cooldown))
            found.append(Window(f"{where}.breaker.window", step.breaker.window))
            if step.budget is not None:
                found.append(Window(f"{where}.budget.window", step.budget.window))
        if strategy.fleet is not None:
            fleet = strategy.fleet
            found.append(Window(f"{path}.fleet.size_window", fleet.size_window))
            found.append(
                Window(f"{path}.fleet.escalation_window", fleet.settings.escalation_window)
            )
    return found


def longest(windows: Iterable[Window]) -> Window:
    """The longest window (the first of equals); a zero window when there is none."""
    return max(windows, key=lambda w: w.seconds, default=Window("", 0.0))


def shorter_than_windows(settings: RetentionSettings, windows: Iterable[Window]) -> str | None:
    """Why `settings.incidents` is too short (a message naming both values), or None.

    Pruning closed incidents younger than a window that metrics or gates read over would
    change an exported figure or a gate's verdict."""
    if not settings.incidents:
        return None
    widest = longest(windows)
    if settings.incidents >= widest.seconds:
        return None
    return (
        f"{format_duration(settings.incidents)} is shorter than {widest.path} "
        f"({format_duration(widest.seconds)}), which is read from the journal: pruning "
        f"would change an exported figure or a gate verdict; make it at least "
        f"{format_duration(widest.seconds)} (or 0s to keep incidents forever)"
    )


def cutoffs(settings: RetentionSettings, gate_window: float, now: float) -> Cutoffs:
    """The cutoffs of a pass at `now` (epoch seconds), `gate_window` the longest window
    read (seconds, longest(read_windows(config)).seconds)."""
    return Cutoffs(
        now=now,
        notifications=now - settings.notifications if settings.notifications else None,
        incidents=now - settings.incidents if settings.incidents else None,
        actions=now - gate_window,
    )


@dataclass
class Schedule:
    """When the background job's next pass is due (epoch seconds). The first comes
    soon after start (at most FIRST_PASS_AFTER), then one every `interval`."""

    next_at: float

    FIRST_PASS_AFTER = 10.0

    @classmethod
    def starting(cls, settings: RetentionSettings, now: float) -> Schedule:
        return cls(now + min(settings.interval, cls.FIRST_PASS_AFTER))

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def passed(self, settings: RetentionSettings, now: float) -> None:
        """A pass ended at `now`: the next is due one interval later."""
        self.next_at = now + settings.interval
