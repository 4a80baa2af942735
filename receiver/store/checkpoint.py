"""WAL checkpoints of the SQLite journal, off the write path.

SQLite copies the WAL back into the database file (a checkpoint) by default inside the
COMMIT that takes the WAL past 1,000 pages: that commit copies every page changed since
the last checkpoint and syncs both files, while it still holds the writers' lock file
(store/sqlite.py), so every other writer of every process waits for those syncs. Under
a burst of command actions (about 27 WAL pages per action, ingest and outcome) that
was one checkpoint every ~40 actions, most of the pages copied again each time.

Instead the dispatch process runs a `Checkpointer`: a thread that asks for a PASSIVE
checkpoint (copy what no reader still needs, never wait for a lock) every
`interval` seconds on a connection of its own, outside the writers' lock, so writers
only append. A page changed many times between two checkpoints is copied once.
SQLite's own automatic checkpoint stays as the backstop, at AUTOCHECKPOINT_PAGES
(store/sqlite.py), for a journal no checkpointer runs on (the CLI) or when this thread
falls behind; the WAL it lets grow to is bounded by that (4 KiB pages: 40 MB).

Durability is unchanged: a transaction is durable once its COMMIT appended it to the
WAL (synchronous=NORMAL), checkpointed or not; a checkpoint cut by kill -9 is redone by
the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

#: Seconds between two checkpoints: at 1,000 actions/s about 7,000 WAL pages
CHECKPOINT_INTERVAL = 0.25
#: Seconds between two log lines of a checkpoint that keeps failing
ERROR_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class Checkpointed:
    """One checkpoint's result, as `PRAGMA wal_checkpoint` gives it: `busy` (it could not
    finish: a reader or writer held pages it needed), `wal_pages` (frames in the WAL),
    `copied` (frames now in the database file)."""

    busy: bool
    wal_pages: int
    copied: int


class Checkpointable(Protocol):
    def checkpoint(self) -> Checkpointed: ...


class Checkpointer:
    """A thread that checkpoints `store` (a SqliteStore) every `interval` seconds until
    stop(). Errors are logged (at most once per ERROR_LOG_INTERVAL) and never end it:
    the backstop keeps the WAL bounded meanwhile."""

    def __init__(self, store: Checkpointable, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-checkpoint", daemon=True)
        self._logged_at = float("-inf")
        self.last: Checkpointed | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.last = self.store.checkpoint()
            except Exception as exc:  # a full disk, a locked file: the backstop remains
                now = time.monotonic()
                if now - self._logged_at >= ERROR_LOG_INTERVAL:
                    self._logged_at = now
                    log.error("journal checkpoint failed (SQLite's own continues): %s", exc)
