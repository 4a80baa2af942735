"""The console's incident pages (receiver/console/incidents.py) in the app gunicorn serves
(create_app), on real journals (SQLite and PostgreSQL), with incidents made by the real
engine from Alertmanager payloads and actions run by the real dispatcher (in the test's
thread, on an injected clock) with the command executor running real programs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest

from receiver.alerts import parse_notification
from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.console.blueprint import SECURITY_HEADERS
from receiver.console.queries import MAX_PAGE, PAGE_ROWS
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import approvals as approval_journal
from receiver.store.listing import PageBounds
from tests.support.payloads import alert, notification
from tests.support.processes import prometheus
from tests.support.receiver import PROMETHEUS_CONFIG
from tests.support.stores import BACKENDS, opened_store

T = 1_800_000_000.0
CONFIG = """
defaults: {cooldown: 0s, escalation_executor: logger}
executors:
  local: {type: command}
  logger: {type: log}
strategies:
  - name: careful
    matchers: ['alertname="Careful"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    approval: {timeout: 10m}
  - name: fix
    matchers: ['alertname="ServiceDown"']
    target: '{{ labels.service }}'
    steps:
      - {action: run, executor: local, command: ['/bin/false', '{{ labels.service }}']}
      - action: run
        executor: local
        command: ['/bin/echo', 'fixed {{ labels.service }}']
        wait: 30s
"""
HOSTILE = "<script>alert(1)</script>"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


class Journal:
    """A journal with the app and a dispatcher over it."""

    def __init__(self, store: Any, tmp_path: Path, text: str = CONFIG) -> None:
        self.store = store
        self.config = parse_config(text, "test.yml", tmp_path)
        self.clock = Clock()
        self.dispatcher = Dispatcher(SimpleNamespace(config=self.config), store, clock=self.clock)
        self.client = create_app(AppState(self.config, store)).test_client()

    def post(self, at: float, *alerts: dict[str, Any], group_key: str | None = None) -> None:
        """Journal a notification received at `at` (seconds)."""
        body = notification(*alerts, **({"group_key": group_key} if group_key else {}))
        ingest(self.store, self.config, parse_notification(body), at)

    def dispatch_until(self, until: float) -> None:
        """Run the dispatcher each second of the clock up to `until`."""
        while self.clock.now < until:
            self.clock.now += 1
            while self.dispatcher.run_once():
                pass


@pytest.fixture(params=BACKENDS)
def journal(request, tmp_path: Path) -> Iterator[Journal]:
    with opened_store(request.param, tmp_path) as store:
        yield Journal(store, tmp_path)


class Events(HTMLParser):
    """The timeline entries (kind, at) and the rows a page lists, by data-testid."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, float]] = []
        self.rows: list[str] = []
        self.rel: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("data-testid") == "event":
            self.events.append((found["data-kind"] or "", float(found["data-at"] or "nan")))
        if found.get("data-testid") == "incident-row":
            self.rows.append(found["data-incident"] or "")
        if tag == "a" and found.get("rel"):
            self.rel.add(found["rel"] or "")


def parsed(html: str) -> Events:
    parser = Events()
    parser.feed(html)
    return parser


def page(journal: Journal, path: str, status: int = 200) -> str:
    answer = journal.client.get(path)
    assert answer.status_code == status, answer.get_data(as_text=True)[:2000]
    assert answer.mimetype == "text/html"
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    return answer.get_data(as_text=True)


def only_incident(journal: Journal, alertname: str = "ServiceDown") -> dict[str, Any]:
    (found,) = journal.store.list_incidents(alertname=alertname).items
    return found


def test_the_timeline_lists_every_event_of_a_remediated_incident_in_order(journal):
    firing = alert(service="web", starts_at=iso(T - 30))
    journal.post(T, firing)
    journal.post(T + 1, alert("Other", service="db"), group_key="another group")
    journal.dispatch_until(T + 40)
    journal.post(T + 45, firing)  # Alertmanager's repeat: the same group, whole
    resolved = {**firing, "status": "resolved", "endsAt": iso(T + 50)}
    journal.post(T + 60, resolved)
    journal.post(T + 70, alert(service="api", starts_at=iso(T + 65)))  # after it: not its own
    (incident,) = journal.store.list_incidents(service="web").items
    html = page(journal, f"/incidents/{incident['id']}")
    events = parsed(html).events

    ats = [at for _, at in events]
    assert ats == sorted(ats)
    step_one = ["planned", "gate", "running", "outcome"]  # claimed; started; failed
    step_two = ["gate", "running", "executed", "output", "outcome"]
    assert [kind for kind, _ in events] == [
        "notification",
        "opened",
        *step_one,
        "planned",  # step 2 planned by step 1's failure, waiting 30 s
        *step_two,
        "outcome",  # the runbook run: cured
        "notification",
        "resolved",
        "notification",
    ]
    # the times are the journal's: received, and the alert's end for the resolution
    assert events[0] == ("notification", T)
    assert ("resolved", T + 50) in events
    assert events[-1] == ("notification", T + 60)
    assert "fixed web" in html  # the command's output
    assert "[&#34;/bin/echo&#34;, &#34;fixed web&#34;]" in html  # the command as rendered
    assert "another group" not in html  # the other group's notification is not its own


def test_a_hostile_label_is_shown_escaped(journal):
    journal.post(T, alert(service="web", note=HOSTILE, starts_at=iso(T - 5)))
    incident = only_incident(journal)
    echoed = f"/incidents?service={quote(HOSTILE)}&alertname={quote(HOSTILE)}"
    for path in (f"/incidents/{incident['id']}", "/incidents", echoed, "/"):
        html = page(journal, path)
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or path == "/"


def test_the_list_is_newest_first_in_pages_of_25(journal):
    count = PAGE_ROWS + 5
    for n in range(count):
        journal.post(T + n, alert(service=f"s{n}", starts_at=iso(T - 1000 + n)))
    first = parsed(page(journal, "/incidents"))
    ids = [int(row) for row in first.rows]
    by_start = journal.store.list_incidents(limit=count).items  # newest start first
    assert ids == [i["id"] for i in by_start][:PAGE_ROWS]
    assert first.rel == {"next"}
    second = parsed(page(journal, "/incidents?page=2"))
    assert [int(row) for row in second.rows] == [i["id"] for i in by_start][PAGE_ROWS:]
    assert second.rel == {"prev"}


def test_filters_narrow_the_list(journal):
    journal.post(T, alert(service="web", starts_at=iso(T - 9)))
    journal.post(T + 1, alert("DiskFull", service="db", starts_at=iso(T - 8)))
    journal.post(
        T + 2,
        alert("DiskFull", service="db", status="resolved", starts_at=iso(T - 8), ends_at=iso(T)),
    )
    disk = only_incident(journal, "DiskFull")
    web = only_incident(journal, "ServiceDown")
    cases = {
        "/incidents?status=resolved": [disk["id"]],
        "/incidents?status=firing": [web["id"]],
        "/incidents?service=web": [web["id"]],
        "/incidents?alertname=DiskFull&service=db": [disk["id"]],
        "/incidents?alertname=DiskFull&service=web": [],
        "/incidents?status=&service=&alertname=": [disk["id"], web["id"]],
    }
    for path, expected in cases.items():
        assert [int(row) for row in parsed(page(journal, path)).rows] == expected, path


@pytest.mark.parametrize(
    "query",
    ["status=open", "page=0", "page=abc", "page=-1", "page=99999999999999999999", "service=a%00b"],
)
def test_a_bad_filter_is_a_400_page(journal, query):
    before = journal.store.counts()
    html = page(journal, f"/incidents?{query}", 400)
    assert 'data-testid="error-reason"' in html
    assert journal.store.counts() == before


def test_an_unknown_incident_is_a_404_page(journal):
    html = page(journal, "/incidents/12345", 404)
    assert "<h1>No such incident</h1>" in html
    assert 'data-testid="error-reason">No incident 12345.<' in html


@pytest.mark.parametrize(
    "path",
    [
        "/incidents/abc",
        "/incidents/-1",
        "/incidents/99999999999999999999",
        "/actions/abc",
        "/actions/99999999999999999999",
    ],
)
def test_an_id_that_is_no_whole_number_is_a_400_page_on_every_page(journal, path):
    html = page(journal, path, 400)
    assert "<h1>Bad id</h1>" in html
    if path.endswith("abc"):  # as the API answers a word
        assert journal.client.get(f"/api/v1{path}").status_code == 400


@pytest.mark.parametrize("path", ["/incidents", "/actions", "/breakers"])
def test_every_list_takes_the_same_page_numbers(journal, path):
    page(journal, f"{path}?page={MAX_PAGE}")
    for bad in ("0", str(MAX_PAGE + 1), "x"):
        html = page(journal, f"{path}?page={bad}", 400)
        assert "<h1>Bad page</h1>" in html
        assert f"from 1 to {MAX_PAGE}" in html


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=open", "status"),
        ("service=a%00b", "service"),
        ("alertname=" + "a" * 1001, "alertname"),
    ],
)
def test_a_bad_filter_is_titled_by_its_field(journal, query, field):
    assert f"<h1>Bad {field}</h1>" in page(journal, f"/incidents?{query}", 400)


def test_an_alert_without_a_service_or_source_says_none(journal):
    bare = alert("Unrouted", starts_at=iso(T - 5))
    bare["generatorURL"] = ""
    journal.post(T, bare)
    (found,) = journal.store.list_incidents(alertname="Unrouted").items
    html = page(journal, f"/incidents/{found['id']}")
    assert (
        '<td data-testid="service"><span class="muted" data-testid="no-service">(none)</span></td>'
        in html
    )
    assert '<td data-testid="source"><span class="none">-</span></td>' in html
    assert 'href="/incidents?service="' not in html
    listed = page(journal, "/incidents")
    assert 'data-testid="no-service">(none)<' in listed


def test_the_strategy_field_says_whether_one_matched_and_which(journal):
    journal.post(T, alert(service="web", starts_at=iso(T - 5)))
    journal.post(T, alert("Unrouted", service="web", starts_at=iso(T - 5)))
    journal.dispatch_until(T + 2)
    matched = page(journal, f"/incidents/{only_incident(journal)['id']}")
    assert (
        '<td data-testid="strategy">a strategy matched: '
        '<a href="/strategies#strategy-fix">fix</a></td>' in matched
    )
    unmatched = page(journal, f"/incidents/{only_incident(journal, 'Unrouted')['id']}")
    assert '<td data-testid="strategy">no strategy matched</td>' in unmatched


def test_an_action_names_its_run_by_the_number_the_incident_page_shows(journal):
    # two incidents, one run each: run 1 of each, one of them journal row 2
    journal.post(T, alert(service="web", starts_at=iso(T - 5)))
    journal.post(T, alert(service="db", starts_at=iso(T - 5)))
    journal.dispatch_until(T + 2)
    run_ids = set()
    for incident in journal.store.list_incidents(alertname="ServiceDown").items:
        detail = journal.store.incident_detail(incident["id"], PageBounds(50, 2**40, 2**20))
        (run,) = detail["runs"]
        assert run["run"] == 1
        (first,) = [a for a in detail["actions"] if a["step"] == 1]
        run_ids.add(first["run_id"])
        html = page(journal, f"/actions/{first['id']}")
        assert '<span data-testid="run">run 1</span>' in html
        assert page(journal, f"/incidents/{incident['id']}").count("<td>1</td>") >= 1
    assert run_ids == {1, 2}  # one action's run id is not its run number


def test_the_actions_of_an_incident_are_paged_by_offset(journal):
    journal.post(T, alert(service="web", starts_at=iso(T - 30)))
    journal.dispatch_until(T + 40)
    incident = only_incident(journal)
    second = page(journal, f"/incidents/{incident['id']}?offset=1")
    kinds = [kind for kind, _ in parsed(second).events]
    # only the second action's events, with the incident's own entries
    assert kinds.count("planned") == 1
    assert "output" in kinds
    assert 'rel="prev"' in second
    assert page(journal, f"/incidents/{incident['id']}?offset=x", 400)


@pytest.mark.parametrize("path", ["/", "/incidents", "/incidents/1"])
def test_a_journal_that_fails_is_a_503_page(tmp_path, path):
    with opened_store("sqlite", tmp_path) as store:
        journal = Journal(store, tmp_path)
        journal.post(T, alert(service="web", starts_at=iso(T - 30)))
        assert only_incident(journal)["id"] == 1
        # the table disappears under the server: the driver fails mid-answer
        with sqlite3.connect(tmp_path / "journal.db") as other:
            other.execute("ALTER TABLE incidents RENAME TO incidents_elsewhere")
        html = page(journal, path, 503)
        assert "Journal unavailable" in html


def test_events_left_out_by_the_read_bounds_are_said(tmp_path):
    bounded = CONFIG.replace("defaults:", "limits: {max_field_bytes: 64}\ndefaults:")
    with opened_store("sqlite", tmp_path) as store:
        journal = Journal(store, tmp_path, bounded)
        journal.post(T, alert(service="web", starts_at=iso(T - 30)))
        journal.dispatch_until(T + 2)
        incident = only_incident(journal)
        (first,) = journal.store.list_actions(strategy="fix", status="failed").items
        html = page(journal, f"/incidents/{incident['id']}")
        # an event takes more than the 64 bytes: only each action's latest is shown
        kinds = [kind for kind, _ in parsed(html).events]
        assert kinds.count("outcome") == 1 and "gate" not in kinds
        assert 'data-testid="cut-actions"' in html
        assert f'href="/actions/{first["id"]}">action {first["id"]}</a>' in html


def test_an_approved_action_shows_the_request_the_decision_and_the_run(journal):
    journal.post(T, alert("Careful", service="db", starts_at=iso(T - 5)))
    journal.dispatch_until(T + 2)  # held: awaiting approval
    journal.dispatcher.send_approval_alerts()
    (held,) = journal.store.list_actions(strategy="careful").items
    journal.store.change(
        lambda tx: approval_journal.decide(tx, held["id"], "approved", "alice", "go", T + 3)
    )
    journal.dispatch_until(T + 4)
    html = page(journal, f"/incidents/{only_incident(journal, 'Careful')['id']}")
    kinds = [kind for kind, _ in parsed(html).events]
    assert kinds == [
        "notification",
        "opened",
        "planned",
        "approval",  # waiting: awaiting_approval
        "approval",  # RemediationAwaitingApproval posted
        "approval",  # approved by alice: go
        "gate",  # claimed: all gates passed
        "executed",
        "outcome",  # the action: succeeded
        "outcome",  # its runbook run: cured
    ]
    assert "approved by alice: go" in html


WAVE = """
prometheus: {url: PROM}
defaults: {cooldown: 0s}
executors:
  logger: {type: log}
strategies:
  - name: heal
    matchers: ['alertname="Errors"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet:
      progressive: {min_targets: 3, gather: 1s, canary: 1, stages: [100%], pause: 0s}
      analysis:
        interval: 2s
        step: 1s
        metrics:
          # the same constant on both sides: the canary is never worse, the stage passes
          - {name: steady, query: 'vector(1)'}
"""


@pytest.fixture(scope="module")
def prom(tmp_path_factory) -> Iterator[Any]:
    """A real Prometheus: the canary analysis' range queries go to it."""
    with prometheus(tmp_path_factory.mktemp("prom"), PROMETHEUS_CONFIG) as running:
        yield running


def test_the_canary_analysis_of_its_fleet_is_on_the_timeline(journal, prom, tmp_path):
    now = time.time()  # the analysis asks Prometheus about real times
    wave = Journal(journal.store, tmp_path, WAVE.replace("PROM", prom.url))
    wave.clock.now = now
    instances = [f"web-{n}" for n in range(1, 5)]
    wave.post(
        now,
        *[alert("Errors", service="web", instance=i, starts_at=iso(now - 5)) for i in instances],
    )
    wave.dispatch_until(now + 3)  # gathered; the canary acted on
    (canary,) = [a for a in wave.store.list_actions().items if a["status"] == "succeeded"]
    wave.clock.now = now + 10  # its analysis is due
    assert wave.dispatcher.run_analyses() == 1
    html = page(wave, f"/incidents/{canary['incident_id']}")
    events = parsed(html).events
    kinds = [kind for kind, _ in events]
    assert kinds.count("analysis") == 1
    assert kinds.index("analysis") > kinds.index("outcome")  # judged after the canary acted
    assert "canary analysis of fleet web (heal), stage 0: pass" in html
