"""The console's actions pages in the app gunicorn serves (create_app), on a real journal
(SQLite and PostgreSQL), with the real engine and dispatcher (run in the test's thread
on an injected clock, `log` executor): the list with its filters and pages, the action
page, and approve / deny from its forms with every guard a form post passes (the
signed-in user, the form token, Fetch Metadata)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.console.blueprint import CONTENT_SECURITY_POLICY
from receiver.console.queries import PAGE_ROWS
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store.approvals import MAX_COMMENT
from receiver.webconfig import WebAuth, load_web_config
from tests.support.html_page import by_testid, form_token, links, one
from tests.support.payloads import alert, notification
from tests.support.stores import BACKENDS, opened_store
from tests.support.webconfig import web_config

T = 1_800_000_000.0
STRATEGY = """
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
  - name: quick-restart
    matchers: ['alertname="Quick"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
#: `server.auth` of each way of signing in: basic (alice's password), none at all, and
#: a web config (alice and bob) in front of everything
SERVER_AUTH = {
    "basic": "server:\n  auth: {basic_auth: {username: alice, password_file: password}}\n",
    "none": "",
    "web": "",
}


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ALICE, BOB = basic("alice", "s3cret"), basic("bob", "b0b-pass")


@contextmanager
def console_stack(backend: str, tmp_path: Path, auth: str) -> Iterator[SimpleNamespace]:
    """A client of the app on a fresh journal holding one action awaiting approval
    (`held`, service web), signed in as `auth` says, with the dispatcher and its clock."""
    (tmp_path / "password").write_text("s3cret\n")
    config = parse_config(SERVER_AUTH[auth] + STRATEGY, "test.yml", tmp_path)
    web = None
    if auth == "web":
        path = tmp_path / "web.yml"
        path.write_text(web_config({"alice": "s3cret", "bob": "b0b-pass"}))
        web = WebAuth(load_web_config(str(path)))
    with opened_store(backend, tmp_path) as store:
        ingest(store, config, parse_notification(notification(alert(service="web"))), T)
        clock = Clock()
        dispatcher = Dispatcher(SimpleNamespace(config=config), store, clock=clock)
        dispatcher.run_once()
        (held,) = store.list_actions().items
        assert held["waiting"] == "awaiting_approval"
        client = create_app(AppState(config, store, web=web)).test_client()
        headers = ALICE if auth in ("basic", "web") else {}
        yield SimpleNamespace(
            client=client,
            config=config,
            store=store,
            dispatcher=dispatcher,
            clock=clock,
            held=held["id"],
            headers=headers,
        )


@pytest.fixture(params=BACKENDS)
def stack(request, tmp_path: Path) -> Iterator[SimpleNamespace]:
    with console_stack(request.param, tmp_path, "basic") as found:
        yield found


@pytest.fixture(params=BACKENDS)
def web_stack(request, tmp_path: Path) -> Iterator[SimpleNamespace]:
    with console_stack(request.param, tmp_path, "web") as found:
        yield found


def action_page(s: SimpleNamespace, headers: dict[str, str] | None = None) -> str:
    answer = s.client.get(f"/actions/{s.held}", headers=s.headers if headers is None else headers)
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def post(s: SimpleNamespace, verb: str, form: dict[str, str], **headers: str) -> Any:
    return s.client.post(f"/actions/{s.held}/{verb}", data=form, headers={**s.headers, **headers})


def detail(s: SimpleNamespace) -> dict[str, Any]:
    from receiver.store.listing import PageBounds

    return s.store.action_detail(s.held, PageBounds(1, 1 << 20, 4096))


def still_awaiting(s: SimpleNamespace) -> bool:
    found = detail(s)
    return found["status"] == "planned" and found["approval"]["awaiting"] is True


# ---------------------------------------------------------------- approve / deny


def test_approving_from_the_form_runs_the_action(stack):
    page = action_page(stack)
    assert one(page, "action-status").text == "planned"
    assert by_testid(page, "approve") and by_testid(page, "deny")
    answer = post(stack, "approve", {"csrf_token": form_token(page), "comment": "looks safe"})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/actions/{stack.held}?notice=approved")
    stack.clock.now += 1
    assert stack.dispatcher.run_once() is True
    after = action_page(stack)
    assert one(after, "action-status").text == "succeeded"
    assert one(after, "approval-by").text == "alice"
    assert one(after, "approval-comment").text == "looks safe"
    assert not by_testid(after, "approve") and not by_testid(after, "deny")
    reasons = [event.text for event in by_testid(after, "event")]
    assert any("approved by alice: looks safe" in reason for reason in reasons)


def test_denying_from_the_form_skips_the_action(stack):
    page = action_page(stack)
    answer = post(stack, "deny", {"csrf_token": form_token(page), "comment": ""})
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("?notice=denied")
    stack.clock.now += 1
    stack.dispatcher.run_once()
    found = detail(stack)
    assert found["status"] == "skipped"
    assert found["reason"] == "denied by alice"
    notice = stack.client.get(answer.headers["Location"], headers=stack.headers)
    assert "skipped" in one(notice.get_data(as_text=True), "notice").text


def test_the_notice_is_a_fixed_message_never_the_query_text(stack):
    page = stack.client.get(
        f"/actions/{stack.held}?notice=<script>alert(1)</script>", headers=stack.headers
    ).get_data(as_text=True)
    assert not by_testid(page, "notice")
    assert "alert(1)" not in page


def test_deciding_an_action_twice_is_a_409_page_that_changes_nothing(stack):
    token = form_token(action_page(stack))
    assert post(stack, "deny", {"csrf_token": token}).status_code == 303
    before = detail(stack)
    answer = post(stack, "approve", {"csrf_token": token})
    assert answer.status_code == 409
    assert "text/html" in answer.headers["Content-Type"]
    assert "already denied by alice" in one(answer.get_data(as_text=True), "error-reason").text
    assert detail(stack)["approval"] == before["approval"]


def test_an_action_that_never_awaited_approval_has_no_buttons_and_refuses_a_decision(stack):
    ingest(stack.store, stack.config, parse_notification(notification(alert("Quick"))), T)
    quick = stack.store.list_actions(strategy="quick-restart").items[0]["id"]
    page = stack.client.get(f"/actions/{quick}", headers=stack.headers).get_data(as_text=True)
    assert not by_testid(page, "approve")
    assert one(page, "approval").attrs["data-testid"] == "approval"
    answer = stack.client.post(
        f"/actions/{quick}/approve",
        data={"csrf_token": form_token(action_page(stack))},
        headers=stack.headers,
    )
    assert answer.status_code == 409
    # its target cannot be rendered without a service label: it ended skipped at once
    status = stack.store.list_actions(strategy="quick-restart").items[0]["status"]
    assert status == "skipped"
    assert one(answer.get_data(as_text=True), "error-reason").text == (
        f"Action {quick} has ended ({status}): it no longer awaits approval. Nothing was changed."
    )


def test_deciding_an_ended_action_says_it_has_ended(stack):
    body = notification(alert("Quick", service="api"))
    ingest(stack.store, stack.config, parse_notification(body), T)
    quick = stack.store.list_actions(strategy="quick-restart").items[0]["id"]
    while stack.dispatcher.run_once():
        pass
    status = stack.store.list_actions(strategy="quick-restart").items[0]["status"]
    assert status == "succeeded"
    answer = stack.client.post(
        f"/actions/{quick}/deny",
        data={"csrf_token": form_token(action_page(stack))},
        headers=stack.headers,
    )
    assert answer.status_code == 409
    assert one(answer.get_data(as_text=True), "error-reason").text == (
        f"Action {quick} has ended (succeeded): it no longer awaits approval. Nothing was changed."
    )


@pytest.mark.parametrize(
    "form",
    [{}, {"csrf_token": ""}, {"csrf_token": "5f.00"}, {"csrf_token": "not a token"}],
    ids=["missing", "empty", "wrong-mac", "garbage"],
)
def test_a_post_without_a_valid_token_is_403_and_changes_nothing(stack, form):
    answer = post(stack, "approve", {**form, "comment": "x"})
    assert answer.status_code == 403
    assert still_awaiting(stack)


def test_a_token_issued_for_another_user_is_403(web_stack):
    bobs = form_token(action_page(web_stack, BOB))
    answer = post(web_stack, "approve", {"csrf_token": bobs})  # posted as alice
    assert answer.status_code == 403
    assert "not valid for this user" in one(answer.get_data(as_text=True), "error-reason").text
    assert still_awaiting(web_stack)


def test_the_web_config_user_who_posts_is_who_decided(web_stack):
    token = form_token(action_page(web_stack, BOB))
    answer = web_stack.client.post(
        f"/actions/{web_stack.held}/approve", data={"csrf_token": token}, headers=BOB
    )
    assert answer.status_code == 303
    assert detail(web_stack)["approval"]["decided_by"] == "bob"


@pytest.mark.parametrize("headers", [{}, basic("alice", "wrong")], ids=["none", "wrong"])
def test_without_credentials_a_web_config_answers_401_and_nothing_changes(web_stack, headers):
    token = form_token(action_page(web_stack))
    answer = web_stack.client.post(
        f"/actions/{web_stack.held}/approve", data={"csrf_token": token}, headers=headers
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert web_stack.client.get(f"/actions/{web_stack.held}", headers=headers).status_code == 401
    assert still_awaiting(web_stack)


def test_wrong_server_auth_credentials_get_a_401_page(stack):
    token = form_token(action_page(stack))
    wrong = basic("alice", "wrong")["Authorization"]
    answer = post(stack, "approve", {"csrf_token": token}, Authorization=wrong)
    assert answer.status_code == 401
    assert "text/html" in answer.headers["Content-Type"]
    assert still_awaiting(stack)


def test_a_cross_site_post_is_403_and_changes_nothing(web_stack):
    token = form_token(action_page(web_stack))
    answer = post(web_stack, "approve", {"csrf_token": token}, **{"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert still_awaiting(web_stack)


def test_without_any_auth_the_console_decides_as_console(tmp_path):
    with console_stack("sqlite", tmp_path, "none") as s:
        token = form_token(action_page(s))
        assert post(s, "approve", {"csrf_token": token}).status_code == 303
        assert detail(s)["approval"]["decided_by"] == "console"


def test_a_hostile_comment_is_stored_as_typed_and_shown_escaped(stack):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    token = form_token(action_page(stack))
    assert post(stack, "deny", {"csrf_token": token, "comment": hostile}).status_code == 303
    page = action_page(stack)
    assert one(page, "approval-comment").text == hostile
    assert "<script>alert" not in page and "<img src=x" not in page


def test_a_long_comment_is_cut_as_the_api_cuts_it(stack):
    token = form_token(action_page(stack))
    post(stack, "approve", {"csrf_token": token, "comment": "c" * (MAX_COMMENT + 50)})
    assert detail(stack)["approval"]["comment"] == "c" * MAX_COMMENT


def test_a_comment_with_nul_is_a_400_page_and_changes_nothing(stack):
    token = form_token(action_page(stack))
    answer = post(stack, "approve", {"csrf_token": token, "comment": "a\x00b"})
    assert answer.status_code == 400
    assert still_awaiting(stack)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/actions/abc", 400),
        ("/actions/-1", 400),
        ("/actions/99999999999999999999", 400),
        ("/actions/424242", 404),
    ],
)
def test_an_unknown_or_malformed_action_id_is_an_html_error_page(stack, path, status):
    answer = stack.client.get(path, headers=stack.headers)
    assert answer.status_code == status
    assert "text/html" in answer.headers["Content-Type"]
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


# ---------------------------------------------------------------- the list


def fire_many(s: SimpleNamespace, count: int) -> None:
    """`count` more actions (quick-restart, each on its own service), one per alert."""
    for number in range(count):
        body = notification(alert("Quick", service=f"svc-{number}"))
        ingest(s.store, s.config, parse_notification(body), T + number)


def row_ids(page: str) -> list[int]:
    return [int(row.attrs["data-action-id"]) for row in by_testid(page, "action-row")]


def test_the_list_pages_25_rows_newest_first(stack):
    fire_many(stack, PAGE_ROWS + 5)
    total = PAGE_ROWS + 6
    every = sorted((a["id"] for a in stack.store.list_actions(limit=1000).items), reverse=True)
    assert len(every) == total
    first = stack.client.get("/actions", headers=stack.headers).get_data(as_text=True)
    assert row_ids(first) == every[:PAGE_ROWS]
    assert links(first, "prev") == [] and links(first, "next") == ["/actions?page=2"]
    second = stack.client.get("/actions?page=2", headers=stack.headers).get_data(as_text=True)
    assert row_ids(second) == every[PAGE_ROWS:]
    assert links(second, "next") == [] and links(second, "prev") == ["/actions?page=1"]


def test_the_filters_narrow_the_list_and_follow_the_pager(stack):
    fire_many(stack, 3)
    page = stack.client.get("/actions?strategy=careful-restart", headers=stack.headers)
    assert row_ids(page.get_data(as_text=True)) == [stack.held]
    planned = stack.client.get(
        "/actions?status=planned&strategy=quick-restart", headers=stack.headers
    )
    rows = by_testid(planned.get_data(as_text=True), "action-row")
    assert len(rows) == 3 and {r.attrs["data-status"] for r in rows} == {"planned"}
    incident = detail(stack)["incident_id"]
    only = stack.client.get(f"/actions?incident_id={incident}", headers=stack.headers)
    assert row_ids(only.get_data(as_text=True)) == [stack.held]
    none = stack.client.get("/actions?status=succeeded", headers=stack.headers)
    assert one(none.get_data(as_text=True), "empty")


def test_empty_filter_fields_are_no_filter(stack):
    answer = stack.client.get(
        "/actions?status=&strategy=&incident_id=&page=", headers=stack.headers
    )
    assert answer.status_code == 200
    assert row_ids(answer.get_data(as_text=True)) == [stack.held]


@pytest.mark.parametrize(
    "query",
    [
        "status=nope",
        "incident_id=abc",
        "incident_id=-3",
        "incident_id=99999999999999999999",
        "page=0",
        "page=x",
        "strategy=a%00b",
    ],
)
def test_a_bad_filter_is_a_400_page(stack, query):
    answer = stack.client.get(f"/actions?{query}", headers=stack.headers)
    assert answer.status_code == 400
    assert "text/html" in answer.headers["Content-Type"]
    assert one(answer.get_data(as_text=True), "error-reason").text


def test_every_page_carries_the_security_headers(stack):
    for path in ("/actions", f"/actions/{stack.held}"):
        answer = stack.client.get(path, headers=stack.headers)
        assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["X-Frame-Options"] == "DENY"
        body = answer.get_data(as_text=True)
        assert "<script>" not in body and " style=" not in body and " onclick" not in body


def test_a_strategy_the_config_does_not_name_is_noted_and_still_filtered(stack):
    gone = stack.client.get("/actions?strategy=retired-restart", headers=stack.headers)
    html = gone.get_data(as_text=True)
    assert gone.status_code == 200
    note = one(html, "unknown-strategy")
    assert "retired-restart" in note.text and "running config" in note.text
    assert one(html, "empty")
    known = stack.client.get("/actions?strategy=careful-restart", headers=stack.headers)
    assert not by_testid(known.get_data(as_text=True), "unknown-strategy")
    assert row_ids(known.get_data(as_text=True)) == [stack.held]


def test_keys_of_a_row_do_not_wrap(stack):
    html = stack.client.get("/actions", headers=stack.headers).get_data(as_text=True)
    assert len(by_testid(html, "action-row")) == 1
    assert '<td class="key"><code>web</code></td>' in html
    css = stack.client.get("/console/static/console.css", headers=stack.headers).get_data(
        as_text=True
    )
    assert "td.key { white-space: nowrap; }" in css
