"""The gunicorn worker `remediator serve` runs: gthread, but slow clients cost no thread.

gunicorn's `gthread` worker hands a connection to a pool thread as soon as it is
readable, and that thread then reads the request head and body BLOCKING: eight
clients that trickle their header bytes hold all eight threads, and `/webhook` and
`/-/healthy` time out. This worker keeps gthread's pool, keep-alive and shutdown,
and moves the reading into its event loop (the poller thread):

    accept ──► peer and total bounds ──► reading (non-blocking, into a buffer)
                  │ over a bound:            │ head + body complete
                  ▼ 503, closed              ▼
                                        pool thread: gunicorn's parser fed the
                                        buffered bytes, the app answers
                                             │ keep-alive           │ close
                  reading ◄── first byte ── idle (keepalive) ◄──┘   ▼
                     │ read_timeout passed                    lingering (drain,
                     ▼ 408, closed                            non-blocking), closed

- A request is handed over once its head and its body have arrived: a body declared
  by Content-Length up to `max_body_bytes` (a larger one is not buffered: the
  webhook refuses it with 413 unread), a chunked body up to its last chunk or until
  more than `max_body_bytes` of it arrived (then the webhook answers 413). A pool
  thread that still reads from the socket (an unbuffered large body) does so within
  what is left of the read timeout, never longer.
- `read_timeout` (seconds) runs from a request's first byte; a new connection that
  sends nothing is closed `read_timeout` after accept. Idle keep-alive connections
  keep gunicorn's `keepalive` timeout.
- At most `max_connections` connections are open, at most `max_connections_per_peer`
  from one client address; one past a bound gets 503 and is closed at once, so one
  peer's flood never holds the slots of others.
- A connection closed after its answer is drained by the event loop, never by a
  blocking read (gthread lingers up to 2 s in its event loop there); each write of an
  answer must complete within `read_timeout` too, so a client that does not read
  holds a pool thread no longer than that.
- What the event loop buffers is bounded: a head to 32 KiB (longer: 431), and a body
  past 40 KiB only within a budget shared by all connections (FREE_BUFFER_BYTES).

HTTP/1.x, plain or over TLS when `--web.config.file` has a `tls_server_config`: the
event loop then runs each TLS handshake, non-blocking and within the read timeout
from accept, before it reads the request (gunicorn's own TLS settings are refused at
start: its handshake would block a pool thread). HTTP/2 is not offered (gunicorn's
default).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import resource
import selectors
import socket
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from gunicorn import http
from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

log = logging.getLogger(__name__)

#: bytes read from a socket at once by the event loop
RECV_SIZE = 64 * 1024
#: a connection closed after its answer is drained this long and this much at most,
#: so that the client reads the answer instead of a reset (RFC 9112 section 9.6)
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
#: file descriptors kept free for the journal, logs and the writer's pipes
SPARE_FDS = 256
#: the longest chunk-size line (with extensions) waited for
MAX_CHUNK_LINE = 1024
#: the longest request head buffered (gunicorn's own limits allow ~800 KiB); longer: 431
#: (nginx's default allows 32 KiB as well: 4 buffers of 8 KiB)
MAX_HEAD_BYTES = 32 * 1024
#: what any connection may buffer (a head and a small body); a larger body reserves
#: what it needs past this from a budget shared by all connections, BUDGET_BODIES
#: bodies of max_body_bytes, or waits unread: slow senders of large bodies cannot make
#: the worker hold max_connections x max_body_bytes
FREE_BUFFER_BYTES = 40 * 1024
BUDGET_BODIES = 4

_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class FrontLimits:
    """What the event loop enforces; from `limits` and `server.max_body_bytes`.

    read_timeout: seconds for a request's head and body from its first byte (and for
    a new connection's first byte from accept). max_connections: open connections in
    all; max_connections_per_peer: from one client IP. max_body_bytes: the largest
    body buffered before the app sees the request. Raises ValueError on nonsense.
    """

    read_timeout: float = 10.0
    max_connections: int = 1000
    max_connections_per_peer: int = 64
    max_body_bytes: int = 5 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.read_timeout > 0:
            raise ValueError(f"read_timeout must be > 0 seconds, got {self.read_timeout}")
        for name in ("max_connections", "max_connections_per_peer", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class TLSSource(Protocol):
    """Where the worker gets the SSLContext for each new connection (receiver.webconfig
    WebAuth: swapped on reload); None means plain HTTP."""

    def ssl_context(self) -> ssl.SSLContext | None: ...


def worker_class(limits: FrontLimits, tls: TLSSource | None = None) -> type[BufferingWorker]:
    """A BufferingWorker subclass bound to these limits and TLS source, for gunicorn's
    `worker_class` setting (gunicorn builds the worker itself, so they travel on the
    class)."""
    return type("BufferingWorker", (BufferingWorker,), {"limits": limits, "tls": tls})


# ---------------------------------------------------------------- request framing


@dataclass(frozen=True)
class Head:
    """A request head as the event loop needs it: where it ends (offset of the first
    body byte), how the body is framed, and whether the client awaits 100 Continue.

    body is "none", "length" (then length holds Content-Length), "chunked",
    "unknown" (framing gunicorn's parser will refuse: hand the request over as is), or
    "oversize" (a head longer than allowed: refused with 431).
    """

    end: int
    body: str
    length: int = 0
    expects_continue: bool = False


def parse_head(data: bytes | bytearray, max_head: int) -> Head | None:
    """The head of the request at the start of data, or None while it is incomplete.

    A head longer than max_head bytes is returned at once with body "oversize"."""
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 9112 2.2: empty lines before a request
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return Head(len(data), "oversize") if len(data) - start > max_head else None
    if end - start > max_head:
        return Head(end + 4, "oversize")
    lines = bytes(data[start:end]).split(b"\r\n")
    lengths: list[bytes] = []
    codings: list[bytes] = []
    expect = b""
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip():
            return Head(end + 4, "unknown")  # malformed: the parser refuses it
        key, value = name.lower(), value.strip()
        if key == b"content-length":
            lengths.append(value)
        elif key == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",")]
        elif key == b"expect":
            expect = value.lower()
    http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
    expects_continue = http11 and expect == b"100-continue"
    if codings:
        framing = "chunked" if codings[-1] == b"chunked" and not lengths else "unknown"
        return Head(end + 4, framing, expects_continue=expects_continue)
    if not lengths:
        return Head(end + 4, "none")
    if len(lengths) != 1 or not lengths[0].isdigit():
        return Head(end + 4, "unknown")
    return Head(end + 4, "length", int(lengths[0]), expects_continue)


def body_complete(data: bytes | bytearray, head: Head, max_body: int) -> bool:
    """Whether the event loop may hand the request over: its body is all in data, or
    longer than max_body (refused by the app without reading it all), or malformed
    (refused by the parser)."""
    if head.body == "length":
        return head.length > max_body or len(data) - head.end >= head.length
    if head.body == "chunked":
        return _chunked_complete(data, head.end, max_body)
    return True


def _chunked_complete(data: bytes | bytearray, pos: int, max_body: int) -> bool:
    body = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return len(data) - pos > MAX_CHUNK_LINE
        size_text = bytes(data[pos:line_end]).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            return True
        size = int(size_text, 16)
        pos = line_end + 2
        if size == 0:  # last chunk, then trailer fields up to an empty line
            return data.startswith(b"\r\n", pos) or data.find(b"\r\n\r\n", pos - 2) >= 0
        if len(data) < pos + size + 2:
            return body + len(data) - pos > max_body
        if data[pos + size : pos + size + 2] != b"\r\n":
            return True
        body += size
        if body > max_body:
            return True
        pos += size + 2


# ---------------------------------------------------------------- connections


class DeadlineUnreader(Unreader):
    """gunicorn's request source for one connection: the bytes the event loop
    buffered first, then the socket, each recv bounded by what is left of the read
    timeout (past it, end of data: the parser drops the connection)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = 0.0

    def feed(self, data: bytes, deadline: float) -> None:
        self.unread(data)
        self.deadline = deadline

    def chunk(self, size_hint: int | None = None) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return b""
        size = min(max(size_hint or 0, 8192), 1024 * 1024)
        prior = self.sock.gettimeout()  # the bound on writing the answer
        try:
            self.sock.settimeout(remaining)
            return self.sock.recv(size)
        except TimeoutError:
            return b""
        finally:
            self.sock.settimeout(prior)


class BufferedConn(TConn):
    """A gthread connection plus what the event loop knows of its current request."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.peer = client[0] if isinstance(client, tuple) else str(client)
        self.data = bytearray()
        self.head: Head | None = None
        self.deadline = 0.0
        self.started = False  # a byte of the current request has arrived
        self.continue_sent = False
        self.reserved = 0  # bytes past FREE_BUFFER_BYTES granted from the shared budget
        self.drained = 0  # bytes read and dropped while lingering
        self.closed = False

    def reset(self) -> None:
        self.data = bytearray()
        self.head = None
        self.started = False
        self.continue_sent = False


def _answer(status: str, message: str) -> bytes:
    body = json.dumps({"status": "error", "error": message}).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


# ---------------------------------------------------------------- the worker


@dataclass
class RefusalLog:
    """Connections refused or cut off, by kind, logged at most once per `interval`
    seconds per kind with how many there were since: a flood of slow or excess clients
    must show in the log without flooding it. `now` is monotonic seconds."""

    interval: float = 10.0
    _counts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    _logged_at: dict[str, float] = field(default_factory=dict)

    def note(self, kind: str, latest: str, now: float) -> None:
        """Count one refusal of `kind` ("connection bound", "read timeout"); `latest`
        says what happened to it, for the log line."""
        self._counts[kind] += 1
        last = self._logged_at.get(kind)
        if last is not None and now - last < self.interval:
            return
        since = "" if last is None else f" in the last {now - last:.0f}s"
        log.warning(
            "%s: %d connection(s) refused%s; latest: %s", kind, self._counts[kind], since, latest
        )
        self._counts[kind] = 0
        self._logged_at[kind] = now


class BufferingWorker(ThreadWorker):
    """gthread's ThreadWorker whose event loop reads each request before a pool
    thread sees it, and bounds connections per peer and in all (see the module)."""

    limits = FrontLimits()
    tls: TLSSource | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Past the bound a connection is accepted and refused, not left in the
        # kernel's backlog: gthread's run() stops accepting only at worker_connections.
        self.worker_connections = self.limits.max_connections + 1
        # Any open connection may be kept alive: the bounds above already count them.
        self.max_keepalived = self.limits.max_connections
        self.per_peer: defaultdict[str, int] = defaultdict(int)
        self.reading: dict[BufferedConn, float] = {}  # insertion order = deadline order
        self.lingering: dict[BufferedConn, float] = {}
        self.max_head = min(_max_head(self.cfg), MAX_HEAD_BYTES)
        # Room for BUDGET_BODIES of the largest reservation (_wanted), so any one fits.
        self.budget = BUDGET_BODIES * (self.limits.max_body_bytes + MAX_HEAD_BYTES)
        self.budget_used = 0  # reserved by connections reading a large body
        self.paused: dict[BufferedConn, None] = {}  # waiting for budget, oldest first
        self.accept_paused_until = 0.0  # after running out of file descriptors
        self.refusals = RefusalLog()

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Nothing to warn about: gthread's warning (keep-alive impossible when
        worker_connections <= threads) does not apply, see max_keepalived."""

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("this worker serves plain HTTP: terminate TLS in front of it")
        _raise_fd_limit(self.limits.max_connections + SPARE_FDS)
        super().init_process()

    # ------------------------------------------------------------ accept

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors: gthread's run() stops accepting at this many
                # connections; murder_pending lifts it a second later.
                self.worker_connections = max(1, self.nr_conns)
                self.accept_paused_until = time.monotonic() + 1.0
                log.warning("accept failed (%s): %d connections open", exc, self.nr_conns)
                return
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        context = self.tls.ssl_context() if self.tls is not None else None
        if context is not None:  # the handshake is run by the event loop (_shake_hands)
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        conn = BufferedConn(self.cfg, sock, client, listener.getsockname())
        refusal = self._refusal(conn.peer)
        if refusal:
            self.refusals.note("connection bound", f"{refusal}: 503", time.monotonic())
            if context is None:  # over TLS no answer can be sent before a handshake
                _send_quietly(sock, _answer("503 Service Unavailable", refusal))
            sock.close()
            return
        self.nr_conns += 1
        self.per_peer[conn.peer] += 1
        conn.deadline = time.monotonic() + self.limits.read_timeout
        if context is None:
            self._read_from(conn)
            return
        self.reading[conn] = conn.deadline  # murder_pending ends a handshake too slow
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._shake_hands, conn))

    def _shake_hands(self, conn: BufferedConn, _client: Any) -> None:
        """One step of a TLS handshake; once done, read the request as over plain HTTP.
        A failed handshake (plain HTTP sent to the TLS port, an unknown CA...) closes the
        connection: no HTTP answer can reach a client that does not speak TLS."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLWantWriteError:
            self.poller.modify(conn.sock, selectors.EVENT_WRITE, partial(self._shake_hands, conn))
            return
        except (ssl.SSLError, OSError) as exc:
            self.refusals.note("TLS handshake", f"{conn.peer}: {exc}", time.monotonic())
            self._stop_reading(conn)
            self._close(conn)
            return
        self._stop_reading(conn)
        self._read_from(conn)
        if conn.sock.pending():  # the request's first bytes came with the handshake
            self._on_bytes(conn, conn.sock)

    def _refusal(self, peer: str) -> str:
        if self.nr_conns >= self.limits.max_connections:
            return f"too many connections ({self.limits.max_connections} open)"
        if self.per_peer[peer] >= self.limits.max_connections_per_peer:
            return f"too many connections from {peer}"
        return ""

    # ------------------------------------------------------------ reading

    def _read_from(self, conn: BufferedConn) -> None:
        """Wait for the rest of the current request on the event loop."""
        self.reading[conn] = conn.deadline
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def on_client_socket_readable(self, conn: BufferedConn, client: Any) -> None:
        """An idle keep-alive connection sends its next request: read it here too."""
        self.keepalived_conns.remove(conn)
        conn.deadline = time.monotonic() + self.limits.read_timeout
        self.reading[conn] = conn.deadline
        self.poller.modify(client, selectors.EVENT_READ, partial(self._on_bytes, conn))
        self._on_bytes(conn, client)

    def _on_bytes(self, conn: BufferedConn, _client: Any) -> None:
        room = FREE_BUFFER_BYTES + conn.reserved - len(conn.data)
        try:
            chunk = conn.sock.recv(max(1, min(RECV_SIZE, room)))
            # TLS: bytes OpenSSL decrypted past `room` wait in it, not in the socket,
            # so the poller would not say so: take what fits now
            while _pending(conn.sock) and len(chunk) < room:
                chunk += conn.sock.recv(min(_pending(conn.sock), room - len(chunk)))
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away before its request was whole
            self._stop_reading(conn)
            self._close(conn)
            return
        if not conn.started:
            # The timeout runs from the first byte: move to the end of the order.
            conn.started = True
            del self.reading[conn]
            conn.deadline = time.monotonic() + self.limits.read_timeout
            self.reading[conn] = conn.deadline
        conn.data += chunk
        self._advance(conn)

    def _advance(self, conn: BufferedConn) -> None:
        """Hand the request over if it is whole (or its buffer full), refuse a head too
        long, wait for budget for a large body, or answer 100-continue if asked."""
        if conn.head is None:
            conn.head = parse_head(conn.data, self.max_head)
            if conn.head is None and len(conn.data) < FREE_BUFFER_BYTES:
                return
        if conn.head is None or conn.head.body == "oversize":
            self._stop_reading(conn)
            message = f"request head longer than {self.max_head} bytes"
            _send_quietly(conn.sock, _answer("431 Request Header Fields Too Large", message))
            self._linger(conn)  # a FIN after the answer, not a reset that could lose it
            return
        if body_complete(conn.data, conn.head, self.limits.max_body_bytes):
            self._stop_reading(conn)
            self._hand_over(conn)
            return
        if not conn.reserved and self._wanted(conn) and not self._reserve(conn):
            self._unregister(conn)  # read no more of it until budget is given back
            self.paused[conn] = None
        elif len(conn.data) >= FREE_BUFFER_BYTES + conn.reserved:
            # Chunk framing beyond what was reserved: the parser reads the rest itself
            # (within the read timeout).
            self._stop_reading(conn)
            self._hand_over(conn)
        elif conn.head.expects_continue and not conn.continue_sent:
            conn.continue_sent = True
            _send_quietly(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")

    # ------------------------------------------------------------ the buffer budget

    def _wanted(self, conn: BufferedConn) -> int:
        """Bytes past FREE_BUFFER_BYTES this request needs buffered (head known)."""
        assert conn.head is not None
        whole = 0
        if conn.head.body == "length":
            whole = conn.head.end + conn.head.length
        elif conn.head.body == "chunked":  # framing: up to FREE_BUFFER_BYTES more
            whole = conn.head.end + self.limits.max_body_bytes + FREE_BUFFER_BYTES
        return max(0, whole - FREE_BUFFER_BYTES)

    def _reserve(self, conn: BufferedConn) -> bool:
        """Take what the request needs from the shared budget, whole or not at all, so
        that a connection holding budget never waits for more (no deadlock)."""
        wanted = self._wanted(conn)
        if self.budget_used + wanted > self.budget:
            return False
        self.budget_used += wanted
        conn.reserved = wanted
        return True

    def _release(self, conn: BufferedConn) -> None:
        """Give conn's reservation back; resume paused requests in order while their
        reservations fit (the oldest first, so a large body is not starved)."""
        self.budget_used -= conn.reserved
        conn.reserved = 0
        while self.paused:
            waiting = next(iter(self.paused))
            if not self._reserve(waiting):
                break
            del self.paused[waiting]
            self.poller.register(
                waiting.sock, selectors.EVENT_READ, partial(self._on_bytes, waiting)
            )
            self._advance(waiting)  # 100-continue, now that its body may come
            if waiting in self.reading and _pending(waiting.sock):  # TLS: already decrypted
                self._on_bytes(waiting, waiting.sock)

    def _stop_reading(self, conn: BufferedConn) -> None:
        self.reading.pop(conn, None)
        if conn in self.paused:
            del self.paused[conn]  # not registered meanwhile
        else:
            self._unregister(conn)
        self._release(conn)

    def _hand_over(self, conn: BufferedConn) -> None:
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader = DeadlineUnreader(conn.sock)
        conn.parser.unreader.feed(bytes(conn.data), conn.deadline)
        conn.data_ready = True  # gthread's handle() must not wait for data again
        conn.data = bytearray()
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Close connections whose request did not arrive within the read timeout, and
        lingering ones past their time (run by gthread's loop once a second)."""
        super().murder_pending()
        now = time.monotonic()
        if self.accept_paused_until and now >= self.accept_paused_until:
            self.accept_paused_until = 0.0
            self.worker_connections = self.limits.max_connections + 1
        if not self.alive:  # stopping: a connection that sent nothing gets nothing
            for conn in [c for c in self.reading if not c.started]:
                self._stop_reading(conn)
                self._close(conn)
        while self.reading:
            conn, deadline = next(iter(self.reading.items()))
            if deadline > now:
                break
            self._stop_reading(conn)
            if conn.started:
                message = f"request not received within {self.limits.read_timeout:g}s"
                self.refusals.note("read timeout", f"{conn.peer}: 408, {message}", now)
                _send_quietly(conn.sock, _answer("408 Request Timeout", message))
                self._linger(conn)
            else:
                self.refusals.note("read timeout", f"{conn.peer}: closed, sent nothing", now)
                self._close(conn)
        for conn in [c for c, deadline in self.lingering.items() if deadline <= now]:
            self._end_linger(conn)

    # ------------------------------------------------------------ after the answer

    def handle_request(self, req: Any, conn: BufferedConn) -> bool:
        """gthread's, with each write of the answer bounded by the read timeout too: a
        client that does not read its answer holds a pool thread no longer than that."""
        if conn.continue_sent:
            req._expected_100_continue = False  # the event loop already said so
        if isinstance(conn.sock, ssl.SSLSocket):
            req.scheme = "https"  # gunicorn's parser knows only its own TLS (cfg.is_ssl)
        conn.sock.settimeout(self.limits.read_timeout)
        try:
            return super().handle_request(req, conn)
        except TimeoutError:
            log.info("%s did not read its answer within %gs", conn.peer, self.limits.read_timeout)
            return False

    def finish_request(self, conn: BufferedConn, fs: Any) -> None:
        """Back on the event loop after a pool thread served a request: keep the
        connection (pipelined bytes are read like a new request) or close it."""
        try:
            keep = (not fs.cancelled()) and bool(fs.result())
        except Exception:
            keep = False
        conn.reset()
        if not keep:
            self._linger(conn)
            return
        leftover = conn.parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        with contextlib.suppress(OSError):  # TLS: pipelined bytes OpenSSL already decrypted
            while _pending(conn.sock):
                leftover += conn.sock.recv(_pending(conn.sock))
        if leftover:  # a pipelined request: its clock started with its bytes
            conn.started = True
            conn.data = bytearray(leftover)
            conn.deadline = time.monotonic() + self.limits.read_timeout
            self._read_from(conn)
            self._advance(conn)
            return
        conn.set_timeout()
        if not self.alive:
            conn.timeout = min(conn.timeout, time.monotonic() + STOP_KEEPALIVE_LINGER)
        self.keepalived_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
        )

    def _linger(self, conn: BufferedConn) -> None:
        """Half-close and drain what the client still sends, without blocking."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        self.lingering[conn] = time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_drain, conn))

    def _on_drain(self, conn: BufferedConn, _client: Any) -> None:
        try:
            chunk = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        conn.drained += len(chunk)
        if not chunk or conn.drained >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: BufferedConn) -> None:
        self.lingering.pop(conn, None)
        self._unregister(conn)
        self._close(conn)

    def _unregister(self, conn: BufferedConn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):  # not registered, or closed
            self.poller.unregister(conn.sock)

    def _close(self, conn: BufferedConn) -> None:
        """Close once, and give back its slot in all and its peer's."""
        if conn.closed:
            return
        conn.closed = True
        self.nr_conns -= 1
        self.per_peer[conn.peer] -= 1
        if self.per_peer[conn.peer] <= 0:
            del self.per_peer[conn.peer]
        conn.close()

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's, with the per-peer count given back (it closes by itself)."""
        now = time.monotonic()
        while self.keepalived_conns:
            conn = self.keepalived_conns[0]
            if conn.timeout > now and not force:
                break
            self.keepalived_conns.popleft()
            self._unregister(conn)
            self._close(conn)


def _pending(sock: socket.socket) -> int:
    """Bytes a TLS socket has decrypted and not yet handed out (0 for plain sockets)."""
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """One non-blocking send of a short answer; a client that does not read it loses it."""
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass


def _max_head(cfg: Any) -> int:
    """The longest head gunicorn's limits let through, in bytes (0 means its maximum)."""
    line = cfg.limit_request_line or 8190
    fields = cfg.limit_request_fields or 32768
    field_size = cfg.limit_request_field_size or 8190
    return line + 2 + fields * (field_size + 2) + 2


def _raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to wanted (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning(
            "open files limited to %d: fewer than limits.max_connections + %d", hard, SPARE_FDS
        )
