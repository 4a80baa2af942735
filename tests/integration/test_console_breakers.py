"""The console's breakers page in the app gunicorn serves (create_app), on a real
journal (SQLite and PostgreSQL): breakers opened and closed by the real dispatcher
running real commands (one that fails, one that succeeds), listed with their state and
reset from the page's form, with the guards every form post passes."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from receiver.alerts import parse_notification
from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.console.queries import PAGE_ROWS
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from receiver.store.listing import PageBounds
from tests.support.html_page import by_testid, form_token, links, one
from tests.support.payloads import alert, notification
from tests.support.stores import BACKENDS, opened_store

T = 1_800_000_000.0
RECOVERY = 3600.0
CONFIG = f"""
server:
  auth: {{basic_auth: {{username: alice, password_file: password}}}}
defaults:
  cooldown: 0s
  breaker: {{failure_threshold: 1, recovery_timeout: {int(RECOVERY)}s}}
executors:
  local: {{type: command}}
strategies:
  - name: fragile-fix
    matchers: ['alertname="Broken"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', 'import sys; sys.exit(1)']
  - name: sound-fix
    matchers: ['alertname="Fine"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', 'pass']
"""
ALICE = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def stack(request, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A client on a journal with an open breaker (fragile-fix/web) and a closed one
    (sound-fix/api), each from a real action."""
    (tmp_path / "password").write_text("s3cret\n")
    config = parse_config(CONFIG, "test.yml", tmp_path)
    with opened_store(request.param, tmp_path) as store:
        for name, service in (("Broken", "web"), ("Fine", "api")):
            body = notification(alert(name, service=service), group_key=name)
            ingest(store, config, parse_notification(body), T)
        clock = Clock()
        dispatcher = Dispatcher(SimpleNamespace(config=config), store, clock=clock)
        while dispatcher.run_once():
            pass
        client = create_app(AppState(config, store)).test_client()
        yield SimpleNamespace(client=client, store=store, config=config, clock=clock)


def states(s: SimpleNamespace) -> dict[str, str]:
    page = s.store.breakers_page(1000, 0, PageBounds(1000, 1 << 20, 4096))
    return {row["key"]: row["state"] for row in page.items}


def breakers_page(s: SimpleNamespace, query: str = "") -> str:
    answer = s.client.get(f"/breakers{query}", headers=ALICE)
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_the_page_lists_each_breaker_with_its_state_and_resets_only_the_open(stack):
    assert states(stack) == {"fragile-fix/web": "open", "sound-fix/api": "closed"}
    page = breakers_page(stack)
    rows = {row.attrs["data-key"]: row for row in by_testid(page, "breaker-row")}
    assert {key: row.attrs["data-state"] for key, row in rows.items()} == states(stack)
    assert len(by_testid(page, "reset")) == 1  # the open one only
    assert "Reset" in rows["fragile-fix/web"].text and "Reset" not in rows["sound-fix/api"].text


def test_an_open_breaker_shows_when_it_half_opens(stack):
    (row,) = [
        r
        for r in stack.store.breakers_page(10, 0, PageBounds(10, 1 << 20, 4096)).items
        if r["state"] == "open"
    ]
    expected = row["opened_at"] + RECOVERY
    page = breakers_page(stack)
    assert f'data-epoch="{expected}"' in page


def test_resetting_from_the_form_closes_the_breaker(stack):
    token = form_token(breakers_page(stack))
    answer = stack.client.post(
        "/breakers/reset", data={"csrf_token": token, "key": "fragile-fix/web"}, headers=ALICE
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/breakers?notice=reset")
    assert states(stack) == {"fragile-fix/web": "closed", "sound-fix/api": "closed"}
    after = breakers_page(stack, "?notice=reset")
    assert "closed" in one(after, "notice").text
    assert by_testid(after, "reset") == []


def test_the_notice_never_echoes_the_query(stack):
    page = breakers_page(stack, "?notice=%3Cb%3Ehi%3C/b%3E")
    assert by_testid(page, "notice") == [] and "<b>hi" not in page


@pytest.mark.parametrize(
    ("key", "status"),
    [("", 400), ("no-slash", 400), ("/web", 400), ("fragile-fix/", 400), ("nope/web", 404)],
)
def test_a_bad_or_unknown_key_is_an_error_page_and_changes_nothing(stack, key, status):
    token = form_token(breakers_page(stack))
    answer = stack.client.post(
        "/breakers/reset", data={"csrf_token": token, "key": key}, headers=ALICE
    )
    assert answer.status_code == status
    assert "text/html" in answer.headers["Content-Type"]
    assert states(stack)["fragile-fix/web"] == "open"


@pytest.mark.parametrize(
    ("headers", "form", "status"),
    [
        (ALICE, {"key": "fragile-fix/web"}, 403),  # no token
        (ALICE, {"key": "fragile-fix/web", "csrf_token": "1.2"}, 403),  # a forged one
        ({}, {"key": "fragile-fix/web"}, 401),  # not signed in
        ({**ALICE, "Sec-Fetch-Site": "cross-site"}, {"key": "fragile-fix/web"}, 403),
    ],
    ids=["no-token", "forged-token", "no-credentials", "cross-site"],
)
def test_a_refused_reset_changes_nothing(stack, headers, form, status):
    if "csrf_token" not in form and "Sec-Fetch-Site" in headers:
        form = {**form, "csrf_token": form_token(breakers_page(stack))}
    answer = stack.client.post("/breakers/reset", data=form, headers=headers)
    assert answer.status_code == status
    assert states(stack)["fragile-fix/web"] == "open"


def test_breakers_are_paged_25_at_a_time(stack):
    bodies = [
        notification(alert("Fine", service=f"svc-{n:02d}"), group_key=f"g{n}")
        for n in range(PAGE_ROWS)
    ]
    for body in bodies:
        ingest(stack.store, stack.config, parse_notification(body), T + 1)
    dispatcher = Dispatcher(SimpleNamespace(config=stack.config), stack.store, clock=stack.clock)
    while dispatcher.run_once():
        pass
    keys = sorted(states(stack), key=lambda key: tuple(key.split("/", 1)))
    assert len(keys) == PAGE_ROWS + 2
    first = breakers_page(stack)
    assert [r.attrs["data-key"] for r in by_testid(first, "breaker-row")] == keys[:PAGE_ROWS]
    assert links(first, "next") == ["/breakers?page=2"]
    # sorted by strategy and target, not by time: the pager says previous / next
    assert 'rel="next" href="/breakers?page=2">next →</a>' in first
    second = breakers_page(stack, "?page=2")
    assert 'rel="prev" href="/breakers?page=1">← previous</a>' in second
    assert "newer" not in second and "older" not in first
    assert [r.attrs["data-key"] for r in by_testid(second, "breaker-row")] == keys[PAGE_ROWS:]
    assert stack.client.get("/breakers?page=0", headers=ALICE).status_code == 400
