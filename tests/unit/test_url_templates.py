"""Issue 11, item 10: a value rendered into a request URL's scheme, host or port part
may not change it (receiver/url_templates.py), whatever safe pattern is configured."""

from __future__ import annotations

import re

import pytest

from receiver.config import ConfigError, parse_config
from receiver.templates import DEFAULT_PATTERN, UnsafeValueError
from receiver.url_templates import DNS_LABEL, check_authority, compile_url_template

IN_CLUSTER = "http://{{ labels.service }}.svc.cluster.local/restart/{{ labels.service }}"
ANYTHING = re.compile(r".*", re.DOTALL)  # an operator's lax safe_pattern: the rule still holds
PATTERNS = pytest.mark.parametrize(
    "pattern", [DEFAULT_PATTERN, ANYTHING], ids=["default pattern", "lax pattern"]
)


def render(source: str, pattern: re.Pattern[str], **labels: str) -> str:
    return compile_url_template(source).render({"labels": labels}, pattern)


@PATTERNS
@pytest.mark.parametrize(
    "service",
    [
        "127.0.0.1:18081/steal",  # the value: another host and port
        "evil@attacker",  # userinfo
        "cart:18081",  # a port
        "attacker.example",  # another domain: two labels
        "cart%2Fsteal",  # an encoded slash
        "..",
        "[::1]",  # IPv6 brackets
        "",  # an empty label
        "-cart",  # a label may not start with '-'
        "cart-",
        "a" * 64,  # a label is at most 63 characters
        "cart/steal",
        "cart?x=",
        "cart#",
        "cart\\steal",
    ],
)
def test_a_host_interpolation_that_is_not_one_dns_label_is_refused(service, pattern):
    with pytest.raises(UnsafeValueError):
        render(IN_CLUSTER, pattern, service=service)


@PATTERNS
@pytest.mark.parametrize("service", ["cart", "Cart-2", "a" * 63, "0"])
def test_one_dns_label_is_allowed(service, pattern):
    assert render(IN_CLUSTER, pattern, service=service) == (
        f"http://{service}.svc.cluster.local/restart/{service}"
    )


def test_the_refusal_says_which_value_and_why():
    with pytest.raises(UnsafeValueError) as info:
        render(IN_CLUSTER, ANYTHING, service="127.0.0.1:18081/steal")
    assert str(info.value).startswith(
        f"value '127.0.0.1:18081/steal' in the host of request URL {IN_CLUSTER!r} is not a "
        "single DNS label"
    )


@PATTERNS
@pytest.mark.parametrize(
    ("port", "allowed"),
    [("8080", True), ("80x", False), ("80/x", False), ("", False), ("99999", False)],
)
def test_a_port_interpolation_must_be_digits_of_a_port(port, allowed, pattern):
    source = "https://api.internal:{{ labels.port }}/hook"
    if allowed:
        assert render(source, pattern, port=port) == f"https://api.internal:{port}/hook"
    else:
        with pytest.raises(UnsafeValueError):
            render(source, pattern, port=port)


@PATTERNS
def test_values_after_the_authority_are_left_to_the_safe_pattern(pattern):
    source = "http://hooks.local/{{ labels.path }}?by={{ labels.who }}"
    url = render(source, pattern, path="a/b:c", who="x@y")
    assert url == "http://hooks.local/a/b:c?by=x@y"


@pytest.mark.parametrize(
    ("url", "scheme", "authority", "allowed"),
    [
        ("http://cart.svc/x", "http", "cart.svc", True),
        ("https://cart.svc/x", "http", "cart.svc", False),
        ("http://evil@cart.svc/x", "http", "cart.svc", False),
        ("http://cart.svc:81/x", "http", "cart.svc", False),
        ("http://cart.svc:99999/x", "http", "cart.svc:99999", False),
        ("http://other/x", "http", "cart.svc", False),
    ],
)
def test_check_authority_compares_scheme_and_whole_authority(url, scheme, authority, allowed):
    if allowed:
        check_authority(url, scheme, authority)
    else:
        with pytest.raises(UnsafeValueError):
            check_authority(url, scheme, authority)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ labels.scheme }}://cart/x", "scheme and '://' of a request URL must be written out"),
        ("http{{ labels.s }}://cart/x", "scheme and '://' of a request URL must be written out"),
        ("{{ labels.url }}", "scheme and '://' of a request URL must be written out"),
        ("http:{{ labels.slashes }}cart/x", "scheme and '://' of a request URL must be written"),
        ("ftp://cart/x", "scheme must be http or https, got 'ftp'"),
        ("http://{% if x %}a{% endif %}.svc/", "no {% ... %} blocks or comments"),
        ("http://{{ labels.user }}@cart/x", "may not interpolate into its userinfo"),
        ("http://[{{ labels.ip }}]/x", "may not interpolate into an IPv6 address"),
        ("http:///x", "no host after '://'"),
    ],
)
def test_url_template_shapes_that_are_refused_at_load(source, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_url_template(source)


def test_an_interpolated_scheme_is_a_config_error_at_its_line():
    text = """executors:
  hook: {type: http}
strategies:
  - name: call
    matchers: ['alertname="A"']
    action: http
    executor: hook
    target: x
    request: {url: '{{ labels.scheme }}://cart.svc/restart'}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value).startswith(
        "strategies[0].request.url (line 9): the scheme and '://' of a request URL must be "
        "written out, not templated"
    )


def test_dns_label_is_rfc_1123():
    assert DNS_LABEL.fullmatch("a-1")
    assert not DNS_LABEL.fullmatch("a_1")
