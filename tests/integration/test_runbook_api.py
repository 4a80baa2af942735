"""The read API, /metrics and /api/v1/stats on runbooks: the app gunicorn serves
(create_app) on a real SQLite journal, with a real dispatcher running real commands.

A two-step runbook (a command that fails, then a restart through the `log` executor)
leaves a trail that `GET /api/v1/incidents/<id>` must show whole and in order, and that
the step and run totals must count; a step with a long `wait` stays planned, waiting,
and must be visible as such in the API, /metrics and the stats.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from receiver.app import AppState, create_app
from receiver.config import Config, parse_config
from receiver.dispatcher import Dispatcher
from receiver.store.listing import marker
from receiver.store.sqlite import SqliteStore
from tests.support.payloads import alert, notification

#: what the failing step prints before it fails: its output is journaled, and cut
NOISE = 3000
FAILING = f"import sys; sys.stdout.write('x' * {NOISE}); raise SystemExit(3)"
WAIT_SECONDS = 3600

CONFIG = f"""
defaults:
  cooldown: 0s
  escalation_executor: logger
executors:
  logger: {{type: log}}
  local: {{type: command}}
strategies:
  - name: fix-web
    matchers: ['alertname="ServiceDown"']
    target: '{{{{ labels.service }}}}'
    steps:
      - name: script
        action: run
        executor: local
        command: [{sys.executable!r}, '-c', {FAILING!r}]
      - name: restart
        action: restart
        executor: logger
  - name: hopeless
    matchers: ['alertname="Hopeless"']
    target: '{{{{ labels.service }}}}'
    steps:
      - action: run
        executor: local
        command: [{sys.executable!r}, '-c', {FAILING!r}]
      - action: run
        executor: local
        command: [{sys.executable!r}, '-c', {FAILING!r}]
  - name: patient
    matchers: ['alertname="Later"']
    target: '{{{{ labels.service }}}}'
    steps:
      - action: restart
        executor: logger
        wait: {WAIT_SECONDS}s
"""


@dataclass
class Source:
    config: Config


@dataclass
class Journal:
    client: FlaskClient
    store: SqliteStore
    config: Config
    db: Path

    def fire(self, name: str, service: str, **labels: str) -> None:
        body = notification(
            alert(name, service=service, starts_at="2026-11-21T10:00:00Z", **labels)
        )
        response = self.client.post("/webhook", json=body)
        assert response.status_code == 200, response.text

    def dispatch(self) -> None:
        """Run the dispatcher until nothing is due, then deliver the escalations owed."""
        dispatcher = Dispatcher(Source(self.config), self.store)
        for _ in range(50):  # each call claims one action; a bound against a loop
            if not dispatcher.run_once():
                break
        dispatcher.send_escalations()

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        return response.get_json()

    def incident_id(self, alertname: str) -> int:
        found = self.get(f"/api/v1/incidents?alertname={alertname}")["data"]
        assert len(found) == 1, found
        return found[0]["id"]


def build(tmp_path: Path, text: str = CONFIG) -> Journal:
    config = parse_config(text, base_dir=tmp_path)
    db = tmp_path / "journal.db"
    store = SqliteStore(f"sqlite:///{db}")
    return Journal(create_app(AppState(config, store)).test_client(), store, config, db)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    built = build(tmp_path)
    yield built
    built.store.close()


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# ---------------------------------------------------------------- GET /api/v1/incidents/<id>


def test_incident_shows_its_run_and_each_step_in_order_with_its_events(journal: Journal):
    journal.fire("ServiceDown", "web")
    journal.dispatch()
    incident_id = journal.incident_id("ServiceDown")

    detail = journal.get(f"/api/v1/incidents/{incident_id}")

    listed = journal.get("/api/v1/incidents?alertname=ServiceDown")["data"][0]
    assert {key: detail[key] for key in listed} == listed  # the incident as listed
    [run] = detail["runs"]
    assert (run["strategy"], run["run"], run["status"]) == ("fix-web", 1, "cured")
    assert run["current_step"] is None and run["escalation"] is None
    assert parse_iso(run["started_at"]) <= parse_iso(run["ended_at"])
    steps = [(a["step"], a["run_id"], a["action"], a["status"]) for a in detail["actions"]]
    assert steps == [(1, run["id"], "run", "failed"), (2, run["id"], "restart", "succeeded")]
    assert [a["id"] for a in detail["actions"]] == sorted(a["id"] for a in detail["actions"])
    assert detail["actions_total"] == 2 and detail["actions_next_offset"] is None
    for action in detail["actions"]:
        assert action["waiting"] is None  # they ran: nothing to wait for
        statuses = [event["status"] for event in action["events"]]
        assert statuses[0] == "planned" and statuses[-1] == action["status"], statuses
        assert "running" in statuses
        times = [parse_iso(event["at"]) for event in action["events"]]
        assert times == sorted(times)
    # the second step was planned by the first one's failure, not before it
    failed_at = parse_iso(detail["actions"][0]["events"][-1]["at"])
    assert parse_iso(detail["actions"][1]["events"][0]["at"]) >= failed_at


def test_uncured_run_shows_its_escalation(journal: Journal):
    journal.fire("Hopeless", "db")
    journal.dispatch()

    detail = journal.get(f"/api/v1/incidents/{journal.incident_id('Hopeless')}")

    [run] = detail["runs"]
    assert run["status"] == "uncured"
    assert run["escalation"] == "sent"
    assert run["escalation_note"].startswith("escalated via logger")
    assert [(a["step"], a["status"]) for a in detail["actions"]] == [(1, "failed"), (2, "failed")]


def test_waiting_step_shows_why_and_until_when(journal: Journal):
    journal.fire("Later", "cache")
    journal.dispatch()

    detail = journal.get(f"/api/v1/incidents/{journal.incident_id('Later')}")

    [action] = detail["actions"]
    assert (action["status"], action["waiting"], action["step"]) == ("planned", "wait", 1)
    planned_at = parse_iso(action["created_at"])
    assert (parse_iso(action["not_before"]) - planned_at).total_seconds() == pytest.approx(
        WAIT_SECONDS, abs=1
    )
    assert detail["runs"][0]["status"] == "running" and detail["runs"][0]["current_step"] == 1
    # the listing of actions carries the same fields
    [listed] = journal.get("/api/v1/actions?strategy=patient")["data"]
    assert {key: listed[key] for key in ("step", "run_id", "waiting", "not_before")} == {
        "step": 1,
        "run_id": detail["runs"][0]["id"],
        "waiting": "wait",
        "not_before": action["not_before"],
    }


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/api/v1/incidents/12345", 404, None),
        ("/api/v1/incidents/99999999999999999999999999", 404, None),  # past any row id
        ("/api/v1/incidents/" + "9" * 5000, 404, None),  # more digits than int() takes
        ("/api/v1/incidents/abc", 400, "id"),
        ("/api/v1/incidents/-1", 400, "id"),
        ("/api/v1/incidents/1.5", 400, "id"),
        ("/api/v1/incidents/%D9%A1", 400, "id"),  # an Arabic-Indic digit is no id here
        ("/api/v1/incidents/1?offset=x", 400, "limit"),
    ],
)
def test_unknown_or_malformed_id_is_answered_in_json(
    journal: Journal, path: str, status: int, field: str | None
):
    journal.fire("ServiceDown", "web")  # incident 1 exists: "1?offset=x" fails on offset
    response = journal.client.get(path)
    assert response.status_code == status, response.text
    body = response.get_json()
    assert body["status"] == "error"
    assert body.get("field") == field


def test_store_failure_is_a_503_not_a_partial_answer(journal: Journal):
    journal.fire("ServiceDown", "web")
    incident_id = journal.incident_id("ServiceDown")
    # the runs table disappears under the server: the driver fails mid-answer
    with sqlite3.connect(journal.db) as other:
        other.execute("ALTER TABLE runbook_runs RENAME TO runbook_runs_elsewhere")
    response = journal.client.get(f"/api/v1/incidents/{incident_id}")
    assert response.status_code == 503, response.text
    assert response.get_json() == {"status": "error", "error": "journal unavailable, retry later"}


BOUNDED = CONFIG.replace(
    "defaults:\n", "limits: {max_field_bytes: 512, max_page_bytes: 4096}\ndefaults:\n"
)


def test_detail_is_bounded_in_fields_and_bytes(tmp_path: Path):
    journal = build(tmp_path, BOUNDED)
    try:
        journal.fire("ServiceDown", "web", note="n" * 2000)
        journal.dispatch()
        incident_id = journal.incident_id("ServiceDown")

        first = journal.get(f"/api/v1/incidents/{incident_id}")

        # labels share 512 bytes in key order: alertname and its value, then the key
        # `note`; what is left of the budget is the room for the note's value
        room = 512 - len("alertname") - len("ServiceDown") - len("note")
        assert first["truncated"] is True
        assert first["labels"]["note"] == "n" * room + marker(2000 - room)
        assert "service" not in first["labels"] and first["omitted"]["labels"]["bytes"] > 0
        failed = first["actions"][0]
        assert failed["status"] == "failed" and failed["truncated"] is True
        assert failed["output"].endswith(marker(NOISE - 512))
        assert len(journal.client.get(f"/api/v1/incidents/{incident_id}").data) <= 4096
        # a page full in bytes says where to read on, and the rest is there
        shown = len(first["actions"])
        assert shown < 2 and first["actions_next_offset"] == shown
        rest = journal.get(f"/api/v1/incidents/{incident_id}?offset={shown}")
        assert [a["step"] for a in first["actions"] + rest["actions"]] == [1, 2]
        assert rest["actions_next_offset"] is None
    finally:
        journal.store.close()


# ---------------------------------------------------------------- /metrics and stats


def scrape(journal: Journal) -> dict[str, Any]:
    text = journal.client.get("/metrics").get_data(as_text=True)
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def test_metrics_count_steps_runs_escalations_and_waiting(journal: Journal):
    journal.fire("ServiceDown", "web")
    journal.fire("Hopeless", "db")
    journal.fire("Later", "cache")
    journal.dispatch()

    families = scrape(journal)

    for name, kind in (
        ("remediator_runbook_steps", "counter"),
        ("remediator_runbook_runs", "counter"),
        ("remediator_escalations", "counter"),
        ("remediator_actions_waiting", "gauge"),
    ):
        assert families[name].type == kind, name
        assert families[name].documentation, f"{name} has no help text"
    steps = samples(families["remediator_runbook_steps"], "_total")

    def step(strategy: str, index: int, outcome: str) -> float:
        return steps[(("outcome", outcome), ("step", str(index)), ("strategy", strategy))]

    assert step("fix-web", 1, "failed") == 1
    assert step("fix-web", 2, "succeeded") == 1
    assert step("fix-web", 2, "failed") == 0  # seeded: rate() sees the first one
    assert step("hopeless", 1, "failed") == step("hopeless", 2, "failed") == 1
    runs = samples(families["remediator_runbook_runs"], "_total")
    assert runs[(("status", "cured"), ("strategy", "fix-web"))] == 1
    assert runs[(("status", "uncured"), ("strategy", "hopeless"))] == 1
    assert runs[(("status", "uncured"), ("strategy", "fix-web"))] == 0
    escalations = samples(families["remediator_escalations"], "_total")
    assert escalations == {
        (("outcome", "sent"),): 1,
        (("outcome", "undeliverable"),): 0,
        (("outcome", "retrying"),): 0,
    }
    waiting = samples(families["remediator_actions_waiting"])
    assert waiting == {
        (("reason", "wait"),): 1,
        (("reason", "locked"),): 0,
        (("reason", "cooldown"),): 0,
        (("reason", "concurrency"),): 0,
        (("reason", "fleet"),): 0,
        (("reason", "awaiting_approval"),): 0,
        (("reason", "queued"),): 0,
    }


def test_stats_count_outcomes_per_step_run_ends_and_waiting(journal: Journal):
    journal.fire("ServiceDown", "web")
    journal.fire("Hopeless", "db")
    journal.fire("Later", "cache")
    journal.dispatch()

    stats = journal.get("/api/v1/stats")

    fix = stats["strategies"]["fix-web"]
    assert list(fix["steps"]) == ["1", "2"]
    assert fix["steps"]["1"]["failed"] == 1 and fix["steps"]["1"]["succeeded"] == 0
    assert fix["steps"]["2"]["succeeded"] == 1
    assert fix["runs"] == {"cured": 1, "uncured": 0, "cancelled": 0, "dry_run": 0}
    assert stats["strategies"]["hopeless"]["runs"]["uncured"] == 1
    # both steps of each runbook are attempts of the strategy
    assert (fix["attempts"], fix["successes"], fix["success_rate"]) == (2, 1, 0.5)
    assert stats["waiting"] == {
        "wait": 1,
        "locked": 0,
        "cooldown": 0,
        "concurrency": 0,
        "fleet": 0,
        "awaiting_approval": 0,
        "queued": 0,
    }
    assert stats["escalations"] == {"sent": 1, "undeliverable": 0, "retrying": 0}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/incidents/1?offset=99999999999999999999999",
        "/api/v1/incidents?offset=99999999999999999999999",
        "/api/v1/actions?incident_id=99999999999999999999999",
        "/api/v1/actions?offset=" + "9" * 5000,  # more digits than int() takes
    ],
)
def test_numbers_past_the_journal_are_a_400_not_a_500(journal: Journal, path: str):
    journal.fire("ServiceDown", "web")
    response = journal.client.get(path)
    assert response.status_code == 400, response.text
    assert response.get_json()["status"] == "error"
