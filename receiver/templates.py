"""Sandboxed Jinja2 templates that turn untrusted alert labels into strategy parameters.

Labels come from whoever can reach Alertmanager, so every value a template interpolates
into a command argument, URL or resource name must match a safe pattern. The check runs
on each `{{ ... }}` output (via Jinja's finalize hook), which lets operators write
`http://svc/{{ labels.service }}/restart?force=1` without the literal parts tripping it,
while a label value like `x; rm -rf /` or `../etc` is refused wherever it lands.
A UTF-8 label name is reached by subscript, `{{ labels["k8s.pod.name"] }}`; attribute
access (`labels.service`) is for classic names.

Most templates are literal text and plain references (`{{ labels.instance }}`,
`{{ labels["k8s.pod.name"] }}`, `{{ target }}`). Those are also kept as `parts` and
rendered without Jinja (a Jinja render costs a new context per call: 40 us, most of
an alert's rendering), with the same safe-pattern check on each reference, in the same
order; whatever the fast path cannot resolve exactly as Jinja would (a missing label,
a non-string value, a name that is also a dict method) is rendered by Jinja, so the
result and every error stay Jinja's own.

Safe patterns run on RE2 (receiver/regex.py: linear time, Go's syntax), which has no
lookahead; so "never `..`" (path traversal) is a check of its own, made for every
pattern, next to the pattern match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
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


#: one piece of a template's fast path: literal text, or a reference as the path of
#: keys from a context variable (`labels.instance` is ("labels", "instance"))
Part = str | tuple[str, ...]


@dataclass(frozen=True)
class Template:
    """A compiled template; `checked` ones validate every interpolation. `parts`: the
    template as literal text and plain references when it is no more than that (see
    the module docstring), else None."""

    source: str
    compiled: jinja2.Template
    checked: bool = True
    parts: tuple[Part, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def checks_whole(self) -> bool:
        """A checked template that is one `{{ reference }}` and nothing else: rendering
        it has held its whole output to the safe pattern already."""
        parts = self.parts
        return self.checked and parts is not None and len(parts) == 1 and type(parts[0]) is tuple

    def render(self, context: Mapping[str, Any], pattern: LinearPattern) -> str:
        """The template rendered for `context` (labels, annotations, alert, ...).
        Raises UnsafeValueError for an interpolated value `pattern` refuses (checked
        templates), RenderError when it cannot be rendered (e.g. a missing label)."""
        parts = self.parts
        if parts is not None:
            if len(parts) == 1 and type(parts[0]) is str:  # literal text: nothing to render
                return parts[0]
            text = _render_parts(parts, context, pattern if self.checked else None)
            if text is not None:
                return text
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


def _render_parts(
    parts: tuple[Part, ...], context: Mapping[str, Any], pattern: LinearPattern | None
) -> str | None:
    """The parts joined with each reference resolved and checked (in order, as Jinja's
    finalize checks them), or None when one does not resolve to a string (Jinja's to
    render, or to refuse). Raises UnsafeValueError as the checked render does."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _resolve(part, context)
        if value is None:
            return None
        if pattern is not None:
            check_safe(value, pattern, "interpolated value")
        out.append(value)
    return "".join(out)


def _resolve(path: tuple[str, ...], context: Mapping[str, Any]) -> str | None:
    """The string at `path` where every step is a key of a plain dict (what the
    sandbox's getattr and getitem return for those), else None."""
    value = context.get(path[0])
    for key in path[1:]:
        if type(value) is not dict or key not in value:
            return None
        value = value[key]
    return value if type(value) is str else None


def _parts_of(source: str) -> tuple[Part, ...] | None:
    """The template as literal text and references, read from Jinja's own parse, or
    None when it holds anything else (filters, tests, blocks, calls, ...)."""
    body = _CHECKED_ENV.parse(source).body
    if not body:
        return ()
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts: list[Part] = []
    for node in body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)  # literal text: never finalized, never checked
            continue
        path = _path_of(node)
        if path is None:
            return None
        parts.append(path)
    return tuple(parts)


def _path_of(node: nodes.Node) -> tuple[str, ...] | None:
    """`labels.x`, `labels["x"]`, `target` as a path of keys; None for anything else.
    An attribute that dicts have (`labels.items`) is Jinja's to resolve."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr) and not hasattr(dict, node.attr):
        head = _path_of(node.node)
        return None if head is None else (*head, node.attr)
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and type(node.arg.value) is str
    ):
        head = _path_of(node.node)
        return None if head is None else (*head, node.arg.value)
    return None


def _fast_path(source: str, compiled: jinja2.Template) -> tuple[Part, ...] | None:
    """The template's parts when rendering them gives what Jinja gives: checked here
    once, on sample values, so that a case the parse misreads falls back to Jinja."""
    parts = _parts_of(source)
    if parts is None:
        return None
    sample: dict[str, Any] = {}
    for index, path in enumerate(p for p in parts if isinstance(p, tuple)):
        level = sample
        for key in path[:-1]:
            level = level.setdefault(key, {})
            if type(level) is not dict:
                return None  # a path both a value and a prefix: cannot be sampled
        if path[-1] in level:
            continue
        level[path[-1]] = f"sample-{index}"
    try:
        expected = compiled.render({**sample, _PATTERN_VAR: None})
    except Exception:  # any doubt: Jinja renders it every time
        return None
    return parts if _render_parts(parts, sample, None) == expected else None


def compile_template(source: str, *, checked: bool = True) -> Template:
    """Compile now so a broken template is a config error, not a 3 a.m. surprise.
    Raises ValueError saying why it does not compile."""
    try:
        compiled = _CHECKED_ENV.from_string(source)
        return Template(source, compiled, checked, _fast_path(source, compiled))
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
