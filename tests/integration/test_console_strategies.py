"""The console's strategies page in the app gunicorn serves (create_app), on a real
journal (SQLite and PostgreSQL): every configured strategy as configured, and the
explain form, whose result is the text the real `remediator explain` prints for the
same labels; bad lines refused, hostile values shown as text, nothing journaled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest

from receiver.app import AppState, create_app
from receiver.config import load_config
from receiver.console.blueprint import CONTENT_SECURITY_POLICY
from tests.support.html_page import by_testid, one
from tests.support.processes import checked_config, explain
from tests.support.stores import BACKENDS, opened_store

CONFIG = """
prometheus: {url: 'http://127.0.0.1:9090'}
defaults: {escalation_executor: logger}
executors:
  logger: {type: log}
  local: {type: command}
strategies:
  - name: careful-restart
    matchers: ['alertname="ServiceDown"', 'severity=~"critical|page"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    cooldown: 7m
    breaker: {failure_threshold: 2, recovery_timeout: 20m}
    verify: {query: 'up{service="{{ labels.service }}"} == 1', timeout: 30s}
    approval: {timeout: 10m, on_timeout: run}
    continue: true
  - name: fix-web
    matchers: ['alertname="ServiceDown"']
    target: '{{ labels.service }}'
    fleet: {max_in_flight: 2, size_window: 30m}
    steps:
      - name: restart
        action: restart
        executor: logger
      - name: clean
        action: run
        executor: local
        wait: 30s
        command: ['/usr/local/bin/clean', '--service', '{{ labels.service }}']
"""


@pytest.fixture(params=BACKENDS)
def stack(request, tmp_path: Path) -> Iterator[SimpleNamespace]:
    path = checked_config(tmp_path / "remediation.yml", CONFIG)
    with opened_store(request.param, tmp_path) as store:
        client = create_app(AppState(load_config(str(path)), store)).test_client()
        yield SimpleNamespace(client=client, store=store, path=path)


def explained(s: SimpleNamespace, labels: str, annotations: str = "") -> tuple[int, str]:
    query = urlencode({"labels": labels, "annotations": annotations})
    answer = s.client.get(f"/strategies?{query}")
    return answer.status_code, answer.get_data(as_text=True)


def test_every_strategy_is_listed_in_order_with_what_it_does(stack):
    answer = stack.client.get("/strategies")
    assert answer.status_code == 200
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    page = answer.get_data(as_text=True)
    rows = by_testid(page, "strategy-row")
    assert [row.attrs["data-strategy"] for row in rows] == ["careful-restart", "fix-web"]
    careful, runbook = (row.text for row in rows)
    for shown in (
        'alertname="ServiceDown"',
        'severity=~"critical|page"',
        "restart via logger (log) on {{ labels.service }}",
        "7m per (strategy, target)",
        "opens after 2 consecutive failures; half-open after 20m",
        'PromQL up{service="{{ labels.service }}"} == 1 true within 30s',
        "waits up to 10m for a person, then run as if approved",
    ):
        assert shown in careful, shown
    for shown in (
        "step 1 restart",
        "step 2 clean",
        "run via local (command)",
        '["/usr/local/bin/clean", "--service", "{{ labels.service }}"]',
        "waits 30s",
        "max_in_flight 2",
    ):
        assert shown in runbook, shown
    assert "approval" in runbook and "not required" in runbook
    assert one(page, "explain-form").attrs["method"] == "get"
    assert by_testid(page, "explain-result") == []


@pytest.mark.parametrize(
    "labels",
    [
        ["alertname=ServiceDown", "service=checkout", "severity=page"],
        ["alertname=ServiceDown", "service=web"],
        ["alertname=NothingMatches", "service=web"],
        ["alertname=ServiceDown", "service=bad value/../x", "severity=page"],
    ],
    ids=["two-matches", "runbook-only", "unmatched", "refused-target"],
)
def test_the_explain_result_is_what_the_cli_prints(stack, labels):
    cli = explain(stack.path, *labels).stdout
    status, page = explained(stack, "\r\n".join(labels) + "\r\n")
    assert status == 200
    assert one(page, "explain-result").text == cli.removesuffix("\n")


def test_annotations_reach_the_explanation_as_the_cli_takes_them(stack):
    labels = ["alertname=ServiceDown", "service=web"]
    cli = explain(stack.path, "--annotation", "summary=web is down", *labels).stdout
    status, page = explained(stack, "\n".join(labels), "summary=web is down")
    assert status == 200
    assert one(page, "explain-result").text == cli.removesuffix("\n")


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ("alertname=ServiceDown\nno equals sign", "line 2"),
        ("=value", "line 1"),
        ("", "at least one label"),
        ("   \n\n", "at least one label"),
    ],
)
def test_bad_lines_answer_400_with_the_error_and_no_result(stack, labels, why):
    status, page = explained(stack, labels)
    assert status == 400
    assert why in one(page, "explain-error").text
    assert by_testid(page, "explain-result") == []
    assert one(page, "explain-form")  # the form stays, with what was typed


def test_hostile_label_values_are_shown_as_text(stack):
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    status, page = explained(stack, f"alertname=ServiceDown\nservice={hostile}")
    assert status == 200
    assert hostile in one(page, "explain-result").text  # shown, as text
    assert hostile in one(page, "explain-form").text  # the form keeps it, as text
    assert "<script>alert(1)" not in page and "<img src=x" not in page


def test_explaining_journals_nothing(stack):
    explained(stack, "alertname=ServiceDown\nservice=web\nseverity=page")
    assert stack.store.list_actions().total == 0
    assert stack.store.list_incidents().total == 0
