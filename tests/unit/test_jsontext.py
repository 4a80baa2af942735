"""The journal's canonical JSON is json.dumps(sort_keys=True)'s text, whatever the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.store.jsontext import canonical_json


@pytest.mark.parametrize(
    "value",
    [
        {"service": "cart", "alertname": "Down", "instance": "web-1:9100"},
        {"b": [1, 2.5, None, True, False], "a": {"z": "é", "y": "\u2028\x00\x1b"}},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        {"surrogate": "a\ud800b", "": ""},
        {"command": ["/bin/fix", "--target", "web-1"], "params": {}},
        {1: "int key", 2: "another"},
        [],
        {},
        "top-level text",
        42,
        None,
    ],
)
def test_canonical_json_is_the_text_of_sorted_json_dumps(value: Any) -> None:
    assert canonical_json(value) == json.dumps(value, sort_keys=True)


def test_a_value_json_cannot_hold_is_refused_saying_what_it_is() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        canonical_json({"a": object()})
