"""Alertmanager's label matcher syntax and first-match-wins strategy routing.

Operators expect the exact semantics of an Alertmanager route, so regexes are fully
anchored and a missing label matches as the empty string, as Alertmanager does. Label
values are untrusted, so regexes run on RE2 (receiver/regex.py): linear time, and the
syntax of Go's regexp that Alertmanager uses.

Label names are UTF-8, as Prometheus 3 and Alertmanager 0.27+ accept them (OpenTelemetry
names such as `k8s.pod.name`): any non-empty string of valid UTF-8. In a matcher, a
classic name (`[a-zA-Z_][a-zA-Z0-9_]*`) may stand bare; any other name is double-quoted
with the escapes of a quoted value (`\\`, `\"`, `\n`), as in Alertmanager's UTF-8
matcher parser (`matchers/parse`): `"k8s.pod.name"=~"cart-.*"`. Alertmanager also takes
some other names bare; we do not, so that a name never depends on which characters
happen to be reserved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from receiver.regex import LinearPattern, RegexError, compile_linear

#: A classic label name: the only names a matcher may leave unquoted.
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_MATCHER = re.compile(
    rf"""\s*(?P<name>{_QUOTED}|[^\s!=~"]+)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>{_QUOTED}|[^"\s]*)\s*"""
)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

OPERATORS = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    """A matcher string that Alertmanager would refuse too."""


def is_label_name(name: str) -> bool:
    """Whether `name` is a label name Prometheus 3 and Alertmanager 0.27+ accept: any
    non-empty string that is valid UTF-8 (Go's `utf8.ValidString`; a lone surrogate is
    not). NUL is valid UTF-8 there too; names are stored inside escaped JSON."""
    if not name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def quote(text: str) -> str:
    """`text` double-quoted with the matcher escapes (`\\`, `\"`, `\n`)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def format_name(name: str) -> str:
    """A label name as a matcher writes it: bare when classic, else quoted."""
    return name if LABEL_NAME.fullmatch(name) else quote(name)


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
        return f"{format_name(self.name)}{self.op}{quote(self.value)}"


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


def _name(raw: str, text: str) -> str:
    """The label name of a matcher: bare and classic, or quoted and valid UTF-8."""
    if raw.startswith('"'):
        name = _unquote(raw)
        if not is_label_name(name):
            raise MatcherError(
                f"invalid label name {name!r} in matcher {text!r}: empty or not valid UTF-8"
            )
        return name
    if any(char in raw for char in "{},'`"):
        raise MatcherError(
            f"bad matcher {text!r}: one matcher per list item, without braces, commas or "
            "single quotes around a name; double-quote a name that needs them"
        )
    if not LABEL_NAME.fullmatch(raw):
        raise MatcherError(
            f"invalid label name {raw!r} in matcher {text!r}: a name other than "
            f'[a-zA-Z_][a-zA-Z0-9_]* must be double-quoted, e.g. {quote(raw)}="value"'
        )
    return raw


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as `severity=~"critical|page"` or `"k8s.pod.name"="x"`.

    Raises MatcherError naming what is wrong: the syntax, a bare name that is not
    classic, an empty name, an escape other than `\\\\ \\" \\n`, or a regex RE2 refuses."""
    if not isinstance(text, str):
        raise MatcherError(f"matcher must be a string, got {type(text).__name__}")
    if text.strip().startswith("{") or text.strip().endswith("}"):  # as Alertmanager's
        raise MatcherError(f"bad matcher {text!r}: one matcher per list item, without braces")
    found = _MATCHER.fullmatch(text)
    if not found:
        raise MatcherError(
            f"bad matcher {text!r}: expected name, one of = != =~ !~, and a value, "
            'e.g. alertname="ServiceDown"'
        )
    name, op = _name(found["name"], text), found["op"]
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
    """Turn `name=value` command-line arguments into a label set.

    The name is everything before the first `=` (so `k8s.pod.name=cart-7d9f` works; a
    name holding `=` cannot be given here); it must be a label name (is_label_name).
    Raises MatcherError naming the argument."""
    labels = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not is_label_name(name):
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
