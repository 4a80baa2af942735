"""Acting from the console in a real headless Chromium: approve an action and see it run,
deny one and see it skipped, reset an open breaker and see it closed; a form whose token
was taken out is refused (403) and changes nothing. Each form asks first (console.js's
confirmation, accepted as a person would) and lands on a page with its notice. Also the
lists' pager, with incidents added here (the other module's screenshots stay as the
scene made them).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.browser import (
    APPROVE,
    DENY,
    LEFT_OPEN,
    RESET,
    UNDECIDED,
    USER,
    ConsoleServer,
    Scene,
    Screenshots,
    Watched,
    iso_at,
    wait_until,
)
from tests.support.payloads import alert, notification

#: Chromium logs a page that answers 4xx as a failed resource load; the refusal test
#: expects exactly that one message.
REFUSED_LOAD = "Failed to load resource: the server responded with a status of 403"
#: Rows on a page of a console list (the console's contract).
PAGE_ROWS = 25


def ran_file(server: ConsoleServer, verb: str, service: str) -> Path:
    """The file the remediation script writes when it runs `verb` for `service`."""
    return server.workdir / "ran" / f"{verb}-{service}"


def reload_until_status(page, word: str) -> None:
    """Reload the action's page until its status reads `word` (the dispatcher acts on
    its own time), as a person pressing reload would."""

    def shows() -> bool:
        page.reload()
        return word in page.get_by_test_id("action-status").inner_text().split()

    wait_until(shows, what=f"{page.url} to show {word}")


def decide(console: Watched, action_id: int, verb: str, comment: str) -> None:
    """On the action's page: write the comment and press approve or deny (accepting the
    confirmation); lands on the action's page with the notice of `verb`."""
    page = console.page
    console.visit(f"/actions/{action_id}")
    button = page.get_by_test_id(verb)
    form = page.locator("form", has=button)
    form.locator('[name="comment"]').fill(comment)
    with page.expect_navigation():
        button.click()
    assert console.dialogs, "the button did not ask before acting"
    notice = "approved" if verb == "approve" else "denied"
    assert page.url.endswith(f"/actions/{action_id}?notice={notice}"), page.url
    assert page.get_by_test_id("notice").is_visible()


def test_approving_an_action_runs_it(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    action_id = scene.awaiting[APPROVE]
    written = ran_file(server, "flush", APPROVE)
    assert not written.exists()  # held until a person decides
    decide(console, action_id, "approve", "cache is stale after the deploy")
    page = console.page
    reload_until_status(page, "succeeded")
    assert written.read_text() == f"flush {APPROVE}\n"
    approval = page.get_by_test_id("approval").inner_text()
    assert USER in approval and "cache is stale after the deploy" in approval, approval
    assert page.get_by_test_id("approve").count() == 0
    assert page.get_by_test_id("deny").count() == 0
    decided = server.api(f"/actions/{action_id}")
    assert decided["status"] == "succeeded"
    assert (
        decided["approval"]["decision"] == "approved" and decided["approval"]["decided_by"] == USER
    )
    screenshots.take(page, "action-approved")
    assert console.problems() == []


def test_denying_an_action_skips_it(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    action_id = scene.awaiting[DENY]
    decide(console, action_id, "deny", "not during the sale")
    page = console.page
    reload_until_status(page, "skipped")
    approval = page.get_by_test_id("approval").inner_text()
    assert USER in approval and "not during the sale" in approval, approval
    denied = server.api(f"/actions/{action_id}")
    assert denied["status"] == "skipped" and denied["approval"]["decision"] == "denied"
    assert not ran_file(server, "flush", DENY).exists()
    screenshots.take(page, "action-denied")
    assert console.problems() == []


def test_resetting_an_open_breaker_closes_it(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    page = console.page
    key, untouched = f"rotate-logs/{RESET}", f"rotate-logs/{LEFT_OPEN}"
    console.visit("/breakers")
    row = page.locator(f'[data-testid="breaker-row"][data-key="{key}"]')
    assert row.get_attribute("data-state") == "open"
    with page.expect_navigation():
        row.get_by_test_id("reset").click()
    assert console.dialogs, "the reset did not ask before acting"
    assert page.url.endswith("/breakers?notice=reset"), page.url
    assert page.get_by_test_id("notice").is_visible()
    row = page.locator(f'[data-testid="breaker-row"][data-key="{key}"]')
    assert row.get_attribute("data-state") == "closed"
    assert row.get_by_test_id("reset").count() == 0
    other = page.locator(f'[data-testid="breaker-row"][data-key="{untouched}"]')
    assert other.get_attribute("data-state") == "open"
    assert server.breaker_state(key) == "closed"
    assert server.breaker_state(untouched) == "open"
    screenshots.take(page, "breakers-reset")
    assert console.problems() == []


def test_a_form_without_its_token_is_refused_and_changes_nothing(
    console: Watched, server: ConsoleServer, scene: Scene
):
    page = console.page
    action_id = scene.awaiting[UNDECIDED]
    before = server.api(f"/actions/{action_id}")
    assert before["waiting"] == "awaiting_approval"
    console.visit(f"/actions/{action_id}")
    form = page.locator("form", has=page.get_by_test_id("approve"))
    removed = form.evaluate(
        """form => { const t = form.querySelector('input[name="csrf_token"]');
                     if (t) { t.remove(); } return Boolean(t); }"""
    )
    assert removed, "the approve form carried no csrf_token"
    with page.expect_navigation() as navigation:
        page.get_by_test_id("approve").click()
    assert navigation.value.status == 403
    assert "token" in page.get_by_test_id("error-reason").inner_text()
    after = server.api(f"/actions/{action_id}")
    assert after["status"] == before["status"] and after["waiting"] == "awaiting_approval"
    assert after["events"] == before["events"]
    assert not ran_file(server, "flush", UNDECIDED).exists()
    problems = console.problems()
    assert all(REFUSED_LOAD in p for p in problems) and len(problems) <= 1, problems


def test_the_incidents_list_pages_by_25_with_prev_and_next_links(
    console: Watched, server: ConsoleServer, scene: Scene
):
    """One notification of PAGE_ROWS + 1 alerts that resolved unseen (journaled closed,
    nothing planned): the filtered list spans two pages joined by rel=next / rel=prev."""
    count = PAGE_ROWS + 1
    now = time.time()
    starts, ends = iso_at(now - 900), iso_at(now - 800)
    noise = [
        alert("Noise", status="resolved", starts_at=starts, ends_at=ends, service="batch",
              instance=f"node-{n}")
        for n in range(count)
    ]  # fmt: skip
    server.post_notification(notification(*noise, group_key='{}:{alertname="Noise"}'))
    assert server.api("/incidents", alertname="Noise")["total"] == count
    page = console.page
    console.visit("/incidents?alertname=Noise")
    assert page.get_by_test_id("incident-row").count() == PAGE_ROWS
    assert page.locator('a[rel="prev"]').count() == 0
    with page.expect_navigation():
        page.locator('a[rel="next"]').click()
    assert "page=2" in page.url and "alertname=Noise" in page.url
    assert page.get_by_test_id("incident-row").count() == count - PAGE_ROWS
    assert page.locator('a[rel="next"]').count() == 0
    with page.expect_navigation():
        page.locator('a[rel="prev"]').click()
    assert page.get_by_test_id("incident-row").count() == PAGE_ROWS
    assert console.problems() == []
