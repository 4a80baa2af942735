"""Bounded listings (receiver/store/listing.py): fields cut with a visible marker, JSON
objects read entry by entry in chunks, pages bounded in bytes with at least one row."""

from __future__ import annotations

import json

import pytest

from receiver.store.listing import (
    CHUNK,
    ENVELOPE_BYTES,
    PageBounds,
    PageFill,
    bounded_object,
    cut_prefix,
    cut_text,
    latest_that_fit,
    marker,
)


def reader(text: str, calls: list[tuple[int, int]] | None = None):
    """`more(start, count)` over a stored text, recording what was asked."""

    def more(start: int, count: int) -> str:
        if calls is not None:
            calls.append((start, count))
        return text[start : start + count]

    return more


def stored(obj: dict) -> str:
    return json.JSONEncoder(sort_keys=True).encode(obj)  # as the journal writes it


def test_text_within_the_budget_is_whole() -> None:
    assert cut_text("web-1", 5) == ("web-1", 0)


def test_longer_text_keeps_its_first_bytes_and_says_how_many_were_cut() -> None:
    shown, cut = cut_text("x" * 10_000, 4096)
    assert cut == 10_000 - 4096
    assert shown == "x" * 4096 + marker(cut)
    assert shown.endswith("[... truncated, 5904 bytes]")


def test_a_cut_never_splits_a_character() -> None:
    text = "é" * 10  # 2 bytes each
    shown, cut = cut_text(text, 5)
    assert shown == "éé" + marker(len(text.encode()) - 4)
    assert cut == 16


def test_a_prefix_read_in_sql_is_cut_by_the_full_size() -> None:
    full = "y" * 50_000
    assert cut_prefix(full[:100], len(full), 100) == ("y" * 100 + marker(49_900), 49_900)


def test_an_object_within_the_budget_is_whole() -> None:
    value = {"a": "1", "b": "two", "n": 3}
    text = stored(value)
    shown = bounded_object(text, len(text), reader(text), 4096)
    assert (shown.value, shown.cut, shown.omitted_bytes) == (value, False, 0)


def test_the_value_crossing_the_budget_is_cut_and_the_rest_left_out() -> None:
    value = {f"k{i:03d}": "v" * 16_384 for i in range(256)}  # ~4 MB, as an alert may hold
    text = stored(value)
    calls: list[tuple[int, int]] = []
    shown = bounded_object(text[:CHUNK], len(text), reader(text, calls), 4096)
    room = 4096 - len("k000")
    assert shown.value == {"k000": "v" * room + marker(16_384 - room)}
    assert shown.cut
    second = text.index('"k001"')
    assert shown.omitted_bytes == len(text) - second
    assert calls == []  # the first chunk held all that is shown: nothing more was read


def test_entries_are_read_in_chunks_when_one_is_larger_than_a_chunk() -> None:
    big = "z" * (3 * CHUNK)
    text = stored({"a": big, "b": "after"})
    calls: list[tuple[int, int]] = []
    shown = bounded_object(text[:CHUNK], len(text), reader(text, calls), 10 * CHUNK)
    assert shown.value == {"a": big, "b": "after"}
    assert [start for start, _ in calls] == [CHUNK, 2 * CHUNK, 3 * CHUNK]


def test_a_number_split_by_a_chunk_is_read_whole() -> None:
    text = '{"n": 123456789}'
    split = text.index("5")
    shown = bounded_object(text[:split], len(text), reader(text), 100)
    assert shown.value == {"n": 123456789}


def test_a_value_that_is_not_text_is_replaced_by_the_marker_when_too_large() -> None:
    params = {"argv": ["x" * 100] * 100, "small": 1}
    text = stored(params)
    shown = bounded_object(text, len(text), reader(text), 1000)
    size = len(json.dumps(params["argv"], separators=(",", ":")))
    assert shown.value == {"argv": marker(size)}
    assert shown.omitted_bytes == len(text) - text.index('"small"')


def test_stored_text_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        bounded_object("[1, 2]", 6, reader("[1, 2]"), 100)


def test_latest_items_are_kept_and_the_rest_counted() -> None:
    items = [[i, True] for i in range(100)]
    kept, left_out = latest_that_fit(items, 100)
    per_item = len(json.dumps([99, True], separators=(",", ":"))) + 1
    assert kept == items[-(100 // per_item) :]
    assert left_out == 100 - len(kept)


def test_a_page_stops_before_the_row_that_would_pass_its_bytes() -> None:
    row = {"id": 1, "text": "x" * 1000}
    size = len(json.dumps(row, separators=(",", ":"))) + 1
    fill = PageFill(PageBounds(rows=100, page_bytes=ENVELOPE_BYTES + 3 * size, field_bytes=10))
    assert [fill.add(row) for _ in range(4)] == [True, True, True, False]
    assert len(fill.items) == 3


def test_a_page_always_holds_one_row_however_large() -> None:
    fill = PageFill(PageBounds(rows=10, page_bytes=300, field_bytes=10))
    assert fill.add({"text": "x" * 5000})
    assert not fill.add({"id": 2})


@pytest.mark.parametrize("bad", [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_bounds_must_be_positive(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        PageBounds(*bad)
