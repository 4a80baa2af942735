"""Reading the console in a real headless Chromium: the overview, an incident's timeline,
the lists, the explain form, times in the viewer's timezone, and every page free of
console errors and Content-Security-Policy violations, photographed at 1280x800.

Nothing here changes the journal (the forms are in test_console_forms.py), so the
screenshots show the scene as set_scene made it: approvals pending, breakers open.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.browser.conftest import open_page
from tests.support.browser import (
    APPROVE,
    LEFT_OPEN,
    RESTARTED,
    UNDECIDED,
    VIEWPORT,
    ConsoleServer,
    Scene,
    Screenshots,
    Watched,
    overflowing,
)

#: The overview's sections (console contract): each is always there, rows or "none".
SECTIONS = {
    "services": "service-row",
    "open-incidents": "incident-row",
    "pending-approvals": "approval-row",
    "running-actions": "action-row",
    "waiting-actions": "action-row",
    "open-breakers": "breaker-row",
    "fleets-in-wave": "fleet-row",
}
#: What a whole succeeded restart leaves on its incident's timeline, in this order (other
#: kinds may come between): the firing notification opens the incident, the restart is
#: planned, claimed past the gates, runs, its command is executed and its output kept, its
#: outcome journaled, then the resolved alert closes the incident.
RESTART_TIMELINE = (
    "notification",
    "opened",
    "planned",
    "gate",
    "running",
    "executed",
    "output",
    "outcome",
    "resolved",
)


def is_subsequence(wanted: tuple[str, ...], seen: list[str]) -> bool:
    """True when `wanted` appears in `seen` in order (not necessarily adjacent)."""
    remaining = iter(seen)
    return all(kind in remaining for kind in wanted)


def row_links(rows) -> list[str]:
    """The target of each row's first link."""
    return [row.locator("a").first.get_attribute("href") for row in rows.all()]


def epoch_of(iso: str) -> float:
    """The API's `2026-11-30T08:30:54.850326Z` as epoch seconds."""
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_the_overview_shows_every_section_and_the_scene(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    page = console.page
    console.visit("/")
    for section, row in SECTIONS.items():
        block = page.get_by_test_id(section)
        assert block.count() == 1, f"section {section} missing"
        rows = block.locator(f'[data-testid="{row}"]').count()
        empty = block.get_by_test_id("empty").count()
        assert (rows > 0) != (empty > 0), f"{section}: {rows} rows and {empty} 'none' lines"

    services = page.get_by_test_id("services")
    for service in (RESTARTED, APPROVE, LEFT_OPEN):
        assert services.locator(f'[data-testid="service-row"][data-service="{service}"]').count()
    # health per service (DESIGN): nothing firing is healthy; a breaker open is critical
    web = services.locator(f'[data-service="{RESTARTED}"]').inner_text()
    assert re.search(r"\bhealthy\b", web), web
    assert "critical" in services.locator(f'[data-service="{LEFT_OPEN}"]').inner_text()

    links = row_links(page.get_by_test_id("pending-approvals").get_by_test_id("approval-row"))
    assert f"/actions/{scene.awaiting[UNDECIDED]}" in links, links
    links = row_links(page.get_by_test_id("open-incidents").get_by_test_id("incident-row"))
    assert f"/incidents/{scene.incidents[UNDECIDED]}" in links, links
    assert f"/incidents/{scene.incidents[RESTARTED]}" not in links  # resolved
    breakers = page.get_by_test_id("open-breakers").get_by_test_id("breaker-row")
    assert any(LEFT_OPEN in breakers.nth(i).inner_text() for i in range(breakers.count()))
    assert page.get_by_test_id("fleets-in-wave").get_by_test_id("empty").count() == 1
    screenshots.take(page, "overview", docs=True)
    assert console.problems() == []


def test_the_incident_timeline_lists_every_event_in_order(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    page = console.page
    console.visit(f"/incidents?service={RESTARTED}")
    rows = page.get_by_test_id("incident-row")
    assert rows.count() == 1
    with page.expect_navigation():
        rows.first.locator("a").first.click()
    incident_id = scene.incidents[RESTARTED]
    assert page.url.endswith(f"/incidents/{incident_id}")

    events = page.get_by_test_id("timeline").get_by_test_id("event")
    kinds = [events.nth(i).get_attribute("data-kind") for i in range(events.count())]
    ats = [float(events.nth(i).get_attribute("data-at")) for i in range(events.count())]
    assert ats == sorted(ats), list(zip(kinds, ats, strict=True))
    assert is_subsequence(RESTART_TIMELINE, kinds), kinds

    # every event the journal holds for the incident's action has its own entry, at its
    # time (the journal's microseconds)
    detail = server.api(f"/incidents/{incident_id}")
    journaled = [epoch_of(e["at"]) for a in detail["actions"] for e in a["events"]]
    assert len(journaled) >= 4  # planned, claimed, started, executed, succeeded
    unmatched = list(ats)
    for at in journaled:
        same = [shown for shown in unmatched if abs(at - shown) < 2e-6]
        assert same, (at, unmatched)
        unmatched.remove(same[0])
    text = page.get_by_test_id("timeline").inner_text()
    assert "restart done for web" in text  # the command's output, as journaled
    assert re.search(r"remediate\W+restart\W+web", text), text  # the command as rendered
    screenshots.take(page, "incident", docs=True)
    assert console.problems() == []


def test_the_actions_list_filters_by_strategy(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    page = console.page
    console.visit("/actions")
    every = page.get_by_test_id("action-row").count()
    assert every == server.api("/actions")["total"]
    screenshots.take(page, "actions", docs=True)
    console.visit("/actions?strategy=flush-cache")
    rows = page.get_by_test_id("action-row")
    expected = server.api("/actions", strategy="flush-cache")["total"]
    assert expected == 3 and rows.count() == expected < every
    assert all("flush-cache" in rows.nth(i).inner_text() for i in range(expected))
    assert console.problems() == []


def test_an_action_awaiting_approval_offers_approve_and_deny(
    console: Watched, scene: Scene, screenshots: Screenshots
):
    page = console.page
    console.visit(f"/actions/{scene.awaiting[UNDECIDED]}")
    assert page.get_by_test_id("approve").is_visible()
    assert page.get_by_test_id("deny").is_visible()
    assert page.get_by_test_id("approval").count() == 1
    assert page.get_by_test_id("events").count() == 1
    screenshots.take(page, "action", docs=True)
    assert console.problems() == []


def test_the_breakers_page_shows_the_open_breakers(
    console: Watched, scene: Scene, screenshots: Screenshots
):
    page = console.page
    console.visit("/breakers")
    for key in scene.open_breakers:
        row = page.locator(f'[data-testid="breaker-row"][data-key="{key}"]')
        assert row.get_attribute("data-state") == "open"
        assert row.get_by_test_id("reset").count() == 1
    closed = page.locator('[data-testid="breaker-row"][data-key="restart-service/web"]')
    assert closed.get_attribute("data-state") == "closed"
    assert closed.get_by_test_id("reset").count() == 0
    screenshots.take(page, "breakers", docs=True)
    assert console.problems() == []


@pytest.mark.parametrize(
    ("labels", "strategy", "target"),
    [
        ("alertname=ServiceDown\nservice=api", "restart-service", "api"),
        ("alertname=CacheStale\nservice=basket", "flush-cache", "basket"),
    ],
)
def test_the_explain_form_says_what_would_happen(
    console: Watched, screenshots: Screenshots, labels: str, strategy: str, target: str
):
    page = console.page
    console.visit("/strategies")
    names = page.get_by_test_id("strategy-row")
    shown = {names.nth(i).get_attribute("data-strategy") for i in range(names.count())}
    assert shown == {"restart-service", "flush-cache", "rotate-logs"}
    assert page.get_by_test_id("explain-result").count() == 0  # nothing asked yet
    form = page.get_by_test_id("explain-form")
    form.locator('textarea[name="labels"]').fill(labels)
    with page.expect_navigation():
        form.locator('button, input[type="submit"]').first.click()
    assert "/strategies?" in page.url and "labels=" in page.url
    result = page.get_by_test_id("explain-result").inner_text()
    assert strategy in result and target in result, result
    # the form keeps what was asked, for the next question
    assert page.locator('textarea[name="labels"]').input_value().splitlines() == labels.split("\n")
    if strategy == "restart-service":
        screenshots.take(page, "strategies", docs=True)
    assert console.problems() == []


#: How many lines an element's text takes: its text's boxes, top to bottom, a new line
#: where a box starts below the line before it (boxes of one line overlap).
LINES = """node => {
    const range = document.createRange();
    range.selectNodeContents(node);
    const boxes = [...range.getClientRects()].filter(r => r.height > 0)
        .sort((a, b) => a.top - b.top);
    let lines = 0, bottom = -Infinity;
    for (const box of boxes) {
        if (box.top >= bottom - 1) { lines += 1; }
        bottom = Math.max(bottom, box.bottom);
    }
    return lines;
}"""


def test_keys_stay_on_one_line_and_the_explain_form_reads_cleanly(console: Watched):
    """Short monospace keys (`logs-a`) are not broken at their hyphen; the explain form's
    label is one line; a bad line is shown as an error (a class of the stylesheet)."""
    page = console.page

    for path, testid in (("/actions", "action-row"), ("/breakers", "breaker-row")):
        console.visit(path)
        cells = page.get_by_test_id(testid).locator("td.key")
        assert cells.count() > 0, path
        for cell in cells.all():
            assert cell.evaluate("node => getComputedStyle(node).whiteSpace") == "nowrap"
            assert cell.evaluate(LINES) == 1, cell.inner_text()
    console.visit("/strategies")
    label = page.get_by_test_id("explain-form").locator("label > span").first
    assert "name=value" in label.inner_text()
    assert label.evaluate(LINES) == 1, label.inner_text()
    assert console.problems() == []
    console.visit("/strategies?labels=no-equals-sign", status=400)
    error = page.get_by_test_id("explain-error")
    assert "error" in (error.get_attribute("class") or "").split()
    background = error.evaluate("node => getComputedStyle(node).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent"), background
    # the browser logs the 400 itself; nothing else went wrong
    assert [p for p in console.problems() if "status of 400" not in p] == []


def test_times_are_shown_in_the_viewers_timezone(browser, server: ConsoleServer, scene: Scene):
    zone = "Asia/Tokyo"
    context, console = open_page(browser, server, timezone=zone)
    try:
        page = console.page
        console.visit(f"/incidents/{scene.incidents[RESTARTED]}")
        times = page.locator("time[data-epoch]")
        assert times.count() > 0
        for i in range(times.count()):
            node = times.nth(i)
            epoch = float(node.get_attribute("data-epoch"))
            local = datetime.fromtimestamp(int(epoch), ZoneInfo(zone))
            found = re.search(r"(\d\d)/(\d\d)/(\d{4}), (\d\d):(\d\d):(\d\d)", node.inner_text())
            assert found, node.inner_text()
            month, day, year, hour, minute, second = (int(g) for g in found.groups())
            shown = (year, month, day, hour % 24, minute, second)
            assert shown == (local.year, local.month, local.day, local.hour, local.minute,
                             local.second), (node.inner_text(), local)  # fmt: skip
            # the server's text (UTC) is kept as the title
            utc = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            assert node.get_attribute("title") == utc
        assert page.locator("footer .tz").inner_text() == zone
        assert console.problems() == []
    finally:
        context.close()


def test_every_page_fits_a_laptop_screen_without_errors(
    console: Watched, server: ConsoleServer, scene: Scene, screenshots: Screenshots
):
    page = console.page
    pages = {
        "/": "overview",
        "/incidents": "incidents",
        f"/incidents/{scene.incidents[APPROVE]}": "incident-awaiting",
        "/actions": "actions-list",
        f"/actions/{scene.awaiting[APPROVE]}": "action-awaiting",
        "/breakers": "breakers-list",
        "/strategies": "strategies-list",
        "/strategies?labels=alertname%3DDiskFilling%0Aservice%3Dlogs-c": "explained",
    }
    for path, name in pages.items():
        console.visit(path)
        # the vendored script ran: times carry their UTC text as a title
        for node in page.locator("time[data-epoch]").all():
            assert node.get_attribute("title"), (path, node.inner_text())
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= VIEWPORT["width"], f"{path} is {width} px wide"
        assert overflowing(page) == [], f"{path}: tables wider than their boxes"
        screenshots.take(page, f"page-{name}")
    assert console.problems() == []


def test_a_content_security_policy_violation_would_be_caught(console: Watched, scene: Scene):
    """The collector the other tests rely on sees what the policy refuses: an image from
    another origin and an inline style attribute."""
    console.visit("/")
    console.page.evaluate(
        """() => {
            const img = document.createElement("img");
            img.src = "http://127.0.0.2:9/blocked.png";
            document.body.appendChild(img);
            const p = document.createElement("p");
            p.setAttribute("style", "color: red");
            document.body.appendChild(p);
        }"""
    )
    console.page.wait_for_function("window.__cspViolations.length >= 2")
    problems = console.problems()
    assert any("img-src" in p for p in problems), problems
    assert any("style-src" in p for p in problems), problems


def test_the_pages_read_without_javascript(browser, server: ConsoleServer, scene: Scene):
    """The script is optional for reading: with JavaScript off the pages carry the same
    sections and timeline, times in UTC as the server wrote them."""
    context, console = open_page(browser, server, javascript=False)
    try:
        page = console.page
        console.visit("/")
        for section in SECTIONS:
            assert page.get_by_test_id(section).count() == 1, section
        console.visit(f"/incidents/{scene.incidents[RESTARTED]}")
        events = page.get_by_test_id("timeline").get_by_test_id("event")
        assert events.count() >= len(RESTART_TIMELINE)
        for node in page.locator("time[data-epoch]").all():
            epoch = float(node.get_attribute("data-epoch"))
            utc = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            assert node.inner_text() == utc
        assert page.locator("footer .tz").inner_text() == "UTC"
        assert console.problems() == []
    finally:
        context.close()
