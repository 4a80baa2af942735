"""The http executor against a real local HTTP server that answers from a script."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.config import Config, ExecutorConfig
from receiver.executors import ExecutorError, HttpExecutor, build_executors
from tests.support.actions import action_request
from tests.support.http_server import Reply, ScriptedServer, scripted_server
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

FAST = {"backoff": 0.05, "timeout": 2.0}


def executor(source: str = "", **settings) -> HttpExecutor:
    spec = ExecutorConfig("hook", "http", {**FAST, **settings})
    built = build_executors(Config(executors={"hook": spec}, source=source))["hook"]
    assert isinstance(built, HttpExecutor)
    return built


def call(ex: HttpExecutor, url: str, method: str = "POST", timeout: float = 10.0, **request):
    rendered = {"request": {"method": method, "url": url, "headers": {}, "body": None, **request}}
    return ex.execute(action_request("http", rendered=rendered, timeout=timeout))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def test_success_sends_body_and_all_headers(server, tmp_path: Path):
    (tmp_path / "token").write_text("Bearer s3cret\n")
    ex = executor(
        source=str(tmp_path / "remediation.yml"),
        headers={"X-Static": "static"},
        header_files={"Authorization": "token"},
    )
    server.answer(Reply.json(200, {"restarted": "web"}))
    result = call(
        ex,
        f"{server.url}/restart/web?force=1",
        headers={"X-Service": "web"},
        body={"service": "web", "replicas": 2},
    )
    assert result.ok, result.detail
    assert result.detail == f"HTTP 200 after 1 attempt [POST {server.url}/restart/web]"
    assert result.output == '{"restarted": "web"}'
    [received] = server.received
    assert (received.method, received.path) == ("POST", "/restart/web?force=1")
    assert received.headers["Authorization"] == "Bearer s3cret"
    assert received.headers["X-Static"] == "static"
    assert received.headers["X-Service"] == "web"
    assert received.headers["Content-Type"] == "application/json"
    assert received.json() == {"service": "web", "replicas": 2}


def test_5xx_is_retried_until_success(server):
    server.answer(Reply(503, b"busy"), Reply(503, b"busy"), Reply(200, b"done"))
    result = call(executor(retries=2), f"{server.url}/deploy/rollback", method="PUT")
    assert result.ok, result.detail
    assert result.detail.startswith("HTTP 200 after 3 attempts")
    assert [r.method for r in server.received] == ["PUT"] * 3


def test_5xx_always_fails_after_retries_with_doubling_backoff(server):
    server.default = Reply(503, b"still broken")
    started = time.monotonic()
    result = call(executor(retries=2, backoff=0.1), f"{server.url}/x")
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.detail == f"HTTP 503 after 3 attempts [POST {server.url}/x]"
    assert result.output == "still broken"
    assert len(server.received) == 3
    assert elapsed >= 0.3  # 0.1 + 0.2


def test_4xx_fails_at_once(server):
    server.answer(Reply(404, b"no such service"))
    result = call(executor(retries=3), f"{server.url}/restart/nope")
    assert not result.ok
    assert result.detail.startswith("HTTP 404 after 1 attempt ")
    assert result.output == "no such service"
    assert len(server.received) == 1


def test_redirect_is_not_followed(server):
    server.answer(Reply(302, headers={"Location": "http://evil.example/steal"}))
    result = call(executor(), f"{server.url}/restart")
    assert not result.ok
    assert "HTTP 302 redirect to http://evil.example/steal (redirects are not followed)" in (
        result.detail
    )
    assert len(server.received) == 1


def test_connection_refused_is_retried_then_fails():
    url = f"http://127.0.0.1:{free_port()}/restart"
    result = call(executor(retries=2), url)
    assert not result.ok
    assert not result.timed_out
    assert result.detail == f"connection failed: Connection refused (3 attempts) [POST {url}]"


def test_slow_response_fails_as_timeout(server):
    server.default = Reply(200, b"too late", delay=1.0)
    started = time.monotonic()
    result = call(executor(retries=1, timeout=0.2), f"{server.url}/slow")
    assert time.monotonic() - started < 1.0
    assert (result.ok, result.timed_out) == (False, True)
    assert result.detail == f"timed out after 0.2s (2 attempts) [POST {server.url}/slow]"
    assert len(server.received) == 2


def test_total_time_is_bounded_by_the_action_timeout(server):
    server.default = Reply(503)
    started = time.monotonic()
    result = call(executor(retries=5, backoff=1.0), f"{server.url}/x", timeout=0.5)
    assert time.monotonic() - started < 0.5
    assert not result.ok
    assert result.detail == (
        f"HTTP 503 after 1 attempt; no time left to retry within 0.5s [POST {server.url}/x]"
    )


def test_query_string_and_credentials_stay_out_of_the_detail(server):
    url = server.url.replace("http://", "http://user:pw@") + "/hook?token=abc"
    result = call(executor(), url, method="GET")
    assert result.ok, result.detail
    assert "abc" not in result.detail
    assert "pw" not in result.detail


def test_unreadable_header_file_is_a_build_error(tmp_path: Path):
    with pytest.raises(ExecutorError, match=r"executor 'hook': cannot read header Authorization"):
        executor(source=str(tmp_path / "r.yml"), header_files={"Authorization": "missing"})


def test_nothing_to_send_or_wrong_action_fails_without_raising():
    result = executor().execute(action_request("http", rendered={}))
    assert (result.ok, result.detail) == (False, "no request to send: the strategy rendered no url")
    result = executor().execute(action_request("scale", rendered={}))
    assert (result.ok, result.detail) == (False, "http executor 'hook' cannot scale")
