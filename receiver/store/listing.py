"""Read-API pages bounded in rows and in bytes, whatever the journal holds.

A stored incident may carry megabytes (256 annotations of 16,384 characters), an action
a long output. A listing therefore never loads whole rows:

    ids of the page (LIMIT/OFFSET) ──► one row at a time ──► fields cut ──► fits? ──► page
                                       text: substr + byte length in SQL       │ no
                                       JSON: read in chunks, entry by entry    ▼
                                                                    stop; next_offset

- A text field longer than `field_bytes` (UTF-8) keeps its first `field_bytes` bytes
  and ends with MARKER, "[... truncated, N bytes]", N the bytes cut off.
- A JSON object field (labels, annotations, params) shares `field_bytes` among its
  entries in key order: the value that crosses the budget is cut with MARKER (a value
  that is not a string is replaced by MARKER), later entries are left out and the row's
  `omitted` says how many bytes of the stored JSON were not shown.
- A row with anything cut has `truncated: true`. The page stops before the row that
  would take the JSON body past `page_bytes`, but always holds one row, so paging by
  `next_offset` always progresses.

Memory per request is thus about one page plus one JSON entry, however large the rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MARKER = "[... truncated, {} bytes]"
#: characters of a JSON column read per query; an entry larger than this reads more
CHUNK = 65536
#: bytes kept free for the page's envelope (total, limit, offset, next_offset)
ENVELOPE_BYTES = 256
_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"

#: a column of a listing: "plain" is read whole (numbers, statuses, timestamps), "text"
#: is cut in SQL, "json" is an object read in chunks
Column = tuple[str, str]
#: (sql, params) -> cursor, inside the listing's read transaction
Execute = Callable[[str, Sequence[Any]], Any]


@dataclass(frozen=True)
class PageBounds:
    """One page: at most `rows` rows and `page_bytes` of JSON; a field at most
    `field_bytes` (limits.max_page_bytes and limits.max_field_bytes)."""

    rows: int
    page_bytes: int
    field_bytes: int

    def __post_init__(self) -> None:
        if min(self.rows, self.page_bytes, self.field_bytes) < 1:
            raise ValueError(f"page bounds must be positive: {self}")


def marker(cut: int) -> str:
    """The text that ends a cut field: `cut` is the number of bytes left out."""
    return MARKER.format(cut)


def utf8_size(text: str) -> int:
    """Bytes of `text` in UTF-8 (a lone surrogate counts its 3 bytes, never raises)."""
    return len(text.encode("utf-8", "surrogatepass"))


def cut_text(text: str, budget: int) -> tuple[str, int]:
    """(text as shown, bytes cut off): whole when its UTF-8 form fits `budget` bytes,
    else its first `budget` bytes (whole characters only) followed by the marker."""
    return cut_prefix(text, utf8_size(text), budget)


def cut_prefix(prefix: str, total_bytes: int, budget: int) -> tuple[str, int]:
    """As cut_text, for a text of which only a prefix (at least `budget` characters
    when longer) was read and whose full size is `total_bytes`."""
    if total_bytes <= budget:
        return prefix, 0
    kept = prefix.encode("utf-8", "surrogatepass")[: max(budget, 0)]
    shown = kept.decode("utf-8", "ignore")  # a character split by the cut is dropped
    cut = total_bytes - utf8_size(shown)
    return shown + marker(cut), cut


@dataclass
class Shown:
    """A JSON object field as a listing shows it."""

    value: dict[str, Any]
    cut: bool  # a value was cut or replaced by the marker
    omitted_bytes: int  # bytes of stored JSON left out after the budget ran out


class _Stream:
    """A stored JSON text read in chunks; only the unread tail of the buffer is kept."""

    def __init__(self, first: str, total: int, more: Callable[[int, int], str]) -> None:
        self.buf = first
        self.base = 0  # position of buf[0] in the stored text
        self.total = total
        self.more = more

    @property
    def complete(self) -> bool:
        return self.base + len(self.buf) >= self.total

    def extend(self) -> bool:
        if self.complete:
            return False
        chunk = self.more(self.base + len(self.buf), CHUNK)
        if not chunk:  # shorter than announced (changed meanwhile): take what is there
            self.total = self.base + len(self.buf)
            return False
        self.buf += chunk
        return True

    def drop(self, index: int) -> int:
        """Forget what was consumed before `index`; return the new index (0)."""
        self.base += index
        self.buf = self.buf[index:]
        return 0

    def char(self, index: int) -> tuple[str, int]:
        """The next character that is not white space, and its index ('' at the end)."""
        while True:
            while index < len(self.buf) and self.buf[index] in _SPACE:
                index += 1
            if index < len(self.buf):
                return self.buf[index], index
            if not self.extend():
                return "", index

    def value(self, index: int) -> tuple[Any, int]:
        """Decode the JSON value at `index`, reading more until it is whole (a number
        at the end of the buffer may go on in the next chunk)."""
        _, index = self.char(index)
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, index)
                if end < len(self.buf) or self.complete:
                    return value, end
            except json.JSONDecodeError:
                if self.complete:
                    raise
            if not self.extend():
                raise json.JSONDecodeError("truncated JSON", self.buf, index)


def bounded_object(first: str, total: int, more: Callable[[int, int], str], budget: int) -> Shown:
    """A stored JSON object shown within `budget` bytes (see the module docstring).

    first: the stored text's first characters (all of it when `total` <= len(first));
    total: its length in characters; more(start, count): characters from `start`.
    Raises json.JSONDecodeError when the stored text is not a JSON object.
    """
    stream = _Stream(first, total, more)
    opening, index = stream.char(0)
    if opening != "{":
        raise json.JSONDecodeError("expected an object", stream.buf, index)
    index += 1
    shown: dict[str, Any] = {}
    remaining = budget
    cut = False
    while True:
        mark, index = stream.char(index)
        if mark in ("}", ""):
            return Shown(shown, cut, 0)
        if mark == ",":
            index += 1
            continue
        start = stream.base + index
        if remaining <= 0:  # the budget is spent: the rest is not even decoded
            return Shown(shown, True, stream.total - start)
        key, index = stream.value(index)
        mark, index = stream.char(index)
        if mark != ":":
            raise json.JSONDecodeError("expected ':'", stream.buf, index)
        room = remaining - utf8_size(str(key))
        if room < 0:
            return Shown(shown, True, stream.total - start)
        value, index = stream.value(index + 1)
        shown[key], used, was_cut = _bounded_value(value, room)
        remaining = room - used
        cut = cut or was_cut
        index = stream.drop(index)


def _bounded_value(value: Any, room: int) -> tuple[Any, int, bool]:
    """(value as shown, bytes it takes of the budget, whether it was cut)."""
    if isinstance(value, str):
        text, cut = cut_text(value, room)
        return text, room if cut else utf8_size(text), bool(cut)
    size = len(json.dumps(value, separators=(",", ":")))
    if size <= room:
        return value, size, False
    return marker(size), room, True


def latest_that_fit(items: list[Any], budget: int) -> tuple[list[Any], int]:
    """(the last items whose JSON fits `budget` bytes, at least one; how many left out)."""
    kept: list[Any] = []
    used = 0
    for item in reversed(items):
        used += len(json.dumps(item, separators=(",", ":"))) + 1
        if kept and used > budget:
            break
        kept.insert(0, item)
    return kept, len(items) - len(kept)


@dataclass
class PageFill:
    """Rows of one page until the next would take its JSON body past the bound."""

    bounds: PageBounds
    items: list[dict[str, Any]] = field(default_factory=list)
    used: int = ENVELOPE_BYTES

    def add(self, row: dict[str, Any]) -> bool:
        """Take the row if it fits (the first always does); False: the page is full."""
        # the size as Flask's compact, ASCII-only JSON writes it, plus its comma
        size = len(json.dumps(row, separators=(",", ":"))) + 1
        if self.items and (self.used + size > self.bounds.page_bytes):
            return False
        self.items.append(row)
        self.used += size
        return True

    @property
    def full(self) -> bool:
        return len(self.items) >= self.bounds.rows


def select_list(columns: Sequence[Column], bounds: PageBounds, byte_length: str) -> str:
    """SQL select expressions for a bounded row: text cut in SQL with its byte length,
    JSON's first chunk with its length in characters (as substr counts)."""
    parts: list[str] = []
    for name, kind in columns:
        if kind == "plain":
            parts.append(name)
        elif kind == "text":
            parts += [f"substr({name}, 1, {int(bounds.field_bytes)})", byte_length.format(name)]
        else:
            parts += [f"substr({name}, 1, {CHUNK})", f"length({name})"]
    return ", ".join(parts)


def read_row(
    execute: Execute,
    table: str,
    row_id: Any,
    columns: Sequence[Column],
    bounds: PageBounds,
    byte_length: str,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One row by id with every field bounded: (values by column, what was left out:
    column -> {"bytes": N} for JSON entries not shown). `truncated` is set in values.
    None when the row is gone."""
    sql = f"SELECT {select_list(columns, bounds, byte_length)} FROM {table} WHERE id = ?"
    raw = execute(sql, (row_id,)).fetchone()
    if raw is None:
        return None
    values: dict[str, Any] = {}
    omitted: dict[str, Any] = {}
    truncated = False
    position = 0
    for name, kind in columns:
        if kind == "plain":
            values[name] = raw[position]
            position += 1
            continue
        head, size = raw[position], raw[position + 1]
        position += 2
        if head is None:
            values[name] = None
        elif kind == "text":
            values[name], cut = cut_prefix(head, size, bounds.field_bytes)
            truncated = truncated or bool(cut)
        else:
            try:
                shown = bounded_object(
                    head, size, _chunks(execute, table, name, row_id), bounds.field_bytes
                )
            except json.JSONDecodeError:  # not written by this journal: shown as text
                values[name], cut = cut_prefix(head, size, bounds.field_bytes)
                truncated = truncated or bool(cut)
                continue
            values[name] = shown.value
            truncated = truncated or shown.cut or bool(shown.omitted_bytes)
            if shown.omitted_bytes:
                omitted[name] = {"bytes": shown.omitted_bytes}
    values["truncated"] = truncated or bool(omitted)
    return values, omitted


def _chunks(execute: Execute, table: str, column: str, row_id: Any) -> Callable[[int, int], str]:
    def more(start: int, count: int) -> str:
        row = execute(
            f"SELECT substr({column}, {int(start) + 1}, {int(count)}) FROM {table} WHERE id = ?",
            (row_id,),
        ).fetchone()
        return row[0] if row and row[0] else ""

    return more
