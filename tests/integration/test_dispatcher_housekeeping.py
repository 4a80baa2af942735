"""The housekeeping thread carries the heartbeats of every running action: a chore that
fails (a bug in recovery, repeats or escalations) must be logged and the loop go on, or
other processes would adopt this process's actions as orphans and, by the crash rule,
maybe run them again. A real dispatcher on a real SQLite journal, one chore made to fail.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from receiver.config import parse_config
from receiver.dispatcher import Dispatcher
from receiver.store.sqlite import SqliteStore
from tests.support.journal import wait_for

CONFIG = """
executors:
  logger: {type: log}
strategies:
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""


def test_a_failing_chore_neither_kills_housekeeping_nor_stops_the_heartbeats(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 'journal.db'}")
    dispatcher = Dispatcher(SimpleNamespace(config=parse_config(CONFIG, base_dir=tmp_path)), store)
    failures = []
    heartbeats = []
    beat = store.heartbeat

    def broken_escalations() -> int:
        failures.append(threading.current_thread().name)
        raise ValueError("a bug in one chore")

    def counted_heartbeat(ids: list[int], now: float) -> None:
        heartbeats.append(now)
        beat(ids, now)

    dispatcher.send_escalations = broken_escalations  # type: ignore[method-assign]
    store.heartbeat = counted_heartbeat  # type: ignore[method-assign]
    dispatcher.start()
    try:
        # the loop came around again after the chore failed: heartbeats went on
        wait_for(lambda: len(failures) >= 2, 15, "housekeeping to go on after a failure")
        assert len(heartbeats) >= 2
        housekeeping = [t for t in threading.enumerate() if t.name == "dispatch-housekeeping"]
        assert housekeeping and housekeeping[0].is_alive()
    finally:
        dispatcher.stop()
        store.close()
    assert "housekeeping broken_escalations failed; continuing" in caplog.text
    assert "a bug in one chore" in caplog.text
