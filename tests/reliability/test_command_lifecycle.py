"""Commands do not outlive their owner (issue 11, item 8), on a real `remediator serve`.

The strategy's command is a script that appends "start <action> <time>" to a file, sleeps,
and appends "end <action> <time>"; it also starts a child, in its process group, that
writes a marker one second after the script's sleep, so that a killed group can be told
from one that was left running. Three cases:

(a) SIGTERM while it runs, `limits.shutdown_grace` longer than the sleep: the server waits,
    the script finishes, the action is journaled succeeded;
(b) grace shorter than the sleep: the whole process group is killed (the child's marker
    never appears, no process of the group is left) and the action is journaled failed,
    "killed at shutdown after 1s grace", which the breaker does not count;
(c) kill -9 of the dispatch process (the journal writer's child that runs the
    dispatcher) while an `idempotent: true` command runs: the writer leaves, the worker
    starts a new writer and dispatch process (new pids), which adopt the orphan, find its
    command still running and wait for it before re-running it: the intervals in the
    file never overlap, and the journal's outcome is what the file shows;
(d) kill -9 of the journal writer while a command runs: its dispatch process lets the
    command finish, journals it once (no crash rule) and exits.

Also: the journal column that holds a command's process identity is added to journals
created before it, idempotently, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from receiver.store import open_store
from tests.support.journal import all_actions, open_journal, post_webhook, settle, wait_for
from tests.support.payloads import alert, notification
from tests.support.pids import alive, dispatcher_of, worker_of, writer_of
from tests.support.receiver import write_config
from tests.support.restartable import restartable_remediator

INTERVALS = """#!/bin/sh
# interval.sh FILE SECONDS MARKER: the interval this run took; a child in the same
# process group writes MARKER one second after the run's end would be.
echo "start $REMEDIATOR_ACTION_ID $(date +%s.%N)" >> "$1"
( sleep "$2"; sleep 1; echo "late $REMEDIATOR_ACTION_ID" >> "$3" ) &
sleep "$2"
echo "end $REMEDIATOR_ACTION_ID $(date +%s.%N)" >> "$1"
wait
"""


def config_text(
    script: Path,
    runs: Path,
    marker: Path,
    seconds: int,
    grace: str,
    *,
    idempotent: bool = True,
    timeout: str = "60s",
    verify: str = "",
) -> str:
    """`verify` (optional) is `PROMETHEUS_URL QUERY`: the strategy verifies with it."""
    url, _, query = verify.partition(" ")
    checked = f"\n    verify: {{query: '{query}', timeout: 60s, interval: 500ms}}" if verify else ""
    return f"""
server:
  auth: {{bearer_token_file: token}}
{f"prometheus: {{url: '{url}'}}" if verify else ""}
defaults:
  cooldown: 0s
limits:
  shutdown_grace: {grace}
executors:
  local: {{type: command}}
strategies:
  - name: slow-fix
    matchers: ['alertname="Slow"']
    action: run
    executor: local
    idempotent: {str(idempotent).lower()}
    target: '{{{{ labels.service }}}}'
    command: ['/bin/sh', '{script}', '{runs}', '{seconds}', '{marker}']
    timeout: {timeout}{checked}
"""


@dataclass(frozen=True)
class Interval:
    action: int
    start: float
    end: float | None  # None: the run never reached its end


def read_intervals(path: Path) -> list[Interval]:
    """The runs in the file, in the order they started."""
    starts: list[tuple[int, float]] = []
    ends: dict[tuple[int, int], float] = {}
    seen: dict[int, int] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        phase, action, at = line.split()
        number = int(action)
        if phase == "start":
            starts.append((number, float(at)))
        else:
            nth = seen.get(number, 0)
            ends[(number, nth)] = float(at)
            seen[number] = nth + 1
    counted: dict[int, int] = {}
    intervals = []
    for number, start in starts:
        nth = counted.get(number, 0)
        counted[number] = nth + 1
        intervals.append(Interval(number, start, ends.get((number, nth))))
    return intervals


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    script = tmp_path / "interval.sh"
    script.write_text(INTERVALS)
    return script, tmp_path / "runs.log", tmp_path / "marker.log"


def fire(url: str) -> None:
    body = notification(alert("Slow", service="api", starts_at="2026-05-01T00:00:00Z"))
    response = post_webhook(url, body)
    assert response.status_code == 200, response.text


def sigterm_and_wait(server, timeout: float) -> float:
    """SIGTERM the whole server (master, worker, journal writer), as a service manager
    does; return how long it took to exit."""
    began = time.monotonic()
    os.killpg(server.process.pid, signal.SIGTERM)
    server.process.wait(timeout)
    return time.monotonic() - began


def group_members(pgid: int) -> list[int]:
    """Living processes in process group pgid (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def started_group(action: dict) -> int:
    """The process group the journal recorded when the command started."""
    for event in action["events"]:
        if event["reason"].startswith("command started: process group "):
            return int(event["reason"].split()[4])
    raise AssertionError(f"no process group journaled: {action['events']}")


def test_sigterm_waits_for_a_command_that_ends_within_the_grace(tmp_path, files):
    script, runs, marker = files
    config = write_config(tmp_path, config_text(script, runs, marker, 3, "20s"))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with restartable_remediator(tmp_path, config, store) as server:
        fire(server.url)
        wait_for(lambda: read_intervals(runs), 20, "the command to start")
        took = sigterm_and_wait(server, 60)
        output = server.output()
    journal = open_journal(store)
    (action,) = all_actions(journal)
    assert action["status"] == "succeeded", (action, output[-3000:])
    assert action["reason"] == "exit status 0"
    (run,) = read_intervals(runs)
    assert run.end is not None and run.end - run.start >= 3
    assert marker.read_text().split() == ["late", str(action["id"])]
    assert took < 20  # it waited for the command (4 s), not for the whole grace


def test_sigterm_kills_the_process_group_when_the_grace_is_over(tmp_path, files):
    script, runs, marker = files
    config = write_config(tmp_path, config_text(script, runs, marker, 6, "1s"))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with restartable_remediator(tmp_path, config, store) as server:
        fire(server.url)
        wait_for(lambda: read_intervals(runs), 20, "the command to start")
        sigterm_and_wait(server, 60)
        output = server.output()
    journal = open_journal(store)
    (action,) = all_actions(journal)
    assert action["status"] == "failed", (action, output[-3000:])
    assert action["reason"] == "killed at shutdown after 1s grace (process group killed)"
    # its runbook does not go on as if the step had failed: it ends, and a person is told
    with journal.transaction(write=False) as tx:
        status, why = tx.execute("SELECT status, reason FROM runbook_runs").fetchone()
    assert status == "uncured"
    assert "skipped (interrupted): Remediator shut down while it ran (killed at shutdown" in why
    assert group_members(started_group(action)) == []
    time.sleep(6 + 1 + 1)  # past the moment the script and its child would have written
    (run,) = read_intervals(runs)
    assert run.end is None
    assert not marker.exists()
    (breaker,) = journal.list_breakers()
    assert (breaker["state"], breaker["consecutive_failures"]) == ("closed", 0)


@pytest.mark.parametrize(
    ("query", "grace", "status", "reason"),
    [
        ("vector(1)", "20s", "succeeded", "exit status 0"),
        (
            "vector(0) == 1",
            "5s",
            "failed",
            "exit status 0; verification not finished at shutdown: its 5s grace was over",
        ),
    ],
)
def test_verification_runs_within_the_grace_and_no_longer(
    tmp_path, files, prometheus_server, query, grace, status, reason
):
    script, runs, marker = files
    verify = f"{prometheus_server.url} {query}"
    config = write_config(tmp_path, config_text(script, runs, marker, 1, grace, verify=verify))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with restartable_remediator(tmp_path, config, store) as server:
        fire(server.url)
        wait_for(lambda: read_intervals(runs), 20, "the command to start")
        sigterm_and_wait(server, 60)
    journal = open_journal(store)
    (action,) = all_actions(journal)
    reasons = [event["reason"] for event in action["events"]]
    assert (action["status"], action["reason"]) == (status, reason), reasons
    assert any(r.startswith("verifying: ") for r in reasons)
    # neither outcome is counted as a failure (a breaker row exists once one is recorded)
    assert [b["consecutive_failures"] for b in journal.list_breakers()] in ([], [0])


def dispatch_pid(server_pid: int) -> int:
    """The dispatch process of the server whose gunicorn master is server_pid: the one
    that runs the commands, and whose death orphans them."""
    return dispatcher_of(writer_of(worker_of(server_pid)))


def test_an_orphaned_command_still_running_is_never_run_twice_at_once(tmp_path, files, store_url):
    script, runs, marker = files
    seconds = 16  # longer than a heartbeat takes to go stale (10 s): adopted while it runs
    config = write_config(tmp_path, config_text(script, runs, marker, seconds, "30s"))
    with restartable_remediator(tmp_path, config, store_url) as server:
        fire(server.url)
        wait_for(lambda: read_intervals(runs), 20, "the command to start")
        worker = worker_of(server.process.pid)
        writer = writer_of(worker)
        dispatcher = dispatcher_of(writer)
        os.kill(dispatcher, signal.SIGKILL)
        journal = open_journal(store_url)
        (action,) = settle(journal, expected=1, timeout=3 * seconds + 30)
        assert server.alive(), server.output()[-3000:]
        # the writer left when its dispatch process died; the worker started new ones
        new_writer = writer_of(worker)
        assert new_writer != writer and not alive(writer)
        assert dispatcher_of(new_writer) != dispatcher
        output = server.output()
    assert f"the dispatch process (pid {dispatcher}) died" in output

    intervals = read_intervals(runs)
    reasons = [event["reason"] for event in action["events"]]
    where = f"{action['status']} {action['reason']}: {reasons}; {intervals}"
    assert any("was still running after the crash" in r for r in reasons), where
    assert any(r.endswith("(exit status unknown)") and "; it ended " in r for r in reasons), where
    # the first run was waited for, then re-run (idempotent): one after the other
    assert len(intervals) == 2, where
    first, second = intervals
    assert first.end is not None and second.start >= first.end, where
    # the journal's outcome is the file's: the re-run ended, exit status 0
    assert second.end is not None, where
    assert action["status"] == "succeeded", where
    assert action["reason"] == "after a crash: exit status 0", where


def test_an_orphaned_command_past_its_timeout_is_killed_and_journaled_so(tmp_path, files):
    script, runs, marker = files
    text = config_text(script, runs, marker, 60, "30s", idempotent=False, timeout="14s")
    config = write_config(tmp_path, text)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with restartable_remediator(tmp_path, config, store) as server:
        fire(server.url)
        wait_for(lambda: read_intervals(runs), 20, "the command to start")
        os.kill(dispatch_pid(server.process.pid), signal.SIGKILL)
        (action,) = settle(open_journal(store), expected=1, timeout=60)

    reasons = [event["reason"] for event in action["events"]]
    where = f"{action['status']} {action['reason']}: {reasons}"
    assert action["status"] == "timed_out", where
    assert action["reason"].startswith("interrupted by a crash; not re-run (not idempotent); "), (
        where
    )
    assert action["reason"].endswith("was still running after the crash; killed at its 14s timeout")
    assert group_members(started_group(action)) == []
    (run,) = read_intervals(runs)  # never re-run, and the killed run never ended
    assert run.end is None


OLD_ACTIONS = """CREATE TABLE actions (
    id {pk}, incident_id INTEGER NOT NULL, strategy TEXT NOT NULL, action TEXT NOT NULL,
    executor TEXT NOT NULL, target TEXT NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL, dry_run INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, claimed_by TEXT,
    heartbeat_at DOUBLE PRECISION, output TEXT NOT NULL DEFAULT ''
)"""


def columns(store: object) -> list[str]:
    with store.transaction(write=False) as tx:  # type: ignore[attr-defined]
        return [d[0] for d in tx.execute("SELECT * FROM actions LIMIT 0").description]


def test_a_journal_created_before_the_process_column_gets_it_once(tmp_path, store_url):
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            db.execute(OLD_ACTIONS.format(pk="INTEGER PRIMARY KEY"))
    else:
        with psycopg.connect(store_url) as db:
            db.execute(OLD_ACTIONS.format(pk="BIGSERIAL PRIMARY KEY"))
    for _ in range(2):  # the second open finds the column and adds nothing
        store = open_store(store_url)
        assert columns(store).count("process") == 1
        store.close()


def test_a_killed_writer_leaves_its_dispatch_process_to_finish_the_running_command(tmp_path, files):
    script, runs, marker = files
    seconds = 4
    config = write_config(tmp_path, config_text(script, runs, marker, seconds, "30s"))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with restartable_remediator(tmp_path, config, store) as server:
        fire(server.url)
        wait_for(lambda: read_intervals(runs), 20, "the command to start")
        worker = worker_of(server.process.pid)
        writer = writer_of(worker)
        dispatcher = dispatcher_of(writer)
        os.kill(writer, signal.SIGKILL)
        wait_for(lambda: not alive(dispatcher), seconds + 20, "the dispatch process to end")
        journal = open_journal(store)
        (action,) = settle(journal, expected=1, timeout=20)
        new_writer = writer_of(worker)  # the worker restarted the writer meanwhile
        assert new_writer != writer and dispatcher_of(new_writer) != dispatcher
        output = server.output()
    reasons = [event["reason"] for event in action["events"]]
    where = f"{action['status']} {action['reason']}: {reasons}; {output[-3000:]}"
    assert (action["status"], action["reason"]) == ("succeeded", "exit status 0"), where
    assert not any("crash" in reason for reason in reasons), where
    (run,) = read_intervals(runs)  # run once, to its end
    assert run.end is not None and run.end - run.start >= seconds
