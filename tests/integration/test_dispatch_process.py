"""The dispatcher runs in a process of its own (receiver/writer/dispatch.py): a child of
the journal writer, neither the HTTP worker nor the writer, on a real `remediator serve`;
and a reload the writer accepts reaches it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from receiver.config import load_config
from receiver.writer.client import WriterIntake, WriterProcess
from tests.support.journal import open_journal, post_webhook, settle, wait_for
from tests.support.payloads import alert, notification
from tests.support.pids import children, dispatcher_of, worker_of, writer_of
from tests.support.processes import remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config
from tests.support.wal import checkpointed_count

pytestmark = pytest.mark.integration

MORE = """
  - name: page-on-disk
    matchers: ['alertname="DiskFull"']
    action: escalate
    executor: logger
    target: '{{ labels.service }}'
"""


def claimers(store_url: str) -> set[str]:
    journal = open_journal(store_url)
    try:
        with journal.transaction(write=False) as tx:
            return {row[0] for row in tx.execute("SELECT claimed_by FROM actions")}
    finally:
        journal.close()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_actions_are_claimed_by_the_writers_dispatch_process(tmp_path):
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        body = notification(*(alert(service=f"web-{n}") for n in range(3)))
        answer = post_webhook(server.url, body)
        assert answer.json()["actions_planned"] == 3, answer.text
        settle(open_journal(store), expected=3, timeout=30)
        worker = worker_of(server.process.pid)
        writer = writer_of(worker)
        dispatcher = dispatcher_of(writer)
        (claimer,) = claimers(store)  # host:pid:random
        pid = int(claimer.split(":")[1])
        assert pid not in (server.process.pid, worker, writer)
        assert pid == dispatcher and parent_of(pid) == writer
        assert children(worker) == [writer]  # the writer's child, not the worker's


def test_a_reload_reaches_the_dispatch_process(tmp_path):
    path = tmp_path / "remediation.yml"
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    path.write_text(f"store: {store}\n" + LOG_RESTART)
    writer = WriterProcess(str(path), {})
    writer.start()
    try:
        intake = WriterIntake(writer, timeout=10)
        path.write_text(path.read_text() + MORE)
        intake.reload(load_config(path))
        fire = alert("DiskFull", service="db", starts_at="2026-11-21T10:00:00Z")
        answer = intake.accept(json.dumps(notification(fire)).encode(), 1.0)
        assert json.loads(answer.body)["actions_planned"] == 1
        # The writer planned it under the new config; only a dispatcher that runs the
        # new config too knows its strategy and carries it out.
        (action,) = settle(open_journal(store), expected=1, timeout=30)
        assert (action["strategy"], action["status"]) == ("page-on-disk", "succeeded"), action
        assert writer.alive() and os.getpid() != writer.process.pid
    finally:
        writer.stop()


def test_the_dispatch_process_checkpoints_the_wal_off_the_commits(tmp_path):
    """store/checkpoint.py: the commits leave the WAL to the dispatch process's
    checkpointer (SQLite's own waits for 10,000 pages), which copies it into the
    database file: the file alone soon holds the actions."""
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    path = tmp_path / "journal.db"
    store = f"sqlite:///{path}"
    with remediator(tmp_path, config, store) as server:
        for n in range(5):
            assert post_webhook(server.url, notification(alert(service=f"w-{n}"))).ok
        settle(open_journal(store), expected=5, timeout=30)
        wait_for(lambda: checkpointed_count(path, "actions") == 5, 10, "the actions checkpointed")
