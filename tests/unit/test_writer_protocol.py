"""Frames between the worker and the journal writer (receiver/writer/protocol.py)."""

from __future__ import annotations

import socket
import threading

import pytest

from receiver.intake import Answer
from receiver.writer.protocol import (
    NOTIFY,
    PING,
    ProtocolError,
    Request,
    RequestReader,
    pack_reply,
    pack_request,
    read_reply,
)


def test_requests_split_anywhere_are_put_back_together():
    stream = pack_request(NOTIFY, 12.5, b'{"alerts": []}') + pack_request(PING, 13.0)
    for cut in range(len(stream) + 1):
        reader = RequestReader()
        found = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert found == [Request(NOTIFY, 12.5, b'{"alerts": []}'), Request(PING, 13.0, b"")]


def test_one_byte_at_a_time():
    reader = RequestReader()
    stream = pack_request(NOTIFY, 1.0, b"x" * 300)
    found = [request for byte in stream for request in reader.feed(bytes([byte]))]
    assert found == [Request(NOTIFY, 1.0, b"x" * 300)]


@pytest.mark.parametrize("garbage", [b"\x09" + b"\x00" * 12, b"POST /webhook HTTP/1.1\r\n"])
def test_garbage_is_refused_not_buffered(garbage):
    with pytest.raises(ProtocolError):
        RequestReader().feed(garbage)


def test_a_reply_is_read_whole_however_it_arrives():
    answer = Answer(503, b'{"status": "error"}' * 10_000, 3)
    left, right = socket.socketpair()
    with left, right:
        data = pack_reply(answer)
        sender = threading.Thread(target=left.sendall, args=(data,))
        sender.start()
        assert read_reply(right) == answer
        sender.join()


def test_a_closed_connection_is_an_error_not_an_empty_answer():
    left, right = socket.socketpair()
    with right:
        left.sendall(pack_reply(Answer(200, b"{}"))[:5])
        left.close()
        with pytest.raises(ConnectionError):
            read_reply(right)
