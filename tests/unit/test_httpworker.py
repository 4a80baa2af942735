"""When the event loop of receiver.httpworker may hand a request to a pool thread:
once its head and body have arrived, or at once when the parser will refuse it."""

from __future__ import annotations

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.http.errors import ParseException
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import Unreader

from receiver.httpworker import FrontLimits, Head, RefusalLog, body_complete, parse_head

MAX_HEAD = 1024
MAX_BODY = 100


def head_of(text: bytes) -> Head | None:
    return parse_head(text, MAX_HEAD)


def complete(text: bytes) -> bool:
    head = head_of(text)
    return head is not None and body_complete(text, head, MAX_BODY)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r",
        b"\r\n\r\n",  # empty lines before a request are skipped, not a head
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabc",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n",
    ],
)
def test_a_request_still_arriving_is_not_handed_over(text: bytes) -> None:
    assert not complete(text)


@pytest.mark.parametrize(
    "text",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET / HTTP/1.1\r\n",  # pipelined
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
    ],
)
def test_a_whole_request_is_handed_over(text: bytes) -> None:
    assert complete(text)


@pytest.mark.parametrize(
    "text",
    [
        b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n",  # refused unread (413)
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"a" * 101,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n"
        + b"a" * 64
        + b"\r\n40\r\n"
        + b"a" * 40,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"40\r\n"
        + b"a" * 64
        + b"\r\n"
        + b"40\r\n"
        + b"a" * 64
        + b"\r\n",  # whole chunks past the bound, no last one
    ],
)
def test_a_body_over_the_bound_is_handed_over_without_waiting_for_the_rest(text: bytes) -> None:
    assert complete(text)


@pytest.mark.parametrize(
    "text",
    [
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x4\r\nabcd\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdXY",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 1025,
    ],
)
def test_framing_the_parser_refuses_is_handed_over_at_once(text: bytes) -> None:
    assert complete(text)


@pytest.mark.parametrize(
    "version,expects",
    [(b"HTTP/1.1", True), (b"HTTP/1.0", False)],  # RFC 9110 10.1.1: ignored in 1.0
)
def test_100_continue_is_awaited_only_from_http_1_1(version: bytes, expects: bool) -> None:
    head = head_of(b"POST / " + version + b"\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
    assert head is not None
    assert head.expects_continue is expects


@pytest.mark.parametrize(
    "text",
    [
        b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n",  # not even ended
        b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * MAX_HEAD + b"\r\n\r\n",
    ],
)
def test_a_head_longer_than_allowed_is_oversize(text: bytes) -> None:
    head = head_of(text)
    assert head is not None and head.body == "oversize"


def test_the_head_ends_where_the_body_starts() -> None:
    text = b"\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    assert head_of(text) == Head(end=len(text) - 3, body="length", length=3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"read_timeout": 0},
        {"read_timeout": float("nan")},
        {"max_connections": 0},
        {"max_connections_per_peer": 0},
        {"max_body_bytes": 0},
    ],
)
def test_front_limits_refuse_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FrontLimits(**kwargs)


# ------------------------------------------------ agreement with gunicorn's own parser


class _Exhausted(Exception):
    """gunicorn's parser asked for a byte past the prefix it was given."""


class _PrefixUnreader(Unreader):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def chunk(self, size_hint: int | None = None) -> bytes:
        if not self.data:
            raise _Exhausted
        data, self.data = self.data, b""
        return data


def gunicorn_reading(data: bytes) -> str:
    """What gunicorn's parser makes of data: "needs more" (it would read the socket
    again: a pool thread would wait), "served" or "refused"."""
    parser = RequestParser(GunicornConfig(), iter([]), ("127.0.0.1", 1))
    parser.unreader = _PrefixUnreader(data)
    try:
        request = next(parser)
        if request.body is not None:
            request.body.read()
    except _Exhausted:
        return "needs more"
    except (ParseException, StopIteration):
        return "refused"
    return "served"


REQUESTS = {
    "get": b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty line first": b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "http/1.0": b"GET / HTTP/1.0\r\n\r\n",
    "length": b'POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{"a": [1]} ',
    "length 0": b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
    "spaces around the value": b"POST / HTTP/1.1\r\nContent-Length:   3  \r\n\r\nabc",
    "expect": b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    "chunked": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n",
    "chunked with trailer": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nab\r\n0\r\nX-Sum: 1\r\n\r\n",
    "pipelined": b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", REQUESTS.values(), ids=REQUESTS.keys())
def test_no_prefix_is_handed_over_while_gunicorn_would_read_more(request_bytes: bytes) -> None:
    """The rule that keeps a pool thread from waiting on a slow client: whatever the
    event loop hands over, gunicorn's parser serves or refuses without another byte."""
    for end in range(len(request_bytes) + 1):
        prefix = request_bytes[:end]
        head = parse_head(prefix, MAX_HEAD)
        if head is not None and body_complete(prefix, head, 1 << 20):
            assert gunicorn_reading(prefix) != "needs more", prefix


@pytest.mark.parametrize("request_bytes", REQUESTS.values(), ids=REQUESTS.keys())
def test_a_request_gunicorn_can_serve_is_handed_over(request_bytes: bytes) -> None:
    for end in range(len(request_bytes) + 1):
        prefix = request_bytes[:end]
        if gunicorn_reading(prefix) == "served":
            head = parse_head(prefix, MAX_HEAD)
            assert head is not None and body_complete(prefix, head, 1 << 20), prefix


def test_refusals_are_logged_once_per_interval_with_their_count(caplog) -> None:
    refusals = RefusalLog(interval=10.0)
    with caplog.at_level("WARNING", logger="receiver.httpworker"):
        refusals.note("connection bound", "too many connections from 127.0.0.1: 503", 100.0)
        for offset in range(1, 5):  # a flood within the interval: counted, not logged
            refusals.note("read timeout", "127.0.0.1: closed, sent nothing", 100.0 + offset)
        for offset in range(1, 4):
            refusals.note("connection bound", "too many connections (6 open): 503", 100.0 + offset)
        refusals.note("connection bound", "too many connections (6 open): 503", 110.0)
    assert [r.getMessage() for r in caplog.records] == [
        "connection bound: 1 connection(s) refused; latest: "
        "too many connections from 127.0.0.1: 503",
        "read timeout: 1 connection(s) refused; latest: 127.0.0.1: closed, sent nothing",
        "connection bound: 4 connection(s) refused in the last 10s; latest: "
        "too many connections (6 open): 503",
    ]
