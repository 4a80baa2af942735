"""Alertmanager matcher syntax and first-match-wins routing."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.config import ConfigError, parse_config
from receiver.matchers import (
    Matcher,
    MatcherError,
    parse_label_args,
    parse_matcher,
    parse_matchers,
    route,
)


@dataclass(frozen=True)
class Route:
    """The smallest thing `route()` accepts: a name, matchers and the continue flag."""

    name: str
    matchers: tuple[Matcher, ...]
    continue_matching: bool = False


def strategy(name: str, *matchers: str, cont: bool = False) -> Route:
    return Route(name, parse_matchers(matchers), cont)


def matches(text: str, **labels: str) -> bool:
    return parse_matcher(text).matches(labels)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('alertname="ServiceDown"', "alertname", "=", "ServiceDown"),
        ('severity!="info"', "severity", "!=", "info"),
        ('severity=~"critical|page"', "severity", "=~", "critical|page"),
        ('job!~"node.*"', "job", "!~", "node.*"),
        ("alertname=ServiceDown", "alertname", "=", "ServiceDown"),
        ("job=~node.*", "job", "=~", "node.*"),
        ("env=", "env", "=", ""),
        ('env=""', "env", "=", ""),
        ('  service  =~  "web"  ', "service", "=~", "web"),
        ('_private_1="x"', "_private_1", "=", "x"),
        ('msg="a b  c"', "msg", "=", "a b  c"),
    ],
)
def test_parse_matcher_fields(text: str, name: str, op: str, value: str) -> None:
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'msg="say \"hi\""', 'say "hi"'),
        (r'path="C:\\temp"', "C:\\temp"),
        (r'msg="line1\nline2"', "line1\nline2"),
        (r'msg="\\n"', "\\n"),
    ],
)
def test_quoted_values_unescape(text: str, value: str) -> None:
    assert parse_matcher(text).value == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alertname", "bad matcher"),
        ("", "bad matcher"),
        ('alertname=="x"', "bad matcher"),
        ('alertname~="x"', "bad matcher"),
        ('alertname="x', "bad matcher"),
        ('alertname="x"y', "bad matcher"),
        ("alertname=a b", "bad matcher"),
        ('a="x" b="y"', "bad matcher"),
        ('1abc="x"', "invalid label name '1abc'"),
        ('a.b="x"', "invalid label name 'a.b'"),
        ('a-b="x"', "invalid label name 'a-b'"),
        ('job=~"("', "invalid regex"),
        ('job!~"[a-"', "invalid regex"),
        ('job=~"*"', "invalid regex"),
        (r'msg="\t"', r"invalid escape sequence \t"),
        (r'job=~"\d+"', r"invalid escape sequence \d"),
    ],
)
def test_bad_matchers_raise(text: str, reason: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matcher(text)
    assert reason in str(info.value)


@pytest.mark.parametrize("value", [None, 3, ["a=b"]])
def test_non_string_matcher_raises(value: object) -> None:
    with pytest.raises(MatcherError, match="matcher must be a string"):
        parse_matcher(value)  # type: ignore[arg-type]


def test_matcher_error_is_a_value_error() -> None:
    """Config code catches ValueError; MatcherError must be one."""
    assert issubclass(MatcherError, ValueError)


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="Down"', {"alertname": "Down"}, True),
        ('alertname="Down"', {"alertname": "down"}, False),
        ('alertname="Down"', {"alertname": "Down "}, False),
        ('severity!="info"', {"severity": "critical"}, True),
        ('severity!="info"', {"severity": "info"}, False),
        ('service=~"web"', {"service": "web"}, True),
        ('service=~"web"', {"service": "webserver"}, False),
        ('service=~"web"', {"service": "myweb"}, False),
        ('service=~"web.*"', {"service": "webserver"}, True),
        ('service=~"web.*"', {"service": "myweb"}, False),
        ('severity=~"critical|page"', {"severity": "page"}, True),
        ('severity=~"critical|page"', {"severity": "pager"}, False),
        ('severity=~"critical|page"', {"severity": "xcritical"}, False),
        ('job!~"node.*"', {"job": "node_exporter"}, False),
        ('job!~"node.*"', {"job": "api"}, True),
        ('job!~"node"', {"job": "nodes"}, True),
    ],
)
def test_operators_and_anchoring(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_regex_alternation_is_anchored_as_a_whole() -> None:
    """`a|b` must be wrapped before anchoring, else `^a|b$` would match 'ax'."""
    assert not matches('x=~"a|b"', x="ax")
    assert not matches('x=~"a|b"', x="xb")
    assert matches('x=~"a|b"', x="b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('env=""', True),
        ("env=", True),
        ('env!=""', False),
        ('env="prod"', False),
        ('env!="prod"', True),
        ('env=~".*"', True),
        ('env=~".+"', False),
        ('env!~".+"', True),
        ('env!~""', False),
    ],
)
def test_missing_label_matches_as_empty_string(text: str, expected: bool) -> None:
    assert parse_matcher(text).matches({"alertname": "Down"}) is expected


def test_matching_a_newline_value() -> None:
    matcher = parse_matcher(r'msg="a\nb"')
    assert matcher.matches({"msg": "a\nb"})
    assert not matcher.matches({"msg": "a\\nb"})


def test_str_renders_alertmanager_syntax() -> None:
    matcher = Matcher("msg", "=", 'say "hi"\\\n')
    assert str(matcher) == r'msg="say \"hi\"\\\n"'


@given(st.text(max_size=40), st.sampled_from(["=", "!="]))
def test_str_round_trips_any_value(value: str, op: str) -> None:
    parsed = parse_matcher(str(Matcher("label", op, value)))
    assert (parsed.name, parsed.op, parsed.value) == ("label", op, value)
    assert parsed.matches({"label": value}) is (op == "=")


# ---------------------------------------------------------------- routing

ROUTES = (
    strategy("restart", 'alertname="ServiceDown"'),
    strategy("page", 'alertname=~"Service.*"', 'severity="critical"'),
    strategy("catch-all", 'alertname=~".+"'),
)


def names(chosen: list[Route]) -> list[str]:
    return [s.name for s in chosen]


def test_route_first_match_wins() -> None:
    labels = {"alertname": "ServiceDown", "severity": "critical"}
    assert names(route(ROUTES, labels)) == ["restart"]


def test_route_skips_non_matching_strategies() -> None:
    labels = {"alertname": "ServiceSlow", "severity": "critical"}
    assert names(route(ROUTES, labels)) == ["page"]
    assert names(route(ROUTES, {"alertname": "DiskFull"})) == ["catch-all"]


def test_route_every_matcher_must_match() -> None:
    labels = {"alertname": "ServiceSlow", "severity": "warning"}
    assert names(route(ROUTES, labels)) == ["catch-all"]


def test_route_continue_collects_later_matches() -> None:
    routes = (
        strategy("first", 'alertname="ServiceDown"', cont=True),
        strategy("unrelated", 'alertname="DiskFull"'),
        strategy("second", 'severity="critical"', cont=True),
        strategy("third", 'alertname=~"Service.*"'),
        strategy("never", 'alertname=~".+"'),
    )
    labels = {"alertname": "ServiceDown", "severity": "critical"}
    assert names(route(routes, labels)) == ["first", "second", "third"]


def test_route_continue_on_a_non_matching_strategy_has_no_effect() -> None:
    routes = (
        strategy("other", 'alertname="DiskFull"', cont=True),
        strategy("mine", 'alertname="ServiceDown"'),
        strategy("later", 'alertname=~".+"'),
    )
    assert names(route(routes, {"alertname": "ServiceDown"})) == ["mine"]


def test_route_no_match_returns_empty_list() -> None:
    assert route(ROUTES, {"severity": "critical"}) == []
    assert route((), {"alertname": "ServiceDown"}) == []


def test_route_strategy_without_matchers_matches_everything() -> None:
    routes = (strategy("everything"),)
    assert names(route(routes, {})) == ["everything"]


# ---------------------------------------------------------------- CLI label args


def test_parse_label_args() -> None:
    labels = parse_label_args(["alertname=ServiceDown", "query=a=b", "empty="])
    assert labels == {"alertname": "ServiceDown", "query": "a=b", "empty": ""}


@pytest.mark.parametrize("name", ["1abc", "a-b", "a b", "k8s.pod.name"])
def test_parse_label_args_take_utf8_names(name: str) -> None:
    """Any non-empty UTF-8 string is a label name (Prometheus 3, Alertmanager 0.27+)."""
    assert parse_label_args([f"{name}=x"]) == {name: "x"}


def test_parse_label_args_later_value_wins() -> None:
    assert parse_label_args(["a=1", "a=2"]) == {"a": "2"}


@pytest.mark.parametrize("arg", ["alertname", "=value"])
def test_parse_label_args_refuses_bad_arguments(arg: str) -> None:
    with pytest.raises(MatcherError, match="expected LABEL=VALUE"):
        parse_label_args([arg])


# ---------------------------------------------------------------- RE2: linear time


@pytest.mark.parametrize("length", [50, 5000])
def test_nested_quantifier_matcher_answers_in_bounded_time(length: int) -> None:
    """The issue's case: `(a+)+b` against a run of `a`s backtracks exponentially in
    Python's engine; RE2 is linear, so even 5,000 of them take well under a second."""
    matcher = parse_matcher('service=~"(a+)+b"')
    started = time.monotonic()
    assert matcher.matches({"service": "a" * length}) is False
    assert matcher.matches({"service": "a" * length + "b"}) is True
    assert parse_matcher('service!~"(a+)+b"').matches({"service": "a" * length}) is True
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("regex", "reason"),
    [
        (r"(a)\\1", r"invalid escape sequence: \1"),
        ("(?!x)a", "invalid perl operator: (?!"),
        ("a(?=b)", "invalid perl operator: (?="),
        ("(?<=a)b", "invalid perl operator: (?<"),
        ("x{1001}", "invalid repetition size: {1001}"),
    ],
)
def test_patterns_re2_cannot_run_are_config_errors_with_their_path(regex: str, reason: str) -> None:
    text = (
        "executors: {sink: {type: log}}\n"
        "strategies:\n"
        "  - name: fix\n"
        f"    matchers: ['service=~\"{regex}\"']\n"
        "    action: restart\n"
        "    executor: sink\n"
        "    target: x\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yml")
    [problem] = info.value.problems
    assert (problem.path, problem.line) == ("strategies[0].matchers", 4)
    assert problem.message.startswith("invalid regex ")
    assert reason in problem.message
    assert "RE2 syntax" in problem.message


def test_a_lone_surrogate_in_a_label_does_not_crash_matching() -> None:
    assert matches('service=~"[a-z]+"', service="web\ud800") is False
    assert matches('service!~"[a-z]+"', service="web\ud800") is True
