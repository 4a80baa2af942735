"""UTF-8 label names (issue 12, item 2), wherever a label name is handled.

Prometheus 3 and Alertmanager 0.27+ take any non-empty valid UTF-8 string as a label
name (OpenTelemetry's `k8s.pod.name`, `service.name`). Matchers follow Alertmanager's
UTF-8 matcher parser: a name other than a classic one is double-quoted, with the escapes
of a quoted value. Expected values are computed from those rules in each test.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from receiver.alerts import Alert, PayloadError, parse_notification
from receiver.config import parse_config
from receiver.executors.alertmanager import classic_labels, classic_name, escalation_alert
from receiver.executors.base import ActionRequest
from receiver.executors.command import alert_environment
from receiver.matchers import (
    Matcher,
    MatcherError,
    format_name,
    is_label_name,
    parse_label_args,
    parse_matcher,
)
from receiver.templates import DEFAULT_PATTERN, RenderError, compile_template

POD = "k8s.pod.name"

# ---------------------------------------------------------------- the name rule


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("service", True),
        (POD, True),
        ("service.name", True),
        ("1abc", True),
        ("a-b", True),
        ("サービス", True),
        ("with space", True),
        ("nul\x00inside", True),  # Go's utf8.ValidString takes NUL, as Prometheus 3 does
        ("", False),
        ("lone\ud800surrogate", False),
    ],
)
def test_a_label_name_is_any_non_empty_valid_utf8_string(name: str, valid: bool) -> None:
    assert is_label_name(name) is valid


# ---------------------------------------------------------------- matcher grammar


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('"k8s.pod.name"="cart-7d9f"', POD, "=", "cart-7d9f"),
        ('"k8s.pod.name"=~"cart-.*"', POD, "=~", "cart-.*"),
        ('"k8s.pod.name"!="cart-7d9f"', POD, "!=", "cart-7d9f"),
        ('"k8s.pod.name"!~"cart-.*"', POD, "!~", "cart-.*"),
        ('  "k8s.pod.name"  =  cart-7d9f  ', POD, "=", "cart-7d9f"),
        ('"service"="web"', "service", "=", "web"),
        ('service="web"', "service", "=", "web"),
        ("service=web", "service", "=", "web"),
        ('"サービス"="web"', "サービス", "=", "web"),
        (r'"say \"hi\""="x"', 'say "hi"', "=", "x"),
        (r'"back\\slash"="x"', "back\\slash", "=", "x"),
        (r'"two\nlines"="x"', "two\nlines", "=", "x"),
        ('"a=b"="c"', "a=b", "=", "c"),
        ('"{a,b}"="c"', "{a,b}", "=", "c"),
        ('"1abc"="x"', "1abc", "=", "x"),
    ],
)
def test_quoted_names_parse(text: str, name: str, op: str, value: str) -> None:
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('k8s.pod.name="cart-7d9f"', 'must be double-quoted, e.g. "k8s.pod.name"="value"'),
        ('1abc="x"', "must be double-quoted"),
        ('""="x"', "invalid label name ''"),
        (r'"tab\t"="x"', r"invalid escape sequence \t"),
        (r'"unicode\u00e9"="x"', r"invalid escape sequence \u"),
        ('"k8s.pod.name="x"', "bad matcher"),
        ('"k8s.pod.name"x="y"', "bad matcher"),
        ("'k8s.pod.name'=\"x\"", "one matcher per list item"),
        ('{service="web"}', "one matcher per list item"),
        ('service="web",job="x"', "bad matcher"),
        ('"k8s.pod.name"=~"("', "invalid regex"),
    ],
)
def test_bad_names_in_matchers_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matcher(text)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "name", ["service", POD, 'say "hi"', "back\\slash", "two\nlines", "サービス", "a=b"]
)
@pytest.mark.parametrize("op", ["=", "!=", "=~", "!~"])
def test_a_matcher_written_out_parses_back_to_itself(name: str, op: str) -> None:
    matcher = parse_matcher(str(Matcher(name, op, "x")))
    assert (matcher.name, matcher.op, matcher.value) == (name, op, "x")


def test_classic_names_are_written_bare_and_others_quoted() -> None:
    assert (format_name("service"), format_name(POD)) == ("service", f'"{POD}"')


def test_a_quoted_name_matches_the_label_of_that_name() -> None:
    matcher = parse_matcher('"k8s.pod.name"=~"cart-.*"')
    assert matcher.matches({POD: "cart-7d9f"})
    assert not matcher.matches({"k8s_pod_name": "cart-7d9f"})


def test_strategies_route_on_utf8_names() -> None:
    config = parse_config(
        "executors: {log: {type: log}}\n"
        "strategies:\n"
        "  - name: pods\n"
        '    matchers: [\'"k8s.pod.name"=~"cart-.*"\']\n'
        "    action: restart\n"
        "    executor: log\n"
        "    target: '{{ labels[\"k8s.pod.name\"] }}'\n"
    )
    assert config.strategies[0].matchers[0].name == POD


# ---------------------------------------------------------------- payload


def test_a_payload_with_a_utf8_label_name_is_accepted() -> None:
    labels = {"alertname": "ServiceDown", "service": "cart", POD: "cart-7d9f"}
    body = {"alerts": [{"status": "firing", "labels": labels, "startsAt": "2026-01-01T00:00:00Z"}]}
    assert parse_notification(body).alerts[0].labels == labels


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "invalid label name: empty"), ("bad\ud800", "not valid UTF-8: lone surrogate")],
)
def test_an_empty_or_invalid_utf8_label_name_is_a_field_named_error(
    name: str, message: str
) -> None:
    labels = {"alertname": "ServiceDown", name: "x"}
    body = {"alerts": [{"status": "firing", "labels": labels, "startsAt": "2026-01-01T00:00:00Z"}]}
    with pytest.raises(PayloadError) as info:
        parse_notification(body)
    assert info.value.field.startswith("alerts[0].labels.")
    assert message in info.value.message


# ---------------------------------------------------------------- templates


def alert(labels: dict[str, str]) -> Alert:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return Alert("firing", labels, {}, moment, None, "abc")


def test_templates_reach_a_utf8_name_by_subscript() -> None:
    template = compile_template('{{ labels["k8s.pod.name"] }}')
    context = alert({"alertname": "ServiceDown", POD: "cart-7d9f"}).template_context()
    assert template.render(context, DEFAULT_PATTERN) == "cart-7d9f"


def test_a_missing_utf8_label_is_a_render_error() -> None:
    template = compile_template('{{ labels["k8s.pod.name"] }}')
    with pytest.raises(RenderError, match=re.escape(POD)):
        template.render(alert({"alertname": "X"}).template_context(), DEFAULT_PATTERN)


# ---------------------------------------------------------------- explain, config


def test_label_arguments_take_utf8_names() -> None:
    assert parse_label_args([f"{POD}=cart-7d9f", "service=cart"]) == {
        POD: "cart-7d9f",
        "service": "cart",
    }


@pytest.mark.parametrize("arg", ["=x", "novalue"])
def test_label_arguments_without_a_name_are_refused(arg: str) -> None:
    with pytest.raises(MatcherError, match="expected LABEL=VALUE"):
        parse_label_args([arg])


def test_service_label_may_be_a_utf8_name() -> None:
    config = parse_config("defaults: {service_label: [service.name, service]}\n")
    assert config.defaults.service_labels == ("service.name", "service")
    assert config.service_of({"service.name": "cart", "service": "other"}) == "cart"


def test_an_empty_service_label_is_refused() -> None:
    from receiver.config import ConfigError

    with pytest.raises(ConfigError, match="invalid label name ''"):
        parse_config("defaults: {service_label: ''}\n")


# ---------------------------------------------------------------- environment names


def environment(labels: dict[str, str]) -> dict[str, str]:
    request = ActionRequest(
        action_id=1,
        action="run",
        target="t",
        rendered={},
        labels=labels,
        annotations={},
        timeout=30.0,
        strategy="s",
    )
    return alert_environment(request)


def test_a_utf8_name_becomes_an_env_variable_with_underscores() -> None:
    assert environment({POD: "cart-7d9f"})["ALERT_LABEL_K8S_POD_NAME"] == "cart-7d9f"


@pytest.mark.parametrize("mapped", [POD, "k8s~pod~name", "k8s/pod/name"])
@pytest.mark.parametrize("first", [True, False])
def test_the_unmapped_name_wins_a_collision_whatever_the_order(mapped: str, first: bool) -> None:
    """`~` sorts after `_` and `/` before it: code-point order alone would not decide."""
    values = {mapped: "from-mapped", "k8s_pod_name": "from-underscored"}
    order = [mapped, "k8s_pod_name"] if first else ["k8s_pod_name", mapped]
    env = environment({name: values[name] for name in order})
    assert env["ALERT_LABEL_K8S_POD_NAME"] == "from-underscored"


@pytest.mark.parametrize("order", [["k8s.pod.name", "k8s-pod-name"], ["k8s-pod-name", POD]])
def test_between_mapped_names_the_lowest_code_point_wins(order: list[str]) -> None:
    env = environment({name: name for name in order})
    assert env["ALERT_LABEL_K8S_POD_NAME"] == min(order)


# ---------------------------------------------------------------- escalations


def test_classic_names_map_utf8_names_as_prometheus_translates_them() -> None:
    assert [classic_name(n) for n in (POD, "1abc", "サ")] == ["k8s_pod_name", "_1abc", "_"]


def test_classic_labels_keep_a_taken_name_and_drop_the_utf8_one() -> None:
    labels = {POD: "dotted", "k8s_pod_name": "classic", "service.name": "cart"}
    kept, notes = classic_labels(labels)
    assert kept == {"k8s_pod_name": "classic", "service_name": "cart"}
    assert notes == [
        "'k8s.pod.name' dropped ('k8s_pod_name' taken)",
        "'service.name' -> 'service_name'",
    ]


def test_an_escalation_carries_the_utf8_labels_as_they_are() -> None:
    labels = {"alertname": "ServiceDown", POD: "cart-7d9f", "remediation": "x"}
    sent = escalation_alert(labels, {}, "failed", "s", "t")
    assert sent["labels"][POD] == "cart-7d9f"
    assert "remediation" not in sent["labels"]


def test_a_precondition_matcher_on_a_utf8_name_renders_and_parses_back() -> None:
    """`alert_not_firing` values are templates; the rendered matcher is written out and
    parsed again by the dispatcher, so a quoted name must survive the round trip."""
    from receiver.plans import plan_for

    config = parse_config(
        "executors: {log: {type: log}}\n"
        "strategies:\n"
        "  - name: pods\n"
        "    matchers: ['alertname=\"PodDown\"']\n"
        "    action: restart\n"
        "    executor: log\n"
        "    target: web\n"
        "    preconditions:\n"
        "      - alert_not_firing: ['\"k8s.pod.name\"=\"{{ labels[''k8s.pod.name''] }}\"']\n"
    )
    plans = plan_for(config, alert({"alertname": "PodDown", POD: "cart-7d9f"}))
    assert plans[0].refused is None, plans[0].refused
    [written] = plans[0].params["precondition_alerts"][0]
    parsed = parse_matcher(written)
    assert (parsed.name, parsed.op, parsed.value) == (POD, "=", "cart-7d9f")
