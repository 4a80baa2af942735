"""Crash safety of approvals: an action awaiting approval survives a kill -9 of the whole
server (real `remediator serve` on SQLite and PostgreSQL, a real Alertmanager) and is
still awaiting after the restart, then runs once approved."""

from __future__ import annotations

import os
import signal
import time

from tests.support.approvals import (
    action,
    am_alert,
    awaiting,
    decide,
    ended,
    fire,
    ran,
)
from tests.support.journal import open_journal, wait_for
from tests.support.pids import alive, dispatcher_of, worker_of, writer_of
from tests.support.processes import remediator


def test_an_awaiting_action_survives_kill_9_of_the_server(approvals):
    workdir, config, store_url, am, record = approvals
    with remediator(workdir, config, store_url) as server:
        fire(server, "careful")
        (held,) = awaiting(server)
        wait_for(lambda: am_alert(am, held["id"]), what="the awaiting alert")
        # the whole server dies at once: master, worker, journal writer, dispatch process
        worker = worker_of(server.process.pid)
        writer = writer_of(worker)
        dispatcher = dispatcher_of(writer)
        for pid in (server.process.pid, worker, writer, dispatcher):
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        gone = (worker, writer, dispatcher)
        wait_for(lambda: not any(alive(pid) for pid in gone), 20, "the server's processes gone")
    journal = open_journal(store_url)
    try:
        (row,) = [a for a in journal.list_actions().items if a["id"] == held["id"]]
        assert (row["status"], row["waiting"]) == ("planned", "awaiting_approval")
    finally:
        journal.close()
    with remediator(workdir, config, store_url, log_name="again.log") as server:
        time.sleep(2.5)  # the new dispatcher looked: still awaiting
        again = action(server, held["id"])
        assert (again["status"], again["waiting"]) == ("planned", "awaiting_approval")
        assert again["approval"]["awaiting"] is True
        assert decide(server, held["id"], "approve", by="carol").status_code == 200
        assert ended(server, held["id"])["status"] == "succeeded"
        assert ran(record) == ["careful web"]
