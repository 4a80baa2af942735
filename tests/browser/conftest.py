"""Fixtures of the console's browser tests: one headless Chromium and one real server
per test module with the scene of tests/support/browser.py set up in its
journal, and a fresh browser context (signed in as the web config's user) per test.

Without Chromium the tests skip, unless this runs as root: there `make test` installs
it (make system-deps), so a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import (
    CHROMIUM_ARGS,
    PASSWORD,
    SCREENSHOTS_ENV,
    USER,
    VIEWPORT,
    ConsoleServer,
    Scene,
    Screenshots,
    Watched,
    chromium_path,
    console_server,
    is_root,
    set_scene,
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's Chromium (see the module docstring for when it may lack)."""
    path = chromium_path()
    if path is None:
        if is_root():
            pytest.fail("chromium is not installed: `make system-deps` installs it (as root)")
        pytest.skip("chromium is not installed and this is not root: `make system-deps` as root")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    """A headless Chromium for this module, launched by path (no download); stopped with
    the module, so that Playwright's event loop never outlives the browser tests in a
    test process that goes on with other files."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """A real `remediator serve --web.config.file` for this module."""
    with console_server(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="module")
def scene(server: ConsoleServer) -> Scene:
    """The server's journal with the incidents, approvals and breakers every test reads
    (set_scene): made once per module, before its first test."""
    return set_scene(server)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    """Where the pages' screenshots go: $REMEDIATOR_SCREENSHOTS, else a tmp directory."""
    named = os.environ.get(SCREENSHOTS_ENV)
    return Screenshots(Path(named) if named else tmp_path_factory.mktemp("screenshots"))


def open_page(
    browser: object, server: ConsoleServer, timezone: str = "UTC", javascript: bool = True
) -> tuple[object, Watched]:
    """A new signed-in context on `server` (1280x800, en-US, `timezone`, JavaScript on
    or off) and its watched page."""
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=server.url,
        http_credentials={"username": USER, "password": PASSWORD},
        viewport=VIEWPORT,
        locale="en-US",
        timezone_id=timezone,
        java_script_enabled=javascript,
    )
    return context, Watched.attach(context.new_page())


@pytest.fixture
def console(browser: object, server: ConsoleServer, scene: Scene) -> Iterator[Watched]:
    """A watched page in a fresh signed-in context (UTC), the scene set up."""
    context, watched = open_page(browser, server)
    try:
        yield watched
    finally:
        context.close()  # type: ignore[attr-defined]
