"""Prometheus-style durations ("90s", "5m", "1h30m") as used throughout the config."""

from __future__ import annotations

import re

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")


def parse_duration(text: str) -> float:
    """Return seconds for a Prometheus duration; raise ValueError naming the accepted form.

    Bare numbers are refused on purpose: "300" could mean seconds or minutes to a reader,
    and a wrong guess silently changes a cooldown by a factor of 60.
    """
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 5m, 1h30m "
            "(units ms, s, m, h, d, w, y)"
        )
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds back in the shortest Prometheus form, for explain output and logs."""
    remaining, millis = divmod(round(seconds * 1000), 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts) or "0s"
