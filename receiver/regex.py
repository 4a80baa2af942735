"""Regexes from the config applied to untrusted values: linear time, RE2 semantics.

Matcher regexes and safe patterns are written by operators but run against alert labels
that whoever can reach Alertmanager chooses. Python's backtracking engine takes
exponential time on a pattern such as `(a+)+b` against fifty `a`s, which pinned the
journal writer. RE2 (via `google-re2`) guarantees time linear in the input, and it is the
engine behind Go's regexp, so a pattern means here what it means in an Alertmanager
route. Features RE2 does not have (backreferences, lookarounds) are refused at load, as
Alertmanager refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message says why, as RE2 put it."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported by the caller, not on stderr
    return options


@dataclass(frozen=True)
class LinearPattern:
    """A compiled RE2 regex. Equal when the sources are equal.

    `pattern` is the source as written; `fullmatch(text)` says whether the WHOLE text
    matches, in time linear in len(text).
    """

    pattern: str
    _compiled: Any = field(repr=False, compare=False)

    def fullmatch(self, text: str) -> bool:
        # Lone surrogates cannot be UTF-8: pass their bytes through rather than crash.
        # No valid UTF-8 character class matches them, so a safe pattern refuses them.
        return self._compiled.fullmatch(text.encode("utf-8", "surrogatepass")) is not None


def compile_linear(source: str) -> LinearPattern:
    """Compile `source` with RE2 (Go regexp syntax).

    Raises RegexError for syntax RE2 lacks (`\\1`, `(?=`, `(?!`, `(?<=`) or an invalid
    or too large pattern, naming the reason.
    """
    try:
        compiled = re2.compile(source, options=_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(
            f"{reason} (RE2 syntax, as in Alertmanager: no backreferences or lookarounds)"
        ) from exc
    except (TypeError, UnicodeError) as exc:
        raise RegexError(str(exc)) from exc
    return LinearPattern(source, compiled)
