r"""Structured logs: every line can carry incident and action ids, as JSON or text.

Operators grep for "action_id=42" or feed JSON into their log pipeline; both forms
carry the same fields so an incident can be followed from webhook to verification.

Messages and fields carry alert data (an `alertname` is whatever a client sent), so a
record is always ONE line with no control character in it: JSON escapes them itself,
and the text format writes them as `\n`, `\x1b`, ... (escape_controls), so that a label
can neither forge a log line nor send an escape sequence to an operator's terminal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable

CONTEXT_FIELDS = (
    "incident_id",
    "action_id",
    "fingerprint",
    "strategy",
    "target",
    "cancelled_actions",
)

# C0 controls, DEL, C1 controls (0x9b is a one-byte CSI) and Unicode's line separators.
_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_CONTROLS |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
_CONTROLS |= {0x2028: "\\u2028", 0x2029: "\\u2029"}
#: Any character of _CONTROLS: most lines have none, and a search costs less than a
#: translate, which looks up every character.
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    r"""text with every control character written as a visible escape (`\n`, `\x1b`)."""
    if _ANY_CONTROL.search(text) is None:
        return text
    return text.translate(_CONTROLS)


def _context(record: logging.LogRecord) -> dict[str, object]:
    values = record.__dict__  # the fields come as `extra`: attributes of the record itself
    return {name: values[name] for name in CONTEXT_FIELDS if name in values}


class _Seconds:
    """A record time's whole second, formatted once per second (`fmt` for
    time.strftime, in the time `convert` gives: time.localtime or time.gmtime), not once
    per line: strftime is a good part of a line's cost."""

    def __init__(self, fmt: str, convert: Callable[[float], time.struct_time]) -> None:
        self._fmt = fmt
        self._convert = convert
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last  # one tuple, swapped whole: safe across threads
        if last[0] != second:
            last = (second, time.strftime(self._fmt, self._convert(second)))
            self._last = last
        return last[1]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, milliseconds), level, logger, msg, the context
    fields present, and exc (the traceback) when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)
        self._encoder = json.JSONEncoder(default=str)  # as json.dumps(default=str), built once

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry)


class TextFormatter(logging.Formatter):
    """`<local time>,<ms> LEVEL logger: message key=value...` on one line, as
    logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s") writes it, with
    the context fields appended and every control character escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._seconds = _Seconds(self.default_time_format, self.converter)

    def format(self, record: logging.LogRecord) -> str:
        """One line: message, context fields and any traceback with controls escaped."""
        record.message = record.getMessage()
        record.asctime = f"{self._seconds(record.created)},{int(record.msecs):03d}"
        line = f"{record.asctime} {record.levelname} {record.name}: {record.message}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # as logging.Formatter.format appends them
            line = _after_newline(line, record.exc_text)
        if record.stack_info:
            line = _after_newline(line, self.formatStack(record.stack_info))
        context = " ".join(f"{key}={value}" for key, value in _context(record).items())
        return escape_controls(f"{line} {context}" if context else line)


def _after_newline(line: str, more: str) -> str:
    return f"{line}{more}" if line.endswith("\n") else f"{line}\n{more}"


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Replace root handlers: one stream handler on stderr in the chosen format.

    Records no longer carry what neither format shows (the Logging HOWTO's
    "Optimization"): the caller's file, line and function, found by walking the stack
    for every record, and the process's id and name."""
    logging._srcfile = None
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def gunicorn_logconfig(log_format: str) -> dict[str, object]:
    """dictConfig for gunicorn's own loggers, so its lines match ours in either format."""
    formatter = "JsonFormatter" if log_format == "json" else "TextFormatter"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "remediator",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"remediator": {"()": f"receiver.logs.{formatter}"}},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
