"""The approve/deny API in the app gunicorn serves (create_app), on a real journal
(SQLite and PostgreSQL), with the real dispatcher run in the test's thread on an
injected clock and the `log` executor: who decided, bad bodies, and the outbox of the
`RemediationAwaitingApproval` alert with a `log` escalation executor."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from receiver import approvals
from receiver.alerts import parse_notification
from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store import approvals as approval_journal
from receiver.webconfig import WebAuth, load_web_config
from tests.support.payloads import alert, notification
from tests.support.stores import BACKENDS, opened_store
from tests.support.webconfig import web_config

T = 1_800_000_000.0
CONFIG = """
server:
  auth: {basic_auth: {username: alice, password_file: password}}
defaults: {escalation_executor: logger, cooldown: 0s}
executors:
  logger: {type: log}
strategies:
  - name: careful-restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    approval: {timeout: 10m}
"""


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def held(request, tmp_path: Path) -> Iterator[tuple[Any, Any, Dispatcher, Clock, int]]:
    """(test client, store, dispatcher, clock, id of the action awaiting approval)."""
    (tmp_path / "password").write_text("s3cret\n")
    config = parse_config(CONFIG, "test.yml", tmp_path)
    with opened_store(request.param, tmp_path) as store:
        ingest(store, config, parse_notification(notification(alert(service="web"))), T)
        clock = Clock()
        dispatcher = Dispatcher(SimpleNamespace(config=config), store, clock=clock)
        dispatcher.run_once()
        (action,) = store.list_actions().items
        assert action["waiting"] == "awaiting_approval"
        client = create_app(AppState(config, store)).test_client()
        yield client, store, dispatcher, clock, action["id"]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_the_authenticated_user_is_who_decided_whatever_the_body_says(held):
    client, store, dispatcher, clock, action_id = held
    answer = client.post(
        f"/api/v1/actions/{action_id}/approve",
        json={"by": "mallory", "comment": "ok"},
        headers=basic("alice", "s3cret"),
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["decided_by"] == "alice"
    clock.now += 1
    assert dispatcher.run_once() is True
    (action,) = store.list_actions().items
    assert action["status"] == "succeeded"
    assert "approved by alice: ok" in [e["reason"] for e in action["events"]]


def test_a_decided_action_no_longer_says_it_waits_for_a_person(held):
    client, store, _dispatcher, _clock, action_id = held
    answer = client.post(f"/api/v1/actions/{action_id}/approve", headers=basic("alice", "s3cret"))
    assert answer.status_code == 200
    (action,) = store.list_actions().items
    # approved, not yet claimed: planned and next in line, not "awaiting_approval"
    assert (action["status"], action["waiting"]) == ("planned", None)
    assert store.waiting_counts().get("awaiting_approval", 0) == 0


def test_a_web_config_user_is_who_decided_whatever_the_body_says(tmp_path, backend):
    """With --web.config.file users guarding the API, the signed-in user decides: a
    `by` in the body (a name anyone can type) is not taken instead."""
    (tmp_path / "token").write_text("t0ken\n")
    config = parse_config(
        CONFIG.replace(
            "basic_auth: {username: alice, password_file: password}", "bearer_token_file: token"
        ),
        "test.yml",
        tmp_path,
    )
    path = tmp_path / "web.yml"
    path.write_text(web_config({"carol": "c4rol"}))
    with opened_store(backend, tmp_path) as store:
        ingest(store, config, parse_notification(notification(alert(service="web"))), T)
        Dispatcher(SimpleNamespace(config=config), store, clock=Clock()).run_once()
        (action,) = store.list_actions().items
        web = WebAuth(load_web_config(str(path)))
        client = create_app(AppState(config, store, web=web)).test_client()
        answer = client.post(
            f"/api/v1/actions/{action['id']}/deny",
            json={"by": "mallory"},
            headers=basic("carol", "c4rol"),
        )
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["decided_by"] == "carol"


@pytest.mark.parametrize(
    ("body", "field"),
    [("[1, 2]", "body"), ('{"by": 5}', "by"), ('{"comment": ["x"]}', "comment"), ("{", "body")],
)
def test_a_bad_body_is_refused_and_changes_nothing(held, body, field):
    client, _store, _dispatcher, _clock, action_id = held
    answer = client.post(
        f"/api/v1/actions/{action_id}/deny",
        data=body,
        content_type="application/json",
        headers=basic("alice", "s3cret"),
    )
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    detail = client.get(f"/api/v1/actions/{action_id}").get_json()
    assert detail["approval"]["awaiting"] is True


@pytest.mark.parametrize("path", ["abc", "-1", "99999999999999999999999"])
def test_an_id_that_is_not_a_whole_number_is_400(held, path):
    client = held[0]
    headers = basic("alice", "s3cret")
    assert client.post(f"/api/v1/actions/{path}/approve", headers=headers).status_code == 400
    assert client.get(f"/api/v1/actions/{path}").status_code == 400


def test_wrong_credentials_are_401_and_decide_nothing(held):
    client, _store, _dispatcher, _clock, action_id = held
    answer = client.post(f"/api/v1/actions/{action_id}/approve", headers=basic("alice", "x"))
    assert answer.status_code == 401
    assert client.get(f"/api/v1/actions/{action_id}").get_json()["approval"]["awaiting"]


def test_with_a_log_escalation_executor_the_alert_is_logged_then_ended(held):
    client, store, dispatcher, clock, action_id = held
    assert dispatcher.send_approval_alerts() == 1  # the request, logged
    assert dispatcher.send_approval_alerts() == 0  # posted once, not again before a minute
    client.post(f"/api/v1/actions/{action_id}/deny", headers=basic("alice", "s3cret"))
    clock.now += 1
    dispatcher.run_once()
    assert dispatcher.send_approval_alerts() == 1  # its end
    assert store.look(lambda tx: approval_journal.alerts_due(tx, clock.now)) == []
    (action,) = store.list_actions().items
    reasons = [e["reason"] for e in action["events"]]
    assert action["status"] == "skipped"
    # the log says what a person needs to act: where, by when, what would run
    (logged,) = [r for r in reasons if r.startswith("RemediationAwaitingApproval logged")]
    assert f"/actions/{action_id} by " in logged
    assert logged.endswith("would run: " + approvals.what_would_run("restart", "web", {}))
    assert "not sent to Alertmanager" in logged
    ended = "RemediationAwaitingApproval ended (logged, not sent to Alertmanager: a `log` executor)"
    assert ended in reasons


def test_the_alert_is_posted_again_while_awaited(held):
    _client, _store, dispatcher, clock, _action_id = held
    assert dispatcher.send_approval_alerts() == 1
    clock.now += approval_journal.REPOST_INTERVAL
    assert dispatcher.send_approval_alerts() == 1


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param
