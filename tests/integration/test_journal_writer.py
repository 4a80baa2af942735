"""The journal writer process (receiver/writer/): a real child process on a real
SQLite journal, driven through the same client the webhook uses.

What must hold: an answer 200 only after the notification is committed; bad bodies
answered 400 with nothing journaled; the writer runs exactly the config the worker
runs (after a reload, and after a restart even if the file was edited since); a writer
killed with SIGKILL is restarted, the requests in between answered 503 and none
accepted lost; a writer never outlives its worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from receiver.config import ConfigError, load_config
from receiver.store import open_store
from receiver.writer.client import WriterIntake, WriterProcess
from tests.support.payloads import alert, notification

pytestmark = pytest.mark.integration

CONFIG = """
executors: {logger: {type: log}}
strategies:
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
MORE = """
  - name: page-on-disk
    matchers: ['alertname="DiskFull"']
    action: escalate
    executor: logger
    target: '{{ labels.service }}'
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "remediation.yml"
    path.write_text(f"store: sqlite:///{tmp_path / 'journal.db'}\n" + CONFIG)
    return path


@pytest.fixture
def writer(config_file: Path) -> Iterator[WriterProcess]:
    process = WriterProcess(str(config_file), {})
    process.start()
    yield process
    process.stop()
    assert not process.alive()


@pytest.fixture
def intake(writer: WriterProcess) -> WriterIntake:
    return WriterIntake(writer, timeout=10)


def body(*alerts: dict[str, Any]) -> bytes:
    return json.dumps(notification(*alerts)).encode()


def journal_counts(config_file: Path) -> dict[str, int]:
    store = open_store(load_config(config_file).store)
    try:
        return store.counts()
    finally:
        store.close()


def test_a_notification_is_answered_after_it_is_journaled(intake, config_file):
    answer = intake.accept(body(alert(service="web"), alert("DiskFull", service="db")), 1.0)
    assert answer.status == 200
    summary = json.loads(answer.body)
    assert summary["new_incidents"] == 2 and summary["unmatched"] == 1
    assert answer.actions_planned == 1
    counts = journal_counts(config_file)
    assert counts["notifications"] == 1 and counts["incidents"] == 2 and counts["actions"] == 1


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "$"),
        (b"[]", "$"),
        (json.dumps({"version": "4", "alerts": [{"status": "firing"}]}).encode(), "alerts[0]"),
        (b"[" * 100_000 + b"]" * 100_000, "$"),
    ],
)
def test_a_bad_body_gets_400_and_changes_nothing(intake, config_file, raw, field):
    before = journal_counts(config_file)
    answer = intake.accept(raw, 1.0)
    assert answer.status == 400
    assert json.loads(answer.body)["field"].startswith(field)
    assert journal_counts(config_file) == before
    assert intake.accept(body(alert(service="web")), 1.0).status == 200  # still serving


def unmatched(intake: WriterIntake, starts_at: str) -> int:
    fire = alert("DiskFull", service="db", starts_at=starts_at)
    return json.loads(intake.accept(body(fire), 1.0).body)["unmatched"]


def test_a_reload_gives_the_writer_the_workers_config(intake, config_file):
    assert unmatched(intake, "2026-11-21T10:00:00Z") == 1
    config_file.write_text(config_file.read_text() + MORE)
    assert unmatched(intake, "2026-11-21T11:00:00Z") == 1  # edited, not reloaded: unchanged
    intake.reload(load_config(config_file))
    assert unmatched(intake, "2026-11-21T12:00:00Z") == 0


def test_a_restarted_writer_runs_the_workers_config_not_the_edited_file(config_file):
    """The file was edited without a reload when the writer died: the new writer must
    still run what the worker runs."""
    worker_config = load_config(config_file)
    writer = WriterProcess(str(config_file), {}, config_text=worker_config.text)
    writer.start()
    try:
        intake = WriterIntake(writer, timeout=10)
        assert unmatched(intake, "2026-11-21T10:00:00Z") == 1
        config_file.write_text(config_file.read_text() + MORE)
        first = writer.process.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not (writer.alive() and writer.process.pid != first):
            assert time.monotonic() < deadline, "the writer was not restarted"
            time.sleep(0.05)
        answered = []
        while not answered or answered[-1] == 503:  # the stale connection first
            fire = alert("DiskFull", service="db", starts_at="2026-11-21T11:00:00Z")
            answer = intake.accept(body(fire), 1.0)
            answered.append(answer.status)
        assert json.loads(answer.body)["unmatched"] == 1
    finally:
        writer.stop()


def test_an_invalid_config_is_refused_by_the_writer_too(intake, config_file):
    broken = replace(load_config(config_file), text="strategies: [oops\n")
    with pytest.raises(ConfigError, match="refused the reload"):
        intake.reload(broken)
    assert intake.accept(body(alert(service="web")), 1.0).status == 200


def test_a_killed_writer_is_restarted_and_nothing_accepted_is_lost(writer, intake, config_file):
    accepted: list[str] = []
    refused: list[int] = []

    def send(number: int) -> None:
        fire = alert(service="web", instance=f"i{number}")
        answer = intake.accept(body(fire), 1.0)
        if answer.status == 200:
            accepted.append(fire["fingerprint"])
        else:
            refused.append(answer.status)

    first = writer.process.pid
    for number in range(20):
        send(number)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    number = 20
    while not (writer.alive() and writer.process.pid != first and len(accepted) >= 30):
        assert time.monotonic() < deadline, "the writer was not restarted"
        send(number)
        number += 1
        time.sleep(0.01)
    assert set(refused) <= {503}
    assert refused, "a request to the killed writer must be answered 503"
    store = open_store(load_config(config_file).store)
    try:
        journaled = {i["fingerprint"] for i in store.list_incidents(limit=1000).items}
    finally:
        store.close()
    assert set(accepted) <= journaled


def test_concurrent_threads_each_get_their_own_answer(intake, config_file):
    answers: dict[int, Any] = {}

    def send(number: int) -> None:
        for round_ in range(20):
            fire = alert(service=f"s{number}", instance=f"r{round_}")
            answers[number * 100 + round_] = intake.accept(body(fire), 1.0)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 160
    assert all(
        a.status == 200 and json.loads(a.body)["new_incidents"] == 1 for a in answers.values()
    )
    assert journal_counts(config_file)["incidents"] == 160


def test_the_writer_leaves_when_its_worker_dies(config_file, tmp_path):
    """SIGKILL the process that started the writer: the writer must not linger."""
    pid_file = tmp_path / "writer.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import pathlib, time
                from receiver.writer.client import WriterProcess
                writer = WriterProcess({str(config_file)!r}, {{}})
                writer.start()
                pathlib.Path({str(pid_file)!r}).write_text(str(writer.process.pid))
                time.sleep(600)
                """
            ),
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        writer_pid = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _running(writer_pid):
            assert time.monotonic() < deadline, "the writer outlived its worker"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has left already
