"""The frames between the journal writer and its dispatch process (writer/dispatch.py),
and the bound on the writer's wait for it at exit."""

from __future__ import annotations

import pytest

from receiver.writer.client import stop_timeout
from receiver.writer.dispatch import (
    RELOAD,
    SILENCE_EXPIRED,
    STOP,
    WAKE,
    Frame,
    FrameReader,
    child_timeout,
    pack,
)


def test_frames_split_anywhere_are_read_whole_and_in_order():
    sent = [pack(WAKE, 3.0), pack(RELOAD, 0.0, b"strategies: []\n"), pack(STOP, 30.0)]
    stream = b"".join(sent)
    reader = FrameReader()
    got = []
    for at in range(0, len(stream), 5):  # five bytes at a time: every split point
        got += reader.feed(stream[at : at + 5])
    assert got == [
        Frame(WAKE, 3.0, b""),
        Frame(RELOAD, 0.0, b"strategies: []\n"),
        Frame(STOP, 30.0, b""),
    ]


def test_a_frame_is_not_read_before_its_body_is_whole():
    frame = pack(RELOAD, 0.0, b"x" * 100)
    reader = FrameReader()
    assert reader.feed(frame[:-1]) == []
    assert reader.feed(frame[-1:]) == [Frame(RELOAD, 0.0, b"x" * 100)]


def test_a_corrupt_length_is_refused():
    frame = bytearray(pack(SILENCE_EXPIRED))
    frame[-4:] = (0xFFFFFFFF).to_bytes(4, "big")
    with pytest.raises(ValueError, match="not a dispatch frame"):
        FrameReader().feed(bytes(frame))


@pytest.mark.parametrize("grace", [0.0, 1.0, 30.0, 600.0])
def test_the_writer_waits_for_its_dispatch_process_less_than_the_worker_waits_for_it(grace):
    assert grace < child_timeout(grace) < stop_timeout(grace)
