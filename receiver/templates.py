"""Sandboxed Jinja2 templates that turn untrusted alert labels into strategy parameters.

Labels come from whoever can reach Alertmanager, so every value a template interpolates
into a command argument, URL or resource name must match a safe pattern. The check runs
on each `{{ ... }}` output (via Jinja's finalize hook), which lets operators write
`http://svc/{{ labels.service }}/restart?force=1` without the literal parts tripping it,
while a label value like `x; rm -rf /` or `../etc` is refused wherever it lands.
A UTF-8 label name is reached by subscript, `{{ labels["k8s.pod.name"] }}`; attribute
access (`labels.service`) is for classic names.

Safe patterns run on RE2 (receiver/regex.py: linear time, Go's syntax), which has no
lookahead; so "never `..`" (path traversal) is a check of its own, made for every
pattern, next to the pattern match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from receiver.regex import LinearPattern, RegexError, compile_linear

DEFAULT_SAFE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,252}"
#: refused in any value whatever the pattern allows: `../` climbs out of a path
FORBIDDEN_PART = ".."
# How the default said "no `..`" before RE2, which has no lookahead.
_OLD_DEFAULT_LOOKAHEAD = r"(?!.*\.\.)"
_PATTERN_VAR = "__remediator_safe_pattern__"


class UnsafeValueError(ValueError):
    """A rendered value that must not reach an executor."""


class RenderError(ValueError):
    """A template that could not be rendered for this alert (e.g. a missing label)."""


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def check_safe(value: str, pattern: LinearPattern, what: str = "value") -> str:
    """Return value if the WHOLE of it matches (so a trailing newline fails) and it holds
    no `..`; raise UnsafeValueError saying which rule it broke."""
    if FORBIDDEN_PART in value:
        raise UnsafeValueError(
            f"{what} {_shown(value)} does not match the safe pattern {pattern.pattern!r}: "
            "it contains '..', which no pattern allows"
        )
    if not pattern.fullmatch(value):
        raise UnsafeValueError(
            f"{what} {_shown(value)} does not match the safe pattern {pattern.pattern!r}"
        )
    return value


@jinja2.pass_context
def _finalize_checked(context: jinja2.runtime.Context, value: Any) -> Any:
    pattern = context.get(_PATTERN_VAR)
    if pattern is not None:
        check_safe(str(value), pattern, "interpolated value")
    return value


_CHECKED_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, finalize=_finalize_checked
)


@dataclass(frozen=True)
class Template:
    """A compiled template; `checked` ones validate every interpolation."""

    source: str
    compiled: jinja2.Template
    checked: bool = True

    def render(self, context: Mapping[str, Any], pattern: LinearPattern) -> str:
        variables = dict(context)
        variables[_PATTERN_VAR] = pattern if self.checked else None
        try:
            return self.compiled.render(variables)
        except UnsafeValueError:
            raise
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {self.source!r}: {exc}") from exc
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise RenderError(f"template {self.source!r}: {exc}") from exc


def compile_template(source: str, *, checked: bool = True) -> Template:
    """Compile now so a broken template is a config error, not a 3 a.m. surprise."""
    try:
        return Template(source, _CHECKED_ENV.from_string(source), checked)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template does not compile: {exc.message} (line {exc.lineno})") from exc
    except RecursionError as exc:
        raise ValueError("template does not compile: nested too deeply") from exc


def compile_pattern(source: str) -> LinearPattern:
    """Compile a safe pattern (RE2 syntax); raise ValueError naming it if RE2 cannot."""
    try:
        return compile_linear(source)
    except RegexError as exc:
        hint = ""
        if source.startswith(_OLD_DEFAULT_LOOKAHEAD):  # copied from an older example
            hint = f"; '..' is refused in every value anyway: drop {_OLD_DEFAULT_LOOKAHEAD}"
        raise ValueError(f"invalid regex {source!r}: {exc}{hint}") from exc


DEFAULT_PATTERN = compile_pattern(DEFAULT_SAFE_PATTERN)
