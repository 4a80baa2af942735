"""Log records stay one line each, whatever an alert's labels hold (issue 11, item 12)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from receiver.logs import JsonFormatter, TextFormatter, escape_controls

# The case: an alertname that ends the line, forges a second record and colours
# (then clears) the operator's terminal.
FORGED = "Boom\n2026-11-29 03:00:00,000 INFO receiver.app: breaker reset\x1b[31m\x1b[2J"


@pytest.fixture
def emit() -> Iterator:
    """Log one record the way receiver/engine.py does, through a chosen formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("receiver.engine.test_logs")
    logger.addHandler(handler)
    logger.propagate = False

    def emit(formatter: logging.Formatter, **extra: object) -> str:
        handler.setFormatter(formatter)
        stream.seek(0)
        stream.truncate()
        logger.warning("incident opened: %s", FORGED, extra=extra)
        return stream.getvalue()

    yield emit
    logger.removeHandler(handler)


def test_text_format_keeps_a_forged_alertname_on_one_line(emit) -> None:
    out = emit(TextFormatter(), incident_id=7, target=FORGED)
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "\x1b" not in out
    escaped = "Boom\\n2026-11-29 03:00:00,000 INFO receiver.app: breaker reset\\x1b[31m\\x1b[2J"
    assert f"incident opened: {escaped} incident_id=7 target={escaped}\n" in out


def test_json_format_is_one_line_and_keeps_the_value_exactly(emit) -> None:
    out = emit(JsonFormatter(), target=FORGED)
    assert out.count("\n") == 1 and "\x1b" not in out
    entry = json.loads(out)
    assert entry["msg"] == f"incident opened: {FORGED}"
    assert entry["target"] == FORGED


def test_text_format_escapes_a_traceback_onto_the_same_line() -> None:
    record = logging.makeLogRecord({"msg": "failed", "levelname": "ERROR", "name": "x"})
    try:
        raise ValueError(FORGED)
    except ValueError:
        record.exc_info = sys.exc_info()
    out = TextFormatter().format(record)
    assert "\n" not in out and "\x1b" not in out
    assert "ValueError: Boom\\n2026" in out


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b31m", "csi\\x9b31m"),  # the one-byte CSI of C1
        ("line\u2028sep", "line\\u2028sep"),
        ("plain é ü 日本", "plain é ü 日本"),
    ],
)
def test_escape_controls(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown
