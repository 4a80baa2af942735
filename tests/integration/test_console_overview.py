"""The console's overview (receiver/console/overview.py) in the app gunicorn serves
(create_app), on real journals (SQLite and PostgreSQL): incidents made by the real
engine, actions run, held and refused by the real dispatcher (in the test's thread, on
an injected clock), the `log` and `command` executors doing the work."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from receiver.alerts import parse_notification
from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.console.blueprint import SECURITY_HEADERS
from receiver.console.overview import SECTION_ROWS
from receiver.dispatcher import Dispatcher
from receiver.engine import ingest
from tests.support.payloads import alert, notification
from tests.support.stores import BACKENDS, opened_store

CONFIG = """
defaults: {escalation_executor: logger}
executors:
  logger: {type: log}
  local: {type: command}
strategies:
  - name: careful
    matchers: ['alertname="Careful"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    approval: {timeout: 10m}
  - name: flaky
    matchers: ['alertname="Flaky"']
    action: run
    executor: local
    target: '{{ labels.service }}'
    command: ['/bin/false']
    cooldown: 0s
    breaker: {failure_threshold: 1, recovery_timeout: 1h}
  - name: slow
    matchers: ['alertname="Slow"']
    action: run
    executor: local
    target: '{{ labels.service }}'
    command:
      - PYTHON
      - -c
      - 'import os, time; [time.sleep(0.02) for _ in iter(lambda: os.path.exists("RELEASE"), True)]'
    timeout: 5m
  - name: heal
    matchers: ['alertname="Errors"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet:
      progressive: {min_targets: 3, gather: 1s, canary: 1, stages: [50%, 100%], pause: 1h}
  - name: calm
    matchers: ['alertname="Calm"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    cooldown: 1h
"""
SECTIONS = (
    "services",
    "open-incidents",
    "pending-approvals",
    "running-actions",
    "waiting-actions",
    "open-breakers",
    "fleets-in-wave",
)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sections(HTMLParser):
    """Rows per section: section testid -> [(row testid, its attributes)]; and the
    sections that said they are empty."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[tuple[str, dict[str, str | None]]]] = {}
        self.empty: set[str] = set()
        self.section = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        testid = found.get("data-testid") or ""
        if tag == "section":
            self.section = testid
            self.rows.setdefault(testid, [])
        elif testid == "empty":
            self.empty.add(self.section)
        elif testid.endswith("-row"):
            self.rows[self.section].append((testid, found))


@pytest.fixture(params=BACKENDS)
def world(request, tmp_path: Path) -> Iterator[SimpleNamespace]:
    # the overview reads "now" from the wall clock: incidents start just before it
    now = time.time()
    text = CONFIG.replace("PYTHON", sys.executable).replace("RELEASE", str(tmp_path / "release"))
    config = parse_config(text, "test.yml", tmp_path)
    with opened_store(request.param, tmp_path) as store:
        clock = Clock(now)

        def post(*alerts: dict[str, Any]) -> None:
            ingest(store, config, parse_notification(notification(*alerts)), clock.now)

        dispatcher = Dispatcher(SimpleNamespace(config=config), store, clock=clock)
        client = create_app(AppState(config, store)).test_client()
        yield SimpleNamespace(
            store=store,
            clock=clock,
            post=post,
            dispatcher=dispatcher,
            client=client,
            now=now,
            release=tmp_path / "release",
        )


def overview(world: SimpleNamespace) -> tuple[str, Sections]:
    answer = world.client.get("/")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:2000]
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    html = answer.get_data(as_text=True)
    parser = Sections()
    parser.feed(html)
    return html, parser


def test_an_empty_journal_shows_every_section_empty(world):
    _, found = overview(world)
    assert set(found.rows) >= set(SECTIONS)
    assert found.empty == set(SECTIONS)


def test_each_section_lists_what_needs_attention(world):
    start = iso(world.now - 60)
    world.post(alert("Careful", service="db", starts_at=start))
    world.post(alert("Flaky", service="queue", starts_at=start))
    world.post(alert("Calm", service="cache", starts_at=start))
    world.clock.now += 1
    while world.dispatcher.run_once():
        pass
    # a second occurrence of Calm waits out its strategy's cooldown on the same target
    world.post(alert("Calm", service="cache", starts_at=iso(world.now - 1), zone="b"))
    world.clock.now += 1
    while world.dispatcher.run_once():
        pass
    html, found = overview(world)

    (approval,) = found.rows["pending-approvals"]
    (careful,) = world.store.list_actions(strategy="careful").items
    assert approval[0] == "approval-row" and approval[1]["data-action"] == str(careful["id"])
    assert f'href="/actions/{careful["id"]}"' in html

    (breaker,) = found.rows["open-breakers"]
    assert (breaker[1]["data-key"], breaker[1]["data-state"]) == ("flaky/queue", "open")

    (waiting,) = found.rows["waiting-actions"]
    held = [a for a in world.store.list_actions(strategy="calm").items if a["status"] == "planned"]
    assert waiting[1]["data-action"] == str(held[0]["id"])
    assert "cooldown" in html

    firing = {row[1]["data-incident"] for row in found.rows["open-incidents"]}
    assert firing == {str(i["id"]) for i in world.store.list_incidents(status="firing").items}
    assert len(firing) == 4

    health = {row[1]["data-service"]: row[1]["data-health"] for row in found.rows["services"]}
    # unhealthy: firing, nothing done yet; critical: breaker open / failed for good
    assert health["queue"] == "critical"
    assert set(health) == {"db", "queue", "cache"}
    assert found.empty == {"running-actions", "fleets-in-wave"}


def test_a_section_shows_at_most_its_rows_and_links_to_the_full_list(world):
    total = SECTION_ROWS + 2
    for n in range(total):
        world.post(alert("Unrouted", service=f"s{n}", starts_at=iso(world.now - 100 + n)))
    html, found = overview(world)
    assert len(found.rows["open-incidents"]) == SECTION_ROWS
    assert f'href="/incidents?status=firing">all {total} open incidents' in html


def test_hostile_label_values_are_escaped(world):
    hostile = "<script>alert(1)</script>"
    world.post(alert("Careful", service=hostile, starts_at=iso(world.now - 5)))
    world.clock.now += 1
    world.dispatcher.run_once()
    html, found = overview(world)
    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert [row[1]["data-service"] for row in found.rows["services"]] == [hostile]


def test_a_running_action_is_listed_while_it_runs(world):
    world.post(alert("Slow", service="batch", starts_at=iso(world.now - 5)))
    world.clock.now += 1
    worker = threading.Thread(target=world.dispatcher.run_once)
    worker.start()
    try:
        # the command waits for its release file: the action is running until then
        while not world.store.list_actions(status="running").items:
            assert worker.is_alive(), "the action ended before it was seen running"
            time.sleep(0.02)
        _, found = overview(world)
    finally:
        world.release.write_text("go")
        worker.join()
    (running,) = world.store.list_actions(strategy="slow").items
    assert [row[1]["data-action"] for row in found.rows["running-actions"]] == [str(running["id"])]
    assert running["status"] == "succeeded"  # it ran to its end once released
    assert overview(world)[1].empty >= {"running-actions"}


def test_a_fleet_in_a_wave_is_listed_with_its_stage(world):
    instances = [f"web-{n}" for n in range(4)]
    world.post(
        *[
            alert("Errors", service="web", instance=i, starts_at=iso(world.now - 5))
            for i in instances
        ]
    )
    for _ in range(3):  # past the wave's gathering: the canary is acted on, stage 1 waits
        world.clock.now += 2
        while world.dispatcher.run_once():
            pass
    html, found = overview(world)
    (fleet,) = found.rows["fleets-in-wave"]
    assert fleet[1]["data-fleet"] == "web"
    # canary 1 of 4 targets, then stages of 50% and 100%: stage 1 is the first of 2
    assert "stage 1 of 2" in html
    assert "1 / 4" in html


def test_services_show_at_most_their_rows_worst_first_and_link_to_all(world):
    total = SECTION_ROWS + 3
    for n in range(total):
        world.post(alert("Unrouted", service=f"s{n:02}", starts_at=iso(world.now - 100 + n)))
    html, found = overview(world)
    # every service is firing with nothing done: all equally unhealthy, then by name
    names = sorted(f"s{n:02}" for n in range(total))
    assert [row[1]["data-service"] for row in found.rows["services"]] == names[:SECTION_ROWS]
    assert f"{SECTION_ROWS} of {total} shown, worst health first" in html
    assert f'href="/?all=services">all {total} services' in html

    answer = world.client.get("/?all=services")
    assert answer.status_code == 200
    whole = Sections()
    whole.feed(answer.get_data(as_text=True))
    assert [row[1]["data-service"] for row in whole.rows["services"]] == names
    assert "shown, worst health first" not in answer.get_data(as_text=True)


def test_an_unknown_whole_section_is_a_400_page(world):
    answer = world.client.get("/?all=incidents")
    assert answer.status_code == 400
    assert "<h1>Bad all</h1>" in answer.get_data(as_text=True)


def test_an_alert_without_a_service_label_shows_none_and_no_link(world):
    world.post(alert("Unrouted", starts_at=iso(world.now - 5)))
    html, found = overview(world)
    (service,) = found.rows["services"]
    assert service[1]["data-service"] == ""
    assert '<span class="muted" data-testid="no-service">(none)</span>' in html
    assert 'href="/incidents?service="' not in html
    assert 'href="/incidents"><' not in html


def test_action_rows_are_named_action_id_and_kind(world):
    world.post(alert("Careful", service="db", starts_at=iso(world.now - 5)))
    world.clock.now += 1
    while world.dispatcher.run_once():
        pass
    html, _ = overview(world)
    (careful,) = world.store.list_actions(strategy="careful").items
    assert f'<a href="/actions/{careful["id"]}">action {careful["id"]} (restart)</a>' in html
    assert f"restart #{careful['id']}" not in html
