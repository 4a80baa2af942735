"""Which polls of a verification query are journaled (pure; the writer is injected).

A strategy's `verify` polls Prometheus every `interval` until its query holds or its
`timeout` passes: at 2 s for 60 s that is up to 31 polls. The journal keeps what an
operator needs to follow it on the incident's timeline without growing with the
timeout: a poll is journaled when its sample differs from the one journaled before it
(so a steady `0 (false)` is one event, and the `1 (true)` that ends it another), at most
MAX_SAMPLE_EVENTS per verification (the outcome still says how it ended).

    record("0 (false)") ─► journaled    record("0 (false)") ─► a repeat: not journaled
    record("1 (true)")  ─► journaled    past the cap        ─► not journaled
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: Sample events one verification journals at the most (its first and last are
#: `verifying: <query>` and the outcome, journaled by the dispatcher).
MAX_SAMPLE_EVENTS = 10
PREFIX = "verification sample: "


@dataclass
class SampleJournal:
    """Journals a verification's samples through `write(text)` (one event each), as the
    module docstring says. `record` takes a sample as prometheus.describe_sample
    words it."""

    write: Callable[[str], None]
    limit: int = MAX_SAMPLE_EVENTS
    journaled: int = 0
    _last: str | None = field(default=None, repr=False)

    def record(self, sample: str) -> None:
        """Journal `sample` unless it repeats the last one journaled or the cap is hit."""
        if sample == self._last or self.journaled >= self.limit:
            return
        self.write(PREFIX + sample)
        self._last = sample
        self.journaled += 1
