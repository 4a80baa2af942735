"""The webhook's WSGI layer: reading a bounded body (receiver/webhook.py)."""

from __future__ import annotations

import io

import pytest

from receiver.webhook import read_body


class CountingStream(io.BytesIO):
    """Remembers how many bytes were asked for, to prove what was never read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked = 0

    def read(self, size: int | None = -1) -> bytes:
        self.asked += size if size and size > 0 else len(self.getvalue())
        return super().read(size)


def environ(data: bytes, **extra: object) -> dict[str, object]:
    return {"wsgi.input": CountingStream(data), **extra}


def test_a_declared_length_within_the_limit_is_read_exactly():
    env = environ(b'{"a": 1}trailing', CONTENT_LENGTH="8")
    assert read_body(env, 100) == b'{"a": 1}'


def test_a_declared_length_over_the_limit_is_refused_unread():
    env = environ(b"x" * 1000, CONTENT_LENGTH="1000")
    assert read_body(env, 100) is None
    assert env["wsgi.input"].asked == 0


@pytest.mark.parametrize("declared", ["-1", "12abc", "1e3", " 5"])
def test_a_content_length_that_is_not_a_number_is_an_error(declared):
    with pytest.raises(ValueError, match="invalid Content-Length"):
        read_body(environ(b"{}", CONTENT_LENGTH=declared), 100)


def test_a_chunked_body_is_cut_off_one_byte_past_the_limit():
    env = environ(b"y" * 10_000, **{"wsgi.input_terminated": True})
    assert read_body(env, 100) is None
    assert env["wsgi.input"].asked == 101


def test_a_chunked_body_within_the_limit_is_read_whole():
    env = environ(b"z" * 100, **{"wsgi.input_terminated": True})
    assert read_body(env, 100) == b"z" * 100


def test_no_length_and_no_chunked_framing_means_no_body():
    env = environ(b"never read")
    assert read_body(env, 100) == b""
    assert env["wsgi.input"].asked == 0
