"""bench.remediate's command path driven in this thread, without a server: the real ingest
of one-alert notifications on a fresh SQLite journal (each plans one `run` action of a
`command` executor running a small program), then the real dispatcher's `run_once` until
nothing is left. bench.icount counts its instructions, bench.walframes its pages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from bench import common, remediate

if TYPE_CHECKING:
    from receiver.config import Config
    from receiver.dispatcher import Dispatcher
    from receiver.store.sqlite import SqliteStore


@dataclass
class CommandPath:
    """A fresh journal (`journal`, in the work folder `workdir`) with bench.remediate's
    config, and a dispatcher over it."""

    workdir: Path
    journal: Path
    config: Config
    store: SqliteStore
    dispatcher: Dispatcher

    def ingest(self, bodies: list[bytes]) -> None:
        """Journal each notification body (JSON bytes) as the webhook would, one
        transaction each; the clock is fixed (1.8e9 s), so no alert is stale."""
        from receiver.alerts import parse_notification
        from receiver.engine import ingest

        for body in bodies:
            ingest(self.store, self.config, parse_notification(json.loads(body)), 1.8e9)

    def dispatch(self, checkpoint_every: int | None = None) -> int:
        """Carry out every due action, one `run_once` at a time; how many were. With
        `checkpoint_every`, a PASSIVE WAL checkpoint follows every that many actions."""
        done = 0
        while self.dispatcher.run_once():
            done += 1
            if checkpoint_every and done % checkpoint_every == 0:
                self.store.checkpoint()
        return done


@contextmanager
def command_path(name: str) -> Iterator[CommandPath]:
    """A CommandPath in a new work folder named after `name` (removed after); the store is
    closed on leaving. Logging is silenced below CRITICAL, as the bench's servers run."""
    from receiver.config import parse_config
    from receiver.dispatcher import Dispatcher
    from receiver.store import open_store

    logging.basicConfig(level=logging.CRITICAL)
    with common.workdir(name, False) as wd:
        script = remediate.prepare_script(wd, "auto")
        config = parse_config(remediate.config_for(wd, script).read_text(), base_dir=wd)
        journal = wd / "journal.db"
        store = open_store(f"sqlite:///{journal}")
        try:
            dispatcher = Dispatcher(SimpleNamespace(config=config), store)
            yield CommandPath(wd, journal, config, store, dispatcher)
        finally:
            store.close()
