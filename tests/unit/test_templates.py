"""Sandboxed templates: every interpolation of an untrusted label must be safe."""

from __future__ import annotations

import time
from dataclasses import replace

import jinja2
import pytest

from receiver.regex import LinearPattern
from receiver.templates import (
    DEFAULT_PATTERN,
    RenderError,
    UnsafeValueError,
    check_safe,
    compile_pattern,
    compile_template,
)

UNSAFE_VALUES = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "../etc",
    "x..y",
    "a\n",
    "a\nb",
    "a" * 300,
    "a" * 254,
    "",
    "-rf",
    "--help",
    ".hidden",
    "_x",
    "web server",
    "web&b=1",
    "a|b",
    "a>b",
    "web\x00",
    "wéb",
]

SAFE_VALUES = [
    "web",
    "web-1",
    "node_exporter",
    "10.0.0.1:9100",
    "api.prod.example.com",
    "user@host",
    "team/service",
    "9",
    "a" * 253,
]


def render(source: str, checked: bool = True, **labels: str) -> str:
    return compile_template(source, checked=checked).render({"labels": labels}, DEFAULT_PATTERN)


@pytest.mark.parametrize("value", SAFE_VALUES)
def test_safe_values_render(value: str) -> None:
    assert render("{{ labels.v }}", v=value) == value


@pytest.mark.parametrize("value", UNSAFE_VALUES)
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(UnsafeValueError, match="does not match the safe pattern"):
        render("{{ labels.v }}", v=value)


@pytest.mark.parametrize("value", UNSAFE_VALUES)
def test_check_safe_refuses_whole_value(value: str) -> None:
    with pytest.raises(UnsafeValueError):
        check_safe(value, DEFAULT_PATTERN, "target")


def test_check_safe_returns_value_and_names_what() -> None:
    assert check_safe("web-1", DEFAULT_PATTERN) == "web-1"
    with pytest.raises(UnsafeValueError, match=r"^target '\$\(id\)' does not match"):
        check_safe("$(id)", DEFAULT_PATTERN, "target")


def test_long_value_is_shortened_in_the_message() -> None:
    with pytest.raises(UnsafeValueError) as info:
        check_safe("x" * 300, DEFAULT_PATTERN)
    assert "x" * 77 + "..." in str(info.value)
    assert "x" * 78 not in str(info.value)


def test_literal_text_is_not_checked_only_interpolations() -> None:
    source = "http://svc.local/{{ labels.service }}/restart?a=1&b=2"
    assert render(source, service="web") == "http://svc.local/web/restart?a=1&b=2"


def test_unsafe_value_refused_even_inside_safe_literal_text() -> None:
    with pytest.raises(UnsafeValueError):
        render("http://svc.local/{{ labels.service }}/restart", service="web/../admin")


def test_each_interpolation_is_checked() -> None:
    assert render("{{ labels.a }}-{{ labels.b }}", a="x", b="y") == "x-y"
    with pytest.raises(UnsafeValueError):
        render("{{ labels.a }}-{{ labels.b }}", a="x", b="y z")


def test_filter_output_is_checked() -> None:
    assert render("{{ labels.a | upper }}", a="web") == "WEB"
    with pytest.raises(UnsafeValueError):
        render("{{ labels.a ~ ' ' ~ labels.b }}", a="x", b="y")


def test_loop_outputs_are_checked() -> None:
    with pytest.raises(UnsafeValueError):
        render("{% for c in labels.a %}{{ c }}{% endfor %}", a="ab;")


def test_custom_pattern() -> None:
    digits = compile_pattern(r"[0-9]+")
    template = compile_template("{{ labels.port }}")
    assert template.render({"labels": {"port": "9100"}}, digits) == "9100"
    with pytest.raises(UnsafeValueError):
        template.render({"labels": {"port": "web"}}, digits)


def test_unchecked_templates_allow_free_text() -> None:
    summary = "Disk /var is 95% full; run `du -sh ..`\n"
    assert render("Alert: {{ labels.s }}", checked=False, s=summary) == f"Alert: {summary}"


def test_unchecked_template_does_not_leak_into_checked_one() -> None:
    render("{{ labels.s }}", checked=False, s="a b")
    with pytest.raises(UnsafeValueError):
        render("{{ labels.s }}", s="a b")


def test_undefined_variable_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="has no attribute 'missing'"):
        render("{{ labels.missing }}", service="web")


def test_undefined_top_level_name_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="nothing"):
        render("{{ nothing }}")


def test_undefined_is_an_error_in_unchecked_templates_too() -> None:
    with pytest.raises(RenderError):
        render("{{ labels.missing }}", checked=False)


def test_undefined_in_a_condition_is_an_error() -> None:
    with pytest.raises(RenderError):
        render("{% if labels.missing %}x{% endif %}")


@pytest.mark.parametrize(
    "source", ["{{ labels.a ", "{% if %}", "{% for x in y %}", "{{ a | nosuch }}"]
)
def test_syntax_error_is_a_value_error_at_compile(source: str) -> None:
    with pytest.raises(ValueError, match="template does not compile") as info:
        compile_template(source)
    assert not isinstance(info.value, RenderError)


@pytest.mark.parametrize("checked", [True, False])
@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ labels.__class__ }}",
        "{{ labels.s.format.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_dunder_access(source: str, checked: bool) -> None:
    """The sandbox's SecurityError surfaces as a RenderError, never as output."""
    with pytest.raises(RenderError) as info:
        render(source, checked=checked, s="web")
    assert isinstance(info.value.__cause__, jinja2.TemplateError)


@pytest.mark.parametrize("checked", [True, False])
def test_sandbox_blocks_format_string_escape(checked: bool) -> None:
    """A label used as a format string must not reach attributes either."""
    with pytest.raises(RenderError, match="unsafe"):
        render("{{ labels.f.format(labels) }}", checked=checked, f="{0.__class__}")


def test_type_errors_are_render_errors() -> None:
    with pytest.raises(RenderError):
        render("{{ labels.a + 1 }}", checked=False, a="x")
    with pytest.raises(RenderError):
        render("{{ 1 // 0 }}", checked=False)


def test_non_string_outputs_are_checked_as_text() -> None:
    assert render("{{ 40 + 2 }}") == "42"
    with pytest.raises(UnsafeValueError):
        render("{{ -1 }}")


def test_template_keeps_its_source() -> None:
    template = compile_template("{{ labels.a }}", checked=False)
    assert template.source == "{{ labels.a }}"
    assert template.checked is False
    assert compile_template("x").checked is True


def test_compile_pattern() -> None:
    assert compile_pattern("[a-z]+").fullmatch("abc")
    with pytest.raises(ValueError, match=r"invalid regex '\('"):
        compile_pattern("(")


def test_default_pattern_boundaries() -> None:
    assert DEFAULT_PATTERN.fullmatch("a" * 253)
    assert not DEFAULT_PATTERN.fullmatch("a" * 254)
    assert isinstance(DEFAULT_PATTERN, LinearPattern)


@pytest.mark.parametrize("value", ["..", "a..b", "web/../etc", "a" * 100 + ".."])
def test_two_dots_are_refused_whatever_the_pattern_allows(value: str) -> None:
    permissive = compile_pattern(r".*")
    assert permissive.fullmatch(value)
    with pytest.raises(UnsafeValueError, match=r"contains '\.\.', which no pattern allows"):
        check_safe(value, permissive)


@pytest.mark.parametrize("value", ["web.1", "a.b.c", "10.0.0.1:8080", "ns/web-1"])
def test_single_dots_pass_the_default_pattern(value: str) -> None:
    assert check_safe(value, DEFAULT_PATTERN) == value


@pytest.mark.parametrize("source", [r"(?!.*\.\.)[a-z]+", r"(a)\1", r"(?<=a)b", r"a(?=b)"])
def test_patterns_re2_cannot_run_are_refused_naming_them(source: str) -> None:
    with pytest.raises(ValueError, match=r"invalid regex .*RE2 syntax"):
        compile_pattern(source)


def test_safe_pattern_check_is_linear_on_a_backtracking_pattern() -> None:
    pattern = compile_pattern("(a+)+b")
    started = time.monotonic()
    with pytest.raises(UnsafeValueError):
        check_safe("a" * 5000, pattern)
    assert time.monotonic() - started < 1.0  # the backtracking engine takes ages here


def test_a_lone_surrogate_is_refused_not_a_crash() -> None:
    with pytest.raises(UnsafeValueError):
        check_safe("web\ud800", DEFAULT_PATTERN)


def test_the_old_default_pattern_is_refused_with_how_to_fix_it() -> None:
    old_default = r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,252}"
    with pytest.raises(ValueError) as info:
        compile_pattern(old_default)
    assert str(info.value).endswith(r"'..' is refused in every value anyway: drop (?!.*\.\.)")
    assert compile_pattern(old_default.removeprefix(r"(?!.*\.\.)")) == DEFAULT_PATTERN


# ---------------------------------------------------------------- the fast path

FAST_SOURCES = [
    "{{ labels.instance }}",
    "/usr/local/bin/fix",
    "",
    "http://svc.local/{{ labels.service }}/restart?a=1&b=2",
    "{{labels.a}}-{{ labels.b }}",
    "{{- labels.a -}} x",
    '{{ labels["k8s.pod.name"] }}',
    "{{ target }}",
    "{{ alert.fingerprint }}/{{ annotations.runbook }}",
    "line one\r\nline two\n",
    "{% raw %}{{ labels.a }}{% endraw %}",
    "{{ labels }}",
    "{{ target }}{{ labels.a }}",
]
JINJA_ONLY_SOURCES = [
    "{{ labels.a | upper }}",
    "{{ labels.items }}",
    "{{ labels.__class__ }}",
    "{% if labels.a %}{{ labels.a }}{% endif %}",
    "{{ labels.a ~ labels.b }}",
]
CONTEXTS = [
    {"labels": {"instance": "web-1", "service": "web", "a": "x", "b": "y"}},
    {"labels": {"instance": "x; rm -rf /", "a": "x", "b": "../etc"}},
    {"labels": {"k8s.pod.name": "pod-1", "a": "a b"}},
    {"labels": {}, "annotations": {"runbook": "rb"}, "alert": {"fingerprint": "f0"}},
    {"labels": {"a": "x"}, "target": "web-1", "alert": {"fingerprint": 7}},
    {"labels": "not a dict", "target": ["web-1"]},
    {},
]


def _outcome(template: object, context: dict[str, object]) -> tuple[str, str]:
    try:
        return "rendered", template.render(context, DEFAULT_PATTERN)  # type: ignore[attr-defined]
    except (RenderError, UnsafeValueError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("source", FAST_SOURCES)
def test_literal_text_and_plain_references_render_without_jinja(source: str) -> None:
    assert compile_template(source).parts is not None


@pytest.mark.parametrize("source", JINJA_ONLY_SOURCES)
def test_anything_more_is_rendered_by_jinja(source: str) -> None:
    assert compile_template(source).parts is None


@pytest.mark.parametrize("checked", [True, False])
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("source", FAST_SOURCES)
def test_the_fast_path_gives_what_jinja_gives(
    source: str, context: dict[str, object], checked: bool
) -> None:
    """Same text, same refusal, same message: the fast path is only a shortcut."""
    fast = compile_template(source, checked=checked)
    jinja_only = replace(fast, parts=None)
    assert _outcome(fast, context) == _outcome(jinja_only, context)


def test_the_fast_path_checks_every_reference_in_order() -> None:
    template = compile_template("{{ labels.a }}/{{ labels.b }}")
    assert template.parts is not None
    with pytest.raises(UnsafeValueError, match="'a b'"):
        template.render({"labels": {"a": "a b", "b": "c d"}}, DEFAULT_PATTERN)


@pytest.mark.parametrize(
    ("source", "checked", "whole"),
    [
        ("{{ labels.instance }}", True, True),
        ('{{ labels["k8s.pod.name"] }}', True, True),
        ("{{ labels.instance }}", False, False),
        ("web-{{ labels.instance }}", True, False),
        ("{{ labels.a }}{{ labels.b }}", True, False),
        ("web", True, False),
        ("{{ labels.a | lower }}", True, False),
    ],
)
def test_a_lone_checked_reference_checks_its_whole_output(
    source: str, checked: bool, whole: bool
) -> None:
    template = compile_template(source, checked=checked)
    assert template.checks_whole is whole
    if whole:  # the one check a render makes is on everything it returns
        with pytest.raises(UnsafeValueError):
            template.render({"labels": {"instance": "a b", "k8s.pod.name": "a b"}}, DEFAULT_PATTERN)
