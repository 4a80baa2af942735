"""What every console page shares (receiver/console/blueprint.py), in the app gunicorn
serves (create_app) on a real journal: the journal's shared form key, the vendored
static files under the strict Content-Security-Policy, and HTML error pages."""

from __future__ import annotations

import threading

import pytest

from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.console.blueprint import CONTENT_SECURITY_POLICY
from receiver.store import secrets as journal_secrets
from tests.support.stores import opened_store

CONFIG = """
executors:
  logger: {type: log}
strategies:
  - name: restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""


def test_the_shared_key_is_made_once_and_every_caller_reads_the_same(store):
    keys: list[bytes] = []

    def ask() -> None:
        keys.append(
            store.change(lambda tx: journal_secrets.shared_key(tx, journal_secrets.CONSOLE_CSRF))
        )

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 4 and len(set(keys)) == 1
    assert len(keys[0]) == journal_secrets.KEY_BYTES
    other = store.change(lambda tx: journal_secrets.shared_key(tx, "another"))
    assert other != keys[0]


def test_static_files_are_served_with_the_security_headers(tmp_path):
    with opened_store("sqlite", tmp_path) as store:
        client = create_app(AppState(parse_config(CONFIG), store)).test_client()
        script = client.get("/console/static/console.js")
        assert script.status_code == 200
        assert "data-epoch" in script.get_data(as_text=True)
        assert script.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert script.headers["X-Content-Type-Options"] == "nosniff"
        assert client.get("/console/static/console.css").status_code == 200
        # the page's icon: without it a browser asks for /favicon.ico, a 404 in its console
        icon = client.get("/console/static/favicon.svg")
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


@pytest.mark.parametrize(
    "path",
    [
        "/console/static/../blueprint.py",
        "/console/static/%2e%2e/csrf.py",
        "/console/static/nope.js",
    ],
)
def test_paths_outside_the_static_folder_are_not_served(tmp_path, path):
    with opened_store("sqlite", tmp_path) as store:
        client = create_app(AppState(parse_config(CONFIG), store)).test_client()
        answer = client.get(path)
        assert answer.status_code == 404
        assert "import" not in answer.get_data(as_text=True)
