"""Canonical JSON text: what the journal stores for label sets, parameters and summaries.

Keys sorted, ASCII only, json's default separators: the text json.dumps(value,
sort_keys=True) gives, so that equal values are stored as equal text. Ingest encodes
four values per alert (labels, annotations, the action's parameters, the notification's
summary), and JSONEncoder.encode builds a new C encoder on each call, which costs half
as much again as the encoding; here it is built once. Without the C accelerator (not
CPython) the encoder's own encode gives the same text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any


def _canonical() -> Callable[[Any], str]:
    reference = json.JSONEncoder(sort_keys=True)
    make = _encoder.c_make_encoder
    if make is None:
        return reference.encode
    encode = make(
        None,  # no check for cycles: the journal's values are trees
        reference.default,  # refuses what JSON cannot hold, saying what it was
        _encoder.encode_basestring_ascii,
        None,  # no indent
        reference.key_separator,
        reference.item_separator,
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan, as json.dumps
    )

    def canonical(value: Any) -> str:
        return "".join(encode(value, 0))

    return canonical


#: JSON with sorted keys, as the journal stores it (module docstring)
canonical_json = _canonical()
