"""Frames between the HTTP worker and the journal writer, over a Unix stream socket.

Each worker thread keeps one connection and has at most one request on it at a time,
so a frame is answered before the next is sent on that connection. Fixed binary
headers: nothing to parse but a length, and nothing from an alert in them.

    request: kind (1 byte), received_at (float64), body length (uint32), body
    reply:   status (uint16), actions planned (uint32), body length (uint32), body

A reply with status PROGRESS is not the answer: the writer sends one on every turn of
its loop while it holds a large notification (parsing it, journaling it chunk by chunk,
or keeping it for after the one before it), so that the worker, whose socket receive
timeout then counts from the last progress instead of from the request, keeps waiting
for work that is advancing (read_reply skips them). Its body is empty until the
notification is spooled; from then on it is the body of a 200 that is already true
(accepted, so many alerts journaled and the rest queued: intake.queued), which the
worker answers if the writer goes away before the answer (killed, stalled).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from receiver.intake import Answer

NOTIFY = 1  # body: the webhook body as received
RELOAD = 2  # body: the config text the worker loaded (utf-8); the writer takes the same
PING = 3  # body: empty
STOP = 4  # body: empty; from the worker that owns the writer, when it exits
PROGRESS = 102  # reply status: still working on this request, the answer comes later

REQUEST = struct.Struct("!BdI")
REPLY = struct.Struct("!HII")
REPLY_READ = 64 * 1024
MAX_BODY = 256 * 1024 * 1024  # far above any webhook limit; refuses a corrupt length


class ProtocolError(Exception):
    """The peer sent something that is not a frame: drop the connection."""


@dataclass(frozen=True)
class Request:
    kind: int
    received_at: float
    body: bytes


def pack_request(kind: int, received_at: float, body: bytes = b"") -> bytes:
    return REQUEST.pack(kind, received_at, len(body)) + body


def pack_reply(answer: Answer) -> bytes:
    return REPLY.pack(answer.status, answer.actions_planned, len(answer.body)) + answer.body


class RequestReader:
    """Collects bytes from a non-blocking socket and yields the whole requests in them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        found = []
        while len(self._buffer) >= REQUEST.size:
            kind, received_at, length = REQUEST.unpack_from(self._buffer)
            if kind not in (NOTIFY, RELOAD, PING, STOP) or length > MAX_BODY:
                raise ProtocolError(f"not a request frame (kind {kind}, length {length})")
            end = REQUEST.size + length
            if len(self._buffer) < end:
                break
            found.append(Request(kind, received_at, bytes(self._buffer[REQUEST.size : end])))
            del self._buffer[:end]
        return found


def pack_progress(fallback: bytes = b"") -> bytes:
    """A PROGRESS reply: the request is still being worked on; `fallback`, if any, is the
    body of the 200 to answer should the writer go no further (see above)."""
    return REPLY.pack(PROGRESS, 0, len(fallback)) + fallback


def read_reply(sock: socket.socket, on_progress: Callable[[bytes], None] | None = None) -> Answer:
    """Block for the reply to the request in flight, skipping PROGRESS replies (each
    one's body, the fallback or b"", is told to `on_progress`: a stall watchdog may count
    it as progress); almost always one recv (a reply is small). Raises ConnectionError if
    the writer closes the connection, OSError when the socket's receive timeout passes
    without a byte."""
    data = sock.recv(REPLY_READ)
    while True:
        while len(data) < REPLY.size:
            data += _more(sock, REPLY.size - len(data))
        status, actions_planned, length = REPLY.unpack_from(data)
        if length > MAX_BODY:
            raise ConnectionError(f"reply of {length} bytes from the journal writer")
        end = REPLY.size + length
        while len(data) < end:
            data += _more(sock, end - len(data))
        if status != PROGRESS:
            return Answer(status, data[REPLY.size : end], actions_planned)
        if on_progress is not None:
            on_progress(bytes(data[REPLY.size : end]))
        data = data[end:]


def _more(sock: socket.socket, wanted: int) -> bytes:
    chunk = sock.recv(min(wanted, 1 << 20))
    if not chunk:
        raise ConnectionError("the journal writer closed the connection")
    return chunk
