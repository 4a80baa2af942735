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


def _record(msg: str, created: float, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("receiver.dispatcher", logging.INFO, __file__, 1, msg, (), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("created", [1_800_000_000.0, 1_800_000_000.999, 1_800_000_001.5])
def test_text_format_writes_what_the_standard_formatter_writes(created: float) -> None:
    """The second is formatted once and kept: a line of the next second is not given
    the previous one's, and the line is the standard formatter's, context appended."""
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    ours = TextFormatter()
    ours.format(_record("warm the cache", created - 1))
    line = ours.format(_record("action succeeded: ok", created, action_id=3))
    assert line == standard.format(_record("action succeeded: ok", created)) + " action_id=3"


def test_json_format_stamps_each_record_with_its_own_utc_time() -> None:
    formatter = JsonFormatter()
    first = json.loads(formatter.format(_record("a", 1_800_000_000.25)))
    later = json.loads(formatter.format(_record("b", 1_800_000_061.5, incident_id=4)))
    assert first["ts"] == "2027-01-15T08:00:00.250Z"
    assert later == {
        "ts": "2027-01-15T08:01:01.500Z",
        "level": "info",
        "logger": "receiver.dispatcher",
        "msg": "b",
        "incident_id": 4,
    }


def test_a_message_that_ends_a_line_gets_its_traceback_as_the_standard_formatter_does() -> None:
    try:
        raise ValueError("x")
    except ValueError:
        info = sys.exc_info()
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    ours = TextFormatter()
    for message in ("failed", "failed\n"):
        record = _record(message, 1_800_000_000.0)
        record.exc_info = info
        assert ours.format(record) == escape_controls(standard.format(record))
