"""Issue 13: `check` lists every problem in one pass, one message per fault, and warns
about what a valid config does not do (no strategies, no auth, a capped timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, Problem, config_warnings, parse_config
from receiver.config import is_loopback as listens_on_loopback_only
from receiver.executors import LogExecutor
from receiver.executors.base import ExecutorError

EXECUTORS = """\
executors:
  note: {type: log}
  sh: {type: command}
strategies:
"""


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return [(p.path, p.line, p.message) for p in caught.value.problems]


def warnings(text: str, base_dir: Path | None = None) -> list[tuple[str, str]]:
    return [(w.path, w.message) for w in config_warnings(parse_config(text, base_dir=base_dir))]


# ---------------------------------------------------------------- every problem, once


def test_a_duplicate_name_is_reported_even_when_that_strategy_has_another_error() -> None:
    text = EXECUTORS + (
        "  - {name: a, matchers: [], action: restart, executor: note, target: t}\n"
        "  - {name: a, matchers: [], action: restart, executor: note, target: t, cooldown: 5}\n"
    )
    [cooldown, duplicate] = problems(text)
    assert cooldown[:2] == ("strategies[1].cooldown", 6)
    assert duplicate == ("strategies[1].name", 6, "duplicate name 'a'")


def test_a_duplicate_of_an_invalid_strategy_is_reported_too() -> None:
    text = EXECUTORS + (
        "  - {name: a, matchers: [], action: restart, executor: nowhere, target: t}\n"
        "  - {name: a, matchers: [], action: restart, executor: note, target: t}\n"
    )
    assert problems(text) == [
        ("strategies[0].executor", 5, "no executor named 'nowhere' (known: note, sh)"),
        ("strategies[1].name", 6, "duplicate name 'a'"),
    ]


def test_scale_on_a_command_executor_says_so_once_and_asks_for_no_command() -> None:
    text = EXECUTORS + "  - {name: s, matchers: [], action: scale, executor: sh, target: t}\n"
    assert problems(text) == [
        (
            "strategies[0].action",
            5,
            "a command executor cannot scale; it supports restart, rollback, run",
        ),
        ("strategies[0].scale", 5, "required for action 'scale'"),
    ]


def test_an_unknown_executor_asks_for_nothing_the_executor_would_need() -> None:
    text = EXECUTORS + "  - {name: r, matchers: [], action: run, executor: nowhere, target: t}\n"
    assert problems(text) == [
        ("strategies[0].executor", 5, "no executor named 'nowhere' (known: note, sh)"),
    ]


def test_prometheus_is_asked_for_by_a_strategy_with_other_problems() -> None:
    text = EXECUTORS + (
        "  - name: v\n"
        "    matchers: []\n"
        "    action: run\n"
        "    executor: sh\n"
        "    target: t\n"
        "    verify: {query: up == 1}\n"
    )
    assert problems(text) == [
        ("strategies[0].command", 5, "required for action 'run' on a command executor"),
        ("prometheus.url", 5, "required by strategies that query Prometheus: v"),
    ]


STRATEGY = """\
executors:
  web: {type: http}
  note: {type: log, current_replicas: 2}
strategies:
  - name: s
    matchers: []
    executor: %s
    target: t
"""


@pytest.mark.parametrize(
    ("executor", "tail", "expected"),
    [
        (
            "web",
            "    action: http\n    request: {method: FETCH}\n",
            ["strategies[0].request.url", "strategies[0].request.method"],
        ),
        (
            "note",
            "    action: restart\n    verify: {timeout: soon}\n",
            ["strategies[0].verify.query", "strategies[0].verify.timeout"],
        ),
        (
            "note",
            "    action: scale\n"
            "    scale: {annotation: '', target_value: 1, min_replicas: 5, max_replicas: 2}\n",
            ["strategies[0].scale.annotation", "strategies[0].scale"],
        ),
    ],
    ids=["request-url-and-method", "verify-query-and-timeout", "scale-source-and-policy"],
)
def test_a_missing_or_invalid_key_does_not_hide_its_neighbours(
    executor: str, tail: str, expected: list[str]
) -> None:
    assert [path for path, _, _ in problems(STRATEGY % executor + tail)] == expected


def test_an_invalid_prometheus_url_is_reported_once_not_again_as_missing() -> None:
    text = (
        "prometheus: {url: 'localhost:9090'}\n"
        + STRATEGY % "note"
        + ("    action: restart\n    verify: {query: up == 1}\n")
    )
    assert [(path, line) for path, line, _ in problems(text)] == [("prometheus.url", 1)]


def test_an_invalid_alertmanager_url_is_reported_once_not_again_as_missing() -> None:
    text = "alertmanager: {url: nowhere}\nexecutors:\n  am: {type: alertmanager, url: x}\n"
    assert [(path, line) for path, line, _ in problems(text)] == [
        ("executors.am.url", 3),
        ("alertmanager.url", 1),
    ]


SCALE_ON_LOG = """\
executors:
  trial: {type: log%s}
strategies:
  - name: grow
    matchers: []
    action: scale
    executor: trial
    target: web
    scale: {annotation: value, target_value: 1}
"""


def test_scale_on_a_log_executor_without_current_replicas_is_refused_saying_what_to_add():
    assert problems(SCALE_ON_LOG % "") == [
        (
            "strategies[0].executor",
            7,
            "log executor 'trial' changes nothing and cannot read replicas: to trial this "
            "scale strategy, add current_replicas: N to executors.trial (the count the "
            "decision starts from)",
        )
    ]


def test_scale_on_a_log_executor_with_current_replicas_is_valid() -> None:
    config = parse_config(SCALE_ON_LOG % ", current_replicas: 3")
    assert config.executors["trial"].settings == {"current_replicas": 3}
    assert [s.name for s in config.strategies] == ["grow"]


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "true"])
def test_current_replicas_must_be_a_whole_number_from_zero(value: str) -> None:
    [(path, line, _)] = problems(SCALE_ON_LOG % f", current_replicas: {value}")
    assert (path, line) == ("executors.trial.current_replicas", 2)


def test_the_log_executor_reports_its_configured_replicas_and_none_without() -> None:
    config = parse_config(SCALE_ON_LOG % ", current_replicas: 3")
    executor = LogExecutor(config.executors["trial"], config)
    assert executor.replicas("web") == 3
    bare = parse_config("executors: {note: {type: log}}\n")
    with pytest.raises(ExecutorError, match="set current_replicas"):
        LogExecutor(bare.executors["note"], bare).replicas("web")


# ---------------------------------------------------------------- warnings

AUTH = "server: {listen: '%s', auth: {bearer_token_file: token}}\n"


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    """A directory holding the `token` file that AUTH names."""
    (tmp_path / "token").write_text("s3cret\n")
    return tmp_path


ONE_STRATEGY = (
    "executors: {note: {type: log}}\n"
    "strategies:\n"
    "  - {name: a, matchers: [], action: restart, executor: note, target: t}\n"
)


def test_an_empty_config_warns_of_no_strategies_and_an_open_webhook_on_every_address():
    assert warnings("") == [
        (
            "strategies",
            "no strategies: every alert is journaled as unmatched and nothing is remediated; "
            "add strategies (see examples/remediation.yml)",
        ),
        (
            "server.auth",
            "no server.auth is configured and the server listens on 0.0.0.0:9095, not only "
            "on loopback: anyone who can reach it can post alerts that start remediation, "
            "reload the config and reset breakers; set server.auth (bearer token or basic "
            "auth) or listen on 127.0.0.1",
        ),
    ]


def test_no_auth_on_loopback_is_a_milder_warning() -> None:
    text = "server: {listen: '127.0.0.1:9095'}\n" + ONE_STRATEGY
    assert warnings(text) == [
        (
            "server.auth",
            "server.auth is not set: any process of this host can post alerts to "
            "127.0.0.1:9095 that start remediation, reload the config and reset breakers; "
            "set server.auth (bearer token or basic auth) before listening beyond loopback",
        )
    ]


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:9095", True),
        ("127.3.4.5:1", True),
        ("[::1]:9095", True),
        ("localhost:9095", True),
        ("0.0.0.0:9095", False),
        ("[::]:9095", False),
        ("10.0.0.7:9095", False),
        ("remediator.internal:9095", False),  # a name may resolve to any address
    ],
)
def test_which_listen_addresses_are_loopback_only(listen: str, loopback: bool) -> None:
    assert listens_on_loopback_only(listen) is loopback


def test_auth_and_strategies_leave_nothing_to_warn_about(token_dir: Path) -> None:
    assert warnings(AUTH % "0.0.0.0:9095" + ONE_STRATEGY, token_dir) == []


CAPPED = """\
executors:
  sh: {type: command, timeout: 5s}
  am: {type: alertmanager, url: 'http://127.0.0.1:9093', timeout: 5s}
  web: {type: http, timeout: 5s}
strategies:
  - {name: long, matchers: [], action: run, executor: sh, target: t, command: [x], timeout: 1m}
  - {name: inherited, matchers: [], action: run, executor: sh, target: t, command: [x]}
  - {name: short, matchers: [], action: run, executor: sh, target: t, command: [x], timeout: 5s}
  - {name: page, matchers: [], action: escalate, executor: am, target: t, timeout: 30s}
  - name: call
    matchers: []
    action: http
    executor: web
    target: t
    request: {url: 'http://127.0.0.1:1/x'}
    timeout: 1m
"""


def capped(index: int, name: str, asked: str, executor: str) -> tuple[str, str]:
    return (
        f"strategies[{index}].timeout",
        f"strategy {name!r} asks for {asked} (its timeout, or defaults.timeout) but executor "
        f"{executor!r} caps every action at 5s (executors.{executor}.timeout): the action is "
        "stopped after 5s; lower the strategy's timeout or raise the executor's",
    )


def test_a_strategy_timeout_longer_than_its_executors_cap_warns_naming_both(
    token_dir: Path,
) -> None:
    # defaults.timeout (60s) applies to `inherited`; `short` fits; an http executor's
    # timeout bounds each attempt within the action's timeout, so `call` is no conflict.
    found = warnings(AUTH % "127.0.0.1:9095" + CAPPED, token_dir)
    assert found == [
        capped(0, "long", "1m", "sh"),
        capped(1, "inherited", "1m", "sh"),
        capped(3, "page", "30s", "am"),
    ]


def test_warnings_are_problems_with_a_path_for_check_to_print() -> None:
    [warning, _] = config_warnings(parse_config(""))
    assert isinstance(warning, Problem)
    assert str(warning).startswith("strategies: no strategies")


def test_a_runbook_whose_steps_query_prometheus_is_named_once_when_the_url_is_missing() -> None:
    from receiver.config import ConfigError, parse_config

    text = """\
executors: {local: {type: log}}
strategies:
  - name: fix-web
    matchers: ['alertname="Down"']
    target: '{{ labels.service }}'
    steps:
      - {action: restart, executor: local, verify: {query: 'up == 1'}}
      - {action: rollback, executor: local, when: 'vector(1) > 0'}
"""
    try:
        parse_config(text)
    except ConfigError as exc:
        messages = [p.message for p in exc.problems if p.path == "prometheus.url"]
    assert messages == ["required by strategies that query Prometheus: fix-web"]


def test_a_runbook_whose_breaker_opens_before_its_last_step_is_warned_about() -> None:
    from receiver.config import config_warnings, parse_config

    text = """\
server: {listen: '127.0.0.1:9095'}
executors: {local: {type: log}}
strategies:
  - name: fix-web
    matchers: ['alertname="Down"']
    target: '{{ labels.service }}'
    breaker: {failure_threshold: 1}
    steps:
      - {action: restart, executor: local}
      - {action: rollback, executor: local}
"""
    warnings = [w for w in config_warnings(parse_config(text)) if w.path.endswith(".breaker")]
    assert [w.path for w in warnings] == ["strategies[0].steps[0].breaker"]
    assert "raise breaker.failure_threshold above 1" in warnings[0].message
    safe = text.replace("failure_threshold: 1", "failure_threshold: 2")
    assert not [w for w in config_warnings(parse_config(safe)) if w.path.endswith(".breaker")]


def test_a_step_timeout_over_its_executor_cap_is_warned_about() -> None:
    from receiver.config import config_warnings, parse_config

    text = """\
server: {listen: '127.0.0.1:9095'}
executors: {local: {type: command, timeout: 5s}, logger: {type: log}}
strategies:
  - name: fix-web
    matchers: ['alertname="Down"']
    target: '{{ labels.service }}'
    steps:
      - {action: restart, executor: logger}
      - {action: run, executor: local, command: ['/bin/true'], timeout: 1m}
"""
    paths = [w.path for w in config_warnings(parse_config(text)) if w.path != "server.auth"]
    assert paths == ["strategies[0].steps[1].timeout"]


STEP_VERIFY = """\
prometheus: {url: 'http://127.0.0.1:9090'}
defaults: {verify_timeout: 4s, verify_interval: 1s}
executors: {local: {type: log}}
strategies:
  - name: fix-web
    matchers: ['alertname="Down"']
    target: '{{ labels.service }}'
    steps:
      - {action: restart, executor: local, verify: {query: 'up == 1'}}
      - {action: rollback, executor: local, verify: {query: 'up == 1', timeout: 9s}}
"""


def test_a_steps_own_verify_takes_its_unset_timings_from_defaults() -> None:
    from receiver.config import parse_config

    first, second = parse_config(STEP_VERIFY).strategies[0].steps
    assert (first.verify.timeout, first.verify.interval) == (4.0, 1.0)
    assert (second.verify.timeout, second.verify.interval) == (9.0, 1.0)


def test_an_escalation_executor_that_cannot_escalate_is_refused() -> None:
    from receiver.config import ConfigError, parse_config

    text = """\
defaults: {escalation_executor: sh}
executors: {sh: {type: command}}
"""
    try:
        parse_config(text)
    except ConfigError as exc:
        problems = [(p.path, p.message) for p in exc.problems]
    assert problems == [
        (
            "defaults.escalation_executor",
            "executor 'sh' is a command executor, which cannot escalate: name an executor "
            "of type alertmanager or log",
        )
    ]
    assert parse_config(text.replace("type: command", "type: log")).defaults.escalation_executor


def test_a_duplicate_step_name_is_reported_with_the_steps_other_problems() -> None:
    from receiver.config import ConfigError, parse_config

    text = """\
prometheus: {url: 'http://127.0.0.1:9090'}
executors: {local: {type: log}}
strategies:
  - name: fix-web
    matchers: ['alertname="Down"']
    target: '{{ labels.service }}'
    steps:
      - {name: twice, action: restart, executor: local}
      - {name: twice, action: rollback, executor: local, when: '{{ unclosed'}
"""
    try:
        parse_config(text)
    except ConfigError as exc:
        paths = sorted(p.path for p in exc.problems)
    assert paths == ["strategies[0].steps[1].name", "strategies[0].steps[1].when"]
