"""Request URL templates whose scheme, host and port an alert label cannot change.

The safe pattern lets `/`, `:` and `@` through (paths need them), so a label rendered
into a URL's host could move the whole request, and the executor's secret headers with
it: `http://{{ labels.service }}.svc.cluster.local/restart` with `service` =
`127.0.0.1:18081/steal` would call 127.0.0.1:18081. The rule, checked in two places:

- at config load (`compile_url_template`): the scheme and `://` are written out
  (http or https); the authority (what lies between `://` and the first literal `/`,
  `?` or `#`) holds only literal text and `{{ ... }}` interpolations, none in userinfo
  or inside IPv6 brackets; an interpolation after the authority's literal `:` is a port.
- at render (`UrlTemplate.render`): each interpolation in the host renders to one
  DNS label (RFC 1123: letters, digits, `-`, 1-63 characters, no `-` at either end),
  each one in the port to digits; then the rendered URL is parsed (urlsplit) and its
  scheme and authority must be exactly the template's literal parts with those values
  put in. Anything else raises UnsafeValueError, which the engine journals as a
  refused action (skipped, not a remediation failure, so no breaker counts it).

So a secret header is only ever sent to a host that the template's literal parts allow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jinja2.sandbox import SandboxedEnvironment

from receiver.templates import Template, UnsafeValueError, compile_template

#: RFC 1123 host name label, as Kubernetes checks Service names (case kept: DNS ignores it).
DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
PORT_DIGITS = re.compile(r"[0-9]{1,5}")
SCHEMES = ("http", "https")
_END_OF_AUTHORITY = re.compile(r"[/?#]")
_LEXER = SandboxedEnvironment()  # the default delimiters, as every template uses


@dataclass(frozen=True)
class Slot:
    """One `{{ ... }}` of the authority: its expression alone, and host or port."""

    expression: Template
    kind: str  # "host" | "port"

    def check(self, value: str, url: str) -> str:
        """value if it cannot change the authority of `url` (a template's source, for the
        message), else UnsafeValueError."""
        if self.kind == "port":
            if not PORT_DIGITS.fullmatch(value):
                raise UnsafeValueError(
                    f"value {_shown(value)} in the port of request URL {_shown(url)} "
                    "is not a port number (digits only)"
                )
            return value
        if not DNS_LABEL.fullmatch(value):
            raise UnsafeValueError(
                f"value {_shown(value)} in the host of request URL {_shown(url)} is not a "
                "single DNS label (letters, digits and '-', 1-63 characters, no '-' at "
                "either end), so it could send the request to another host"
            )
        return value


@dataclass(frozen=True)
class UrlTemplate(Template):
    """A request URL template: renders like any checked template, then holds the
    rendered scheme and authority to what its literal parts allow (see module doc)."""

    scheme: str = "http"
    authority: tuple[str | Slot, ...] = ()

    def render(self, context: Mapping[str, Any], pattern: re.Pattern[str]) -> str:
        """The URL; UnsafeValueError if a value would change its scheme, host or port,
        RenderError if the template cannot be rendered for this alert."""
        url = super().render(context, pattern)
        expected = ""
        for part in self.authority:
            if isinstance(part, str):
                expected += part
            else:
                expected += part.check(part.expression.render(context, pattern), self.source)
        check_authority(url, self.scheme, expected, self.source)
        return url


def check_authority(url: str, scheme: str, authority: str, source: str = "") -> None:
    """Raise UnsafeValueError unless url's scheme is `scheme` and its authority is
    exactly `authority` (so no userinfo, host or port other than the allowed ones)."""
    shown = _shown(source or url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        raise UnsafeValueError(f"request URL rendered from {shown} is invalid: {exc}") from exc
    if parts.scheme.lower() != scheme:
        raise UnsafeValueError(
            f"request URL rendered from {shown} has scheme {_shown(parts.scheme)}, not {scheme!r}"
        )
    if parts.netloc != authority:
        raise UnsafeValueError(
            f"request URL rendered from {shown} goes to {_shown(parts.netloc)}, "
            f"not to {_shown(authority)} as the template allows"
        )


def compile_url_template(source: str) -> UrlTemplate:
    """Compile a request URL template; ValueError says what is wrong with its shape."""
    plain = compile_template(source)  # syntax errors first, worded as for any template
    tokens = list(_LEXER.lex(source))
    if not tokens or tokens[0][1] != "data" or "://" not in tokens[0][2]:
        raise ValueError(
            "the scheme and '://' of a request URL must be written out, not templated "
            "(e.g. 'https://{{ labels.service }}.example.internal/restart')"
        )
    scheme, rest = tokens[0][2].split("://", 1)
    if scheme.lower() not in SCHEMES:
        raise ValueError(f"request URL scheme must be http or https, got {scheme!r}")
    authority = _authority([(None, "data", rest), *tokens[1:]])
    _check_shape(scheme.lower(), authority)
    return UrlTemplate(
        source=source,
        compiled=plain.compiled,
        checked=True,
        parts=plain.parts,
        scheme=scheme.lower(),
        authority=authority,
    )


def _authority(tokens: Sequence[tuple[Any, str, str]]) -> tuple[str | Slot, ...]:
    """Literal text and `{{ }}` expressions up to the first literal `/`, `?` or `#`."""
    parts: list[str | tuple[str, ...]] = []
    expression: list[str] | None = None
    for _line, kind, value in tokens:
        if expression is not None:
            if kind == "variable_end":
                parts.append(tuple(expression))
                expression = None
            else:
                expression.append(value)
        elif kind == "data":
            end = _END_OF_AUTHORITY.search(value)
            parts.append(value[: end.start()] if end else value)
            if end:
                break
        elif kind == "variable_begin":
            expression = []
        else:
            raise ValueError(
                "only literal text and {{ ... }} may form the host and port of a request "
                "URL: no {% ... %} blocks or comments before its first '/'"
            )
    return _classify(parts)


def _classify(parts: list[str | tuple[str, ...]]) -> tuple[str | Slot, ...]:
    """Name each interpolation host or port, refusing ones in userinfo or IPv6 brackets."""
    literal = "".join(p for p in parts if isinstance(p, str))
    at = literal.rfind("@")
    port_from = literal.rfind(":") if "]" not in literal[literal.rfind(":") :] else -1
    classified: list[str | Slot] = []
    offset = 0  # characters of literal text seen so far
    for part in parts:
        if isinstance(part, str):
            if part:
                classified.append(part)
            offset += len(part)
            continue
        if offset <= at:
            raise ValueError("a request URL may not interpolate into its userinfo (before '@')")
        if _inside_brackets(literal, offset):
            raise ValueError("a request URL may not interpolate into an IPv6 address ([...])")
        kind = "port" if port_from >= 0 and offset > port_from else "host"
        source = "{{" + "".join(part) + "}}"
        classified.append(Slot(compile_template(source), kind))
    return tuple(classified)


def _inside_brackets(literal: str, offset: int) -> bool:
    before = literal[:offset]
    return before.rfind("[") > before.rfind("]")


def _check_shape(scheme: str, authority: tuple[str | Slot, ...]) -> None:
    """The authority with sample values put in must have a host: catches `http:///x`."""
    sample = "".join(
        part if isinstance(part, str) else ("1" if part.kind == "port" else "a")
        for part in authority
    )
    try:
        parts = urlsplit(f"{scheme}://{sample}/")
        parts.port  # noqa: B018 - raises ValueError on a literal port out of range
    except ValueError as exc:
        raise ValueError(f"request URL has an invalid host or port: {exc}") from exc
    if not parts.hostname:
        raise ValueError("request URL has no host after '://'")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 120 else value[:117] + "...")
