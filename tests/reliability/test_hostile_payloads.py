"""No crash and no 5xx on any input (issue 11, item 6), against a real `remediator serve`
on SQLite and on PostgreSQL (whose TEXT refuses NUL, where SQLite keeps it).

The issue's case: a lone surrogate in a label of an alert without a fingerprint ended
the journal writer (UnicodeEncodeError), every sender got 503 until it restarted, and
a running action was journaled `failed ... interrupted by a crash`. Now it is a 400
naming `alerts[0].labels.service`, the writer (same pid) carries on, the running action
is untouched, the journal unchanged, and the next valid notification gets 200. Then
the whole table of hostile fields of tests/support/hostile_payloads.py, on both stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver.config import parse_config
from receiver.store.sqlite import SqliteStore
from receiver.writer import process
from receiver.writer.process import JournalWriter
from receiver.writer.protocol import NOTIFY, Request
from tests.support.hostile_payloads import ACCEPTED, NULS, NUMBERS, SURROGATES, first, raw
from tests.support.journal import all_actions, all_incidents, bearer, open_journal
from tests.support.payloads import alert, notification
from tests.support.pids import is_writer
from tests.support.postgres import postgres_schema
from tests.support.processes import Running, remediator
from tests.support.receiver import CONFIG, hold_dispatcher, write_config

ISSUE_BODY = (
    b'{"version": "4", "status": "firing", "receiver": "r", "groupKey": "g", '
    b'"alerts": [{"status": "firing", "startsAt": "2026-11-21T10:00:00Z", '
    b'"labels": {"alertname": "X", "service": "\\ud800"}}]}'
)
TIMES = [
    (first(startsAt="0000-01-01T00:00:00Z"), "alerts[0].startsAt"),
    (first(endsAt="9999-12-31T23:59:59-23:59"), "alerts[0].endsAt"),
]
TABLE = SURROGATES + NULS + NUMBERS + TIMES
CONFIG_TEXT = "executors: {logger: {type: log}}\n"
# An operator's pattern that lets anything through: the rendered target is a column too.
PERMISSIVE = """  - name: permissive
    matchers: ['alertname="Permissive"']
    action: escalate
    executor: logger
    safe_pattern: '(?s).*'
    target: '{{ labels.note }}'
"""


def writer_pids(server: Running) -> list[int]:
    """The journal writer processes under the server (gunicorn master, its worker); not
    their children between fork and exec (the command executor's), which still carry
    the writer's command line."""
    found: dict[int, int] = {}  # pid -> parent pid
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    for pid in pids:
        if is_writer(pid) and _descends(pid, server):
            found[pid] = _parent(pid)
    return sorted(pid for pid, parent in found.items() if parent not in found)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _descends(pid: int, server: Running) -> bool:
    while pid > 1:
        if pid == server.process.pid:
            return True
        pid = _parent(pid)
    return False


def rows(journal: Any) -> dict[str, int]:
    """Rows only ingest writes (the dispatcher may add action events meanwhile)."""
    counts = journal.counts()
    return {key: counts[key] for key in ("notifications", "incidents", "actions")}


def post_raw(server: Running, body: bytes) -> requests.Response:
    headers = {**bearer(), "Content-Type": "application/json"}
    return requests.post(f"{server.url}/webhook", data=body, headers=headers, timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Running, Any]]:
    """A real server holding its one dispatcher slot with a running command."""
    workdir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    config = write_config(workdir, CONFIG + PERMISSIVE)
    sqlite = nullcontext(f"sqlite:///{workdir / 'journal.db'}")
    store = postgres_schema() if request.param == "postgres" else sqlite
    with store as store_url, remediator(workdir, config, store_url) as server:
        journal = open_journal(store_url)
        try:
            hold_dispatcher(server.url)
            yield server, journal
        finally:
            journal.close()


def test_the_issues_lone_surrogate_is_a_400_and_the_writer_carries_on(served) -> None:
    server, journal = served
    writers = writer_pids(server)
    assert len(writers) == 1, writers
    running = [a for a in all_actions(journal) if a["status"] == "running"]
    assert [a["strategy"] for a in running] == ["hold-the-only-slot"]
    before = rows(journal)

    response = post_raw(server, ISSUE_BODY)

    assert response.status_code == 400, response.text
    assert response.json()["field"] == "alerts[0].labels.service"
    assert writer_pids(server) == writers
    assert rows(journal) == before
    after = {a["id"]: a for a in all_actions(journal)}
    assert after[running[0]["id"]]["status"] == "running"
    events = after[running[0]["id"]]["events"]  # planned, running (+ its process group)
    assert {e["status"] for e in events} == {"planned", "running"}
    assert not [e for e in events if "crash" in e["reason"]]
    valid = notification(alert("AfterTheSurrogate", service="web"))
    follow = post_raw(server, json.dumps(valid).encode())
    assert follow.status_code == 200, follow.text
    assert follow.json()["new_incidents"] == 1
    assert rows(journal)["notifications"] == before["notifications"] + 1


@pytest.mark.parametrize(("body", "field"), TABLE, ids=[field for _, field in TABLE])
def test_every_hostile_field_is_a_400_naming_it_on_this_store(served, body, field) -> None:
    server, journal = served
    writers = writer_pids(server)
    before = rows(journal)
    response = post_raw(server, raw(body))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert rows(journal) == before
    assert writer_pids(server) == writers


@pytest.mark.parametrize("index", range(len(ACCEPTED)))
def test_what_the_store_can_hold_is_journaled_as_sent(served, index: int) -> None:
    server, journal = served
    body = json.loads(json.dumps(ACCEPTED[index]))
    body["alerts"][0]["fingerprint"] = f"accepted{index}"
    response = post_raw(server, raw(body))
    assert response.status_code == 200, response.text
    stored = [i for i in all_incidents(journal) if i["fingerprint"] == f"accepted{index}"]
    assert len(stored) == 1
    assert stored[0]["labels"] == body["alerts"][0]["labels"]
    assert stored[0]["annotations"] == body["alerts"][0]["annotations"]


def test_a_rendered_target_with_nul_is_refused_not_a_store_error(served) -> None:
    server, journal = served
    body = notification(alert("Permissive", note="a\x00b", starts_at="2026-07-03T00:00:00Z"))
    response = post_raw(server, json.dumps(body).encode())
    assert response.status_code == 200, response.text
    assert (response.json()["actions_refused"], response.json()["actions_planned"]) == (1, 0)
    action = next(a for a in all_actions(journal) if a["strategy"] == "permissive")
    assert action["status"] == "skipped"
    assert action["reason"].startswith("refused: ") and "NUL" in action["reason"]


def test_the_server_logged_no_traceback_and_no_writer_restart(served) -> None:
    server, _ = served
    output = server.output()
    assert "Traceback" not in output, output[-5000:]
    assert "journal writer exited" not in output, output[-5000:]


def test_an_unforeseen_error_is_its_requests_500_never_the_writers_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No known body reaches this (that is the point of the validation above), so a bug
    is simulated: decoding one body raises an error nobody foresaw. The writer's turn
    (a real JournalWriter on a real SQLite journal) answers that request 500, journals
    the others of the same turn, and goes on to the next turn."""
    store = SqliteStore(f"sqlite:///{tmp_path / 'journal.db'}")
    writer = JournalWriter("remediation.yml", {}, parse_config(CONFIG_TEXT), store)
    real_decode = process.decode_envelope

    def buggy(body: bytes, indexed: tuple[str, ...]) -> Any:
        if b"Bug" in body:
            raise RuntimeError("a bug nobody foresaw")
        return real_decode(body, indexed)

    monkeypatch.setattr(process, "decode_envelope", buggy)
    try:
        turn = [
            ("good", Request(NOTIFY, 1.0, json.dumps(notification(alert("Good"))).encode())),
            ("bug", Request(NOTIFY, 1.0, json.dumps(notification(alert("Bug"))).encode())),
        ]
        answers = dict(writer.journal(turn))  # type: ignore[arg-type]
        assert answers["bug"].status == 500
        assert json.loads(answers["bug"].body)["error"].startswith("internal error")
        assert answers["good"].status == 200
        later = [("next", Request(NOTIFY, 2.0, json.dumps(notification(alert("N"))).encode()))]
        assert dict(writer.journal(later))["next"].status == 200  # type: ignore[arg-type]
        assert store.counts()["notifications"] == 2
    finally:
        store.close()
