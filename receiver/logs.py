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
import sys
import time

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


def escape_controls(text: str) -> str:
    r"""text with every control character written as a visible escape (`\n`, `\x1b`)."""
    return text.translate(_CONTROLS)


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if hasattr(record, name)}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """One line: message, context fields and any traceback with controls escaped."""
        line = super().format(record)
        context = " ".join(f"{key}={value}" for key, value in _context(record).items())
        return escape_controls(f"{line} {context}" if context else line)


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Replace root handlers: one stream handler on stderr in the chosen format."""
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
