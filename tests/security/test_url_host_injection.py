"""Issue 11, item 10: an alert label rendered into a request URL's host may not move the
request, and the http executor's secret header with it, to another host.

A real `remediator serve` whose http executor sends `Authorization` from a file; a real
attacker's HTTP listener and a real legitimate one on free loopback ports. The issue's
value `127.0.0.1:<attacker port>/steal` in `service` must be refused ("refused: ...",
not a failure the breaker counts) and the attacker must receive nothing; a legitimate
value must still reach the legitimate listener with its Authorization header, so that
"nothing received" means "refused", not "broken".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.http_server import ScriptedServer, scripted_server
from tests.support.journal import open_journal, post_webhook, settle
from tests.support.payloads import alert, notification
from tests.support.processes import Running, remediator
from tests.support.receiver import write_config

API_TOKEN = "Bearer executor-s3cret"


def url_config(legit_port: int) -> str:
    return f"""
server:
  auth: {{bearer_token_file: token}}
defaults:
  cooldown: 0s
executors:
  api: {{type: http, timeout: 5s, retries: 0, header_files: {{Authorization: api-token}}}}
strategies:
  - name: in-cluster         # the issue's template
    matchers: ['alertname="InCluster"']
    action: http
    executor: api
    target: api
    request: {{url: 'http://{{{{ labels.service }}}}.svc.cluster.local/restart'}}
  - name: on-loopback        # the same rule where a legitimate value can be served here
    matchers: ['alertname="OnLoopback"']
    action: http
    executor: api
    target: api
    request:
      url: 'http://{{{{ labels.service }}}}:{legit_port}/restart/{{{{ labels.service }}}}'
"""


@pytest.fixture(scope="module")
def listeners() -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    with scripted_server() as legit, scripted_server() as attacker:
        yield legit, attacker


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, listeners: tuple[ScriptedServer, ScriptedServer]
) -> Iterator[tuple[Running, Any]]:
    legit, _attacker = listeners
    workdir: Path = tmp_path_factory.mktemp("url-host")
    (workdir / "api-token").write_text(API_TOKEN + "\n")
    config = write_config(workdir, url_config(legit.server_address[1]))
    store_url = f"sqlite:///{workdir / 'journal.db'}"
    with remediator(workdir, config, store_url) as running:
        yield running, open_journal(store_url)


def fire(url: str, alertname: str, service: str, number: int) -> None:
    body = notification(
        alert(alertname, service=service, starts_at=f"2026-11-21T10:00:{number:02d}Z")
    )
    answer = post_webhook(url, body)
    assert answer.status_code == 200, answer.text


def test_a_host_label_cannot_send_the_request_and_its_secret_elsewhere(server, listeners):
    running, journal = server
    legit, attacker = listeners
    steal = f"127.0.0.1:{attacker.server_address[1]}/steal"
    attacks = [("InCluster", steal), ("OnLoopback", steal)]
    attacks += [("OnLoopback", f"user@127.0.0.1:{attacker.server_address[1]}/")]  # userinfo
    for number, (alertname, service) in enumerate(attacks):
        fire(running.url, alertname, service, number)
    refused = settle(journal, len(attacks))

    assert [a["status"] for a in refused] == ["skipped"] * len(attacks)
    for action in refused:
        assert action["reason"].startswith("refused: value "), action["reason"]
        assert "is not a single DNS label" in action["reason"]
    assert attacker.received == []  # nothing reached the attacker: no request, no secret
    breakers = requests.get(f"{running.url}/api/v1/breakers", timeout=5).json()["data"]
    assert all(b["state"] == "closed" for b in breakers), breakers

    # the same strategy with a legitimate value: it runs, and its breaker was closed
    fire(running.url, "OnLoopback", "localhost", len(attacks))
    actions = settle(journal, len(attacks) + 1)
    assert actions[-1]["status"] == "succeeded", actions[-1]["reason"]
    (received,) = legit.received
    assert received.path == "/restart/localhost"
    assert received.headers["Authorization"] == API_TOKEN
    assert attacker.received == []
