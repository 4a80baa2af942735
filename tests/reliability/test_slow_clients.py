"""Slow clients (issue 11, item 1): a request's head and body must arrive within
`limits.read_timeout`, connections are bounded per peer and in all, and while hundreds
of clients trickle their bytes a legitimate webhook is answered at once.

Against a real `remediator serve` (gunicorn, SQLite journal) and raw sockets: the
slow clients connect from other loopback addresses (Linux routes all of 127/8 to lo),
so that the per-peer bound applies to each of them as it would to real hosts.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.payloads import alert, notification
from tests.support.processes import Running, remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, TOKEN, write_config

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
READ_TIMEOUT = 1.5  # the short-timeout server's limits.read_timeout, seconds
PER_PEER = 3
TOTAL = 6


def config_text(limits: str = "") -> str:
    return AUTH_SERVER + "  max_body_bytes: 65536\n" + limits + "\n" + LOG_RESTART


@contextmanager
def serve(tmp_path: Path, limits: str = "") -> Iterator[Running]:
    config = write_config(tmp_path, config_text(limits))
    with remediator(tmp_path, config, f"sqlite:///{tmp_path / 'journal.db'}") as server:
        yield server


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Default limits: read_timeout 10s, 1000 connections, 64 per peer."""
    with serve(tmp_path_factory.mktemp("slow-default")) as server:
        yield server


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    limits = (
        f"limits: {{read_timeout: {READ_TIMEOUT * 1000:.0f}ms, max_connections: {TOTAL},"
        f" max_connections_per_peer: {PER_PEER}}}"
    )
    with serve(tmp_path_factory.mktemp("slow-tight"), limits) as server:
        yield server


def port_of(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


def connect(server: Running, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port_of(server)), timeout=10, source_address=(source, 0)
    )


def webhook_request(body: bytes, extra: str = "") -> bytes:
    head = (
        "POST /webhook HTTP/1.1\r\nHost: remediator\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{extra}"
    )
    return head.encode() + b"\r\n" + body


def webhook_body(service: str = "web") -> bytes:
    return json.dumps(notification(alert("ServiceDown", service=service))).encode()


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed
    (seconds from now); fails if it is still open after timeout."""
    start = time.monotonic()
    received = b""
    sock.settimeout(timeout)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            raise AssertionError(f"still open after {timeout}s; got {received[:200]!r}") from None
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


def is_open(sock: socket.socket) -> bool:
    """Whether the server has not closed (nor answered on) this connection."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(10)
    return False  # an end of stream or an answer: the server is done with it


def served_on(sock: socket.socket) -> int:
    """Send GET /-/healthy on a keep-alive connection; the answer's status code."""
    sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: remediator\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


class Trickler:
    """Sends one byte of a request head to each socket every `interval` seconds, from
    a thread, as slow clients do; a socket the server closed is dropped."""

    def __init__(self, socks: list[socket.socket], interval: float, message: bytes) -> None:
        self.socks = socks
        self.interval = interval
        self.message = message
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        position = 0
        while not self.stop.wait(self.interval):
            byte = self.message[position % len(self.message) : position % len(self.message) + 1]
            for sock in list(self.socks):
                try:
                    sock.send(byte, socket.MSG_DONTWAIT)
                except OSError:
                    self.socks.remove(sock)
            position += 1

    def __enter__(self) -> Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


# ---------------------------------------------------------------- availability


def test_webhook_is_answered_in_under_a_second_while_500_slow_clients_are_connected(
    default_server: Running,
) -> None:
    slow: list[socket.socket] = []
    with ExitStack() as stack:
        for i in range(500):  # 10 hosts x 50 connections, within the per-peer bound
            sock = stack.enter_context(connect(default_server, f"127.0.0.{2 + i % 10}"))
            sock.sendall(b"G")  # without credentials, one header byte at a time
            slow.append(sock)
        with Trickler(list(slow), 0.5, b"ET /-/healthy HTTP/1.1\r\nX-Pad: " + b"a" * 4096):
            time.sleep(1.0)  # every slow client has sent bytes since it connected
            start = time.monotonic()
            response = requests.post(
                f"{default_server.url}/webhook", data=webhook_body(), headers=AUTH, timeout=10
            )
            elapsed = time.monotonic() - start
            healthy = requests.get(f"{default_server.url}/-/healthy", timeout=10)
            still_open = sum(is_open(sock) for sock in slow)
    assert response.status_code == 200, response.text
    assert elapsed < 1.0
    assert healthy.status_code == 200
    assert still_open == 500  # the slow clients were held, not refused


def test_two_requests_on_one_keepalive_connection_are_both_answered(
    default_server: Running,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(default_server), timeout=10)
    try:
        conn.request("GET", "/-/healthy")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request("POST", "/webhook", body=webhook_body("api"), headers=AUTH)
        second = conn.getresponse()
        second.read()
        assert (first.status, second.status) == (200, 200)
        assert conn.sock is sock  # the same connection, not a reconnect
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(default_server: Running) -> None:
    body = webhook_body("db")
    requests_bytes = (
        webhook_request(body, f"Content-Length: {len(body)}\r\n")
        + b"GET /-/healthy HTTP/1.1\r\nHost: remediator\r\n\r\n"
        + b"GET /-/ready HTTP/1.1\r\nHost: remediator\r\nConnection: close\r\n\r\n"
    )
    with connect(default_server) as sock:
        sock.sendall(requests_bytes)
        received, _ = read_until_closed(sock, timeout=10)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3, received[:500]


def test_a_client_expecting_100_continue_gets_it_then_its_answer(
    default_server: Running,
) -> None:
    body = webhook_body("cache")
    head = webhook_request(b"", f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n")
    with connect(default_server) as sock:
        sock.sendall(head)
        sock.settimeout(10)
        interim = sock.recv(64)
        sock.sendall(body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = json.loads(response.read())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert response.status == 200, answer


def test_large_bodies_past_the_shared_buffer_budget_are_all_answered(
    default_server: Running,
) -> None:
    """30 bodies of 64,000 bytes held back by their last 1,000 bytes need more than the
    worker buffers at once (each reserves what it needs past 40 KiB, ~23 KB, from 4 x
    (max_body_bytes + 32 KiB) = 393,216 bytes: 16 fit). The others are read no further
    until a reservation is given back, and every request is still answered."""
    body = webhook_body("big").ljust(64_000)  # valid JSON padded with spaces
    request = webhook_request(body, f"Content-Length: {len(body)}\r\n")
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(default_server, "127.0.0.60")) for _ in range(30)]
        for sock in socks:
            sock.sendall(request[:-1000])
        time.sleep(0.5)
        for sock in socks:
            sock.sendall(request[-1000:])
        statuses = []
        for sock in socks:
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            statuses.append(response.status)
    assert statuses == [200] * 30, statuses


def test_a_head_longer_than_32_kib_gets_431_and_is_closed(default_server: Running) -> None:
    head = b"GET /-/healthy HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 8000 + b"\r\n"
    with connect(default_server, "127.0.0.61") as sock:
        with contextlib.suppress(OSError):  # closed while sending: the answer came first
            sock.sendall(head * 9)
        received, _ = read_until_closed(sock, timeout=5)
    assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


# ---------------------------------------------------------------- read timeout


def test_a_new_connection_that_sends_nothing_is_closed_after_the_read_timeout(
    tight_server: Running,
) -> None:
    with connect(tight_server, "127.0.0.20") as sock:
        received, closed_after = read_until_closed(sock, timeout=READ_TIMEOUT + 10)
    assert received == b""
    assert READ_TIMEOUT - 0.1 <= closed_after <= READ_TIMEOUT + 5


@pytest.mark.parametrize(
    "start,trickle",
    [
        pytest.param(b"GET /-/healthy HTTP/1.1\r\nHost: remediator\r\n", b"X", id="head"),
        pytest.param(
            webhook_request(b'{"alerts": [', "Content-Length: 60000\r\n"), b" ", id="length-body"
        ),
        pytest.param(
            webhook_request(b"1\r\n{\r\n", "Transfer-Encoding: chunked\r\n"),
            b"1\r\n \r\n",
            id="chunked-body",
        ),
    ],
)
def test_a_request_trickling_slower_than_the_read_timeout_gets_408_and_is_closed(
    tight_server: Running, start: bytes, trickle: bytes
) -> None:
    with connect(tight_server, "127.0.0.21") as sock:
        sock.sendall(start)
        with Trickler([sock], 0.2, trickle):
            received, closed_after = read_until_closed(sock, timeout=READ_TIMEOUT + 10)
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received[:200]
    assert closed_after <= READ_TIMEOUT + 5
    journal = requests.get(f"{tight_server.url}/api/v1/incidents", timeout=10).json()
    assert journal["total"] == 0  # no cut-off body was taken for a notification


# ---------------------------------------------------------------- connection bounds


def held(server: Running, source: str, timeout: float = 10.0) -> socket.socket:
    """A keep-alive connection the server has served once (so it holds a slot). Other
    connections of this module may still be closing on the server: retry a 503."""
    deadline = time.monotonic() + timeout
    while True:
        sock = connect(server, source)
        try:
            if served_on(sock) == 200:
                return sock
        except (http.client.HTTPException, OSError):
            pass
        sock.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"no connection from {source} was served within {timeout}s")
        time.sleep(0.2)


def refused(sock: socket.socket) -> bytes:
    """What a connection past a bound gets before it is closed, at once."""
    received, closed_after = read_until_closed(sock, timeout=5)
    assert closed_after < READ_TIMEOUT  # closed at once, not at the read timeout
    return received


def test_a_connection_past_the_per_peer_bound_is_refused_while_another_peer_is_served(
    tight_server: Running,
) -> None:
    with ExitStack() as stack:
        for _ in range(PER_PEER):
            stack.enter_context(held(tight_server, "127.0.0.30"))
        with connect(tight_server, "127.0.0.30") as extra:
            answer = refused(extra)
        with held(tight_server, "127.0.0.31") as other:
            assert served_on(other) == 200
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:200]
    assert b"too many connections from 127.0.0.30" in answer


def test_a_connection_past_the_total_bound_is_refused_until_one_closes(
    tight_server: Running,
) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(held(tight_server, "127.0.0.40"))
        for i in range(1, TOTAL):
            stack.enter_context(held(tight_server, f"127.0.0.{40 + i}"))
        with connect(tight_server, "127.0.0.50") as extra:
            answer = refused(extra)
        first.close()  # gives its slot back
        with held(tight_server, "127.0.0.50") as after:
            assert served_on(after) == 200
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:200]
    assert f"too many connections ({TOTAL} open)".encode() in answer


def test_an_idle_connection_does_not_hold_up_a_graceful_stop(tmp_path: Path) -> None:
    """SIGTERM: gunicorn waits for open connections; one that never sent a byte is
    closed at once instead of at the read timeout (10 s by default)."""
    with serve(tmp_path) as server, connect(server, "127.0.0.70") as idle:
        time.sleep(0.5)  # accepted by the worker, not only by the kernel
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        stopped_after = time.monotonic() - start
        received, _ = read_until_closed(idle, timeout=5)
    assert received == b""
    assert stopped_after < 8.0
