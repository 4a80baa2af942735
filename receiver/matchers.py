"""Alertmanager's label matcher syntax and first-match-wins strategy routing.

Operators expect the exact semantics of an Alertmanager route, so regexes are fully
anchored and a missing label matches as the empty string, as Alertmanager does. Label
values are untrusted, so regexes run on RE2 (receiver/regex.py): linear time, and the
syntax of Go's regexp that Alertmanager uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from receiver.regex import LinearPattern, RegexError, compile_linear

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCHER = re.compile(
    r"""\s*(?P<name>[^\s!=~"]+)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"\s]*)\s*"""
)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

OPERATORS = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    """A matcher string that Alertmanager would refuse too."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    pattern: LinearPattern | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual)
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def _unquote(raw: str) -> str:
    if not (raw.startswith('"') and raw.endswith('"') and len(raw) >= 2):
        return raw
    out, chars = [], iter(raw[1:-1])
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in _ESCAPES:
                raise MatcherError(f"invalid escape sequence \\{escaped}")
            out.append(_ESCAPES[escaped])
        else:
            out.append(char)
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as `severity=~"critical|page"`."""
    if not isinstance(text, str):
        raise MatcherError(f"matcher must be a string, got {type(text).__name__}")
    found = _MATCHER.fullmatch(text)
    if not found:
        raise MatcherError(
            f"bad matcher {text!r}: expected name, one of = != =~ !~, and a value, "
            'e.g. alertname="ServiceDown"'
        )
    name, op = found["name"], found["op"]
    if not LABEL_NAME.fullmatch(name):
        raise MatcherError(f"invalid label name {name!r} in matcher {text!r}")
    value = _unquote(found["value"])
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = compile_linear(f"(?:{value})")
        except RegexError as exc:  # (a)\1, (?!x), x{1001}, ((((...
            raise MatcherError(f"invalid regex {value!r} in matcher {text!r}: {exc}") from exc
    return Matcher(name, op, value, pattern)


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(text) for text in texts)


def parse_label_args(args: Sequence[str]) -> dict[str, str]:
    """Turn `name=value` command-line arguments into a label set."""
    labels = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not LABEL_NAME.fullmatch(name):
            raise MatcherError(f"expected LABEL=VALUE with a valid label name, got {arg!r}")
        labels[name] = value
    return labels


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class Routable(Protocol):
    matchers: tuple[Matcher, ...]
    continue_matching: bool


T = TypeVar("T", bound=Routable)


def route(strategies: Sequence[T], labels: Mapping[str, str]) -> list[T]:
    """Strategies that handle these labels: the first match, plus later ones while
    each matched strategy says `continue: true` (Alertmanager route semantics)."""
    chosen: list[T] = []
    for strategy in strategies:
        if all_match(strategy.matchers, labels):
            chosen.append(strategy)
            if not strategy.continue_matching:
                break
    return chosen
