"""Prometheus-style durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("1s", 1.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 31536000.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1h0m5s", 3605.0),
        ("1m500ms", 60.5),
        ("1d2h3m4s", 93784.0),
        ("007s", 7.0),
    ],
)
def test_parse_valid(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize(
    "text",
    ["", "300", "0", "-5m", "5x", "5M", "5 m", " 5m", "5m ", "m", "1.5h", "1h30", "5mss", "+5s"],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [5, 5.0, None, ["5m"]])
def test_parse_refuses_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="use a number with a unit"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1, "1s"),
        (90, "1m30s"),
        (300, "5m"),
        (5400, "1h30m"),
        (86400, "1d"),
        (8 * 86400 + 5, "8d5s"),
        (0.25, "250ms"),
        (1.5, "1s500ms"),
        (60.5, "1m500ms"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["0s", "250ms", "30s", "5m", "1h30m", "1d2h3m4s", "2m1s500ms"])
def test_canonical_text_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@given(st.integers(min_value=0, max_value=10**11))
def test_format_then_parse_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-6)
