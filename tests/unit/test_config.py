"""Config loading: typed values for a good file, every problem with path and line for a bad one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from receiver.breaker import BreakerSettings
from receiver.config import (
    DEFAULT_LISTEN,
    DEFAULT_STORE,
    Budget,
    Config,
    ConfigError,
    Limits,
    Problem,
    load_config,
    parse_config,
)
from receiver.templates import DEFAULT_PATTERN, Template
from tests.support.kubeconfig import KUBECONFIG

FULL_CONFIG = """\
server:
  listen: 127.0.0.1:9999
  auth: {bearer_token_file: token.txt}
  max_body_bytes: 2048
  threads: 4
store: sqlite:////var/lib/remediator/journal.db
prometheus: {url: http://127.0.0.1:9090/, timeout: 5s}
alertmanager: {url: http://127.0.0.1:9093}
defaults:
  cooldown: 5m
  breaker: {failure_threshold: 5, recovery_timeout: 10m}
  budget: {max_actions: 3, window: 1h}
  max_concurrent_actions: 2
  dry_run: false
  service_label: [app, job]
  timeout: 45s
  verify_timeout: 90s
  verify_interval: 500ms
  escalation_executor: am
executors:
  local: {type: command, timeout: 30s, env: {LANG: C}}
  procs: {type: supervisor, url: http://127.0.0.1:9001/RPC2}
  web: {type: http, retries: 2, backoff: 1s}
  am: {type: alertmanager, silence_duration: 15m}
strategies:
  - name: restart-when-down
    matchers: ['alertname="ServiceDown"', 'severity=~"critical|page"']
    action: restart
    executor: procs
    target: '{{ labels.service }}'
    cooldown: 1h30m
    breaker: {success_threshold: 2}
    verify: {query: 'min(up{service="{{ labels.service }}"}) == 1', timeout: 60s}
    continue: true
    silence: true
  - name: clean-disk
    matchers: ['alertname="DiskFilling"']
    action: run
    executor: local
    target: '{{ labels.instance }}'
    command: ['/usr/local/bin/clean-tmp', '{{ labels.instance }}']
    timeout: 30s
    dry_run: true
    budget: {max_actions: 1, window: 1d}
    preconditions:
      - alert_not_firing: ['alertname="Maintenance"']
  - name: flush-cache
    matchers: ['alertname="CacheStale"']
    action: http
    executor: web
    target: '{{ labels.service }}'
    params: {reason: '{{ labels.alertname }}'}
    request:
      method: post
      url: 'http://{{ labels.instance }}/flush?all=1&force=true'
      headers: {X-Reason: '{{ params.reason }}'}
      body: {reason: '{{ annotations.summary }}', count: 3}
  - name: scale-web
    matchers: ['alertname="HighLoad"']
    action: scale
    executor: procs
    target: web
    safe_pattern: '[a-z]+'
    scale: {target_value: 0.7, min_replicas: 2, max_replicas: 8, query: 'avg(load)'}
"""

# Lines 1-5; a strategy appended to it starts on line 6.
HEADER = """\
executors:
  local: {type: command}
  procs: {type: supervisor, url: http://127.0.0.1:9001/RPC2}
  sink: {type: log}
strategies:
"""
# Lines 6-10 after HEADER; an extra strategy key added after it lands on line 11.
STRATEGY = """\
  - name: fix
    matchers: ['alertname="Down"']
    action: restart
    executor: sink
    target: '{{ labels.service }}'
"""


def with_strategy(extra: str = "", **replace: str) -> str:
    """HEADER + STRATEGY (+ extra lines from line 11), with `key: value` replacements."""
    text = STRATEGY
    for key, value in replace.items():
        old = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        indent = old[: len(old) - len(old.lstrip())]
        text = text.replace(old, f"{indent}{key}: {value}")
    return HEADER + text + extra


def problems_of(text: str, base_dir: Path | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yml", base_dir)
    return info.value.problems


def only_problem(text: str, base_dir: Path | None = None) -> Problem:
    found = problems_of(text, base_dir)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def full(tmp_path: Path) -> Config:
    (tmp_path / "token.txt").write_text("  s3cret-token\n")
    return parse_config(FULL_CONFIG, "full.yml", tmp_path)


# ---------------------------------------------------------------- a valid config


def test_base_strategy_config_is_valid() -> None:
    config = parse_config(with_strategy())
    assert [s.name for s in config.strategies] == ["fix"]


def test_full_config_server(full: Config) -> None:
    assert full.server.listen == "127.0.0.1:9999"
    assert full.server.auth.bearer_token == "s3cret-token"
    assert full.server.auth.basic_username is None
    assert full.server.auth.enabled is True
    assert full.server.max_body_bytes == 2048
    assert full.server.threads == 4
    assert full.store == "sqlite:////var/lib/remediator/journal.db"
    assert full.source == "full.yml"
    assert full.sha256 == hashlib.sha256(FULL_CONFIG.encode()).hexdigest()


def test_full_config_endpoints(full: Config) -> None:
    assert full.prometheus is not None and full.alertmanager is not None
    assert (full.prometheus.url, full.prometheus.timeout) == ("http://127.0.0.1:9090", 5.0)
    assert (full.alertmanager.url, full.alertmanager.timeout) == ("http://127.0.0.1:9093", 10.0)


def test_full_config_defaults(full: Config) -> None:
    d = full.defaults
    assert d.cooldown == 300.0
    assert d.breaker == BreakerSettings(failure_threshold=5, recovery_timeout=600.0)
    assert d.breaker.half_open_max_calls == 1
    assert d.breaker.success_threshold == 1
    assert d.budget == Budget(max_actions=3, window=3600.0)
    assert d.max_concurrent_actions == 2
    assert d.dry_run is False
    assert d.service_labels == ("app", "job")
    assert (d.timeout, d.verify_timeout, d.verify_interval) == (45.0, 90.0, 0.5)
    assert d.escalation_executor == "am"
    assert d.safe_pattern is DEFAULT_PATTERN


def test_full_config_executors(full: Config) -> None:
    assert {name: e.type for name, e in full.executors.items()} == {
        "local": "command",
        "procs": "supervisor",
        "web": "http",
        "am": "alertmanager",
    }
    assert full.executors["local"].settings == {"timeout": 30.0, "env": {"LANG": "C"}}
    assert full.executors["procs"].settings == {"url": "http://127.0.0.1:9001/RPC2"}
    assert full.executors["web"].settings == {"retries": 2, "backoff": 1.0}
    assert full.executors["am"].settings == {"silence_duration": 900.0}


def test_full_config_strategy_overrides(full: Config) -> None:
    restart, clean, flush, scale = full.strategies
    assert [m.__str__() for m in restart.matchers] == [
        'alertname="ServiceDown"',
        'severity=~"critical|page"',
    ]
    assert (restart.action, restart.executor, restart.target.source) == (
        "restart",
        "procs",
        "{{ labels.service }}",
    )
    assert restart.cooldown == 5400.0
    # strategy breaker = defaults breaker + its own override
    assert restart.breaker == BreakerSettings(
        failure_threshold=5, recovery_timeout=600.0, success_threshold=2
    )
    assert restart.verify is not None
    assert restart.verify.query.source == 'min(up{service="{{ labels.service }}"}) == 1'
    assert (restart.verify.timeout, restart.verify.interval) == (60.0, 0.5)
    assert restart.continue_matching is True
    assert restart.silence is True
    assert restart.timeout == 45.0
    assert restart.budget == Budget(3, 3600.0)
    assert restart.dry_run is False

    assert clean.command[0].source == "/usr/local/bin/clean-tmp"
    assert [t.source for t in clean.command] == [
        "/usr/local/bin/clean-tmp",
        "{{ labels.instance }}",
    ]
    assert (clean.timeout, clean.cooldown, clean.dry_run) == (30.0, 300.0, True)
    assert clean.breaker == full.defaults.breaker
    assert clean.budget == Budget(1, 86400.0)
    assert clean.continue_matching is False
    assert [str(m) for m in clean.preconditions[0].alert_not_firing] == ['alertname="Maintenance"']

    assert flush.request is not None
    assert flush.request.method == "POST"
    assert flush.request.url.source == "http://{{ labels.instance }}/flush?all=1&force=true"
    assert flush.request.headers["X-Reason"].source == "{{ params.reason }}"
    assert isinstance(flush.request.body["reason"], Template)
    assert flush.request.body["reason"].checked is False
    assert flush.request.body["count"] == 3
    assert flush.params["reason"].source == "{{ labels.alertname }}"

    assert scale.scale is not None
    assert (
        scale.scale.policy.target_value,
        scale.scale.policy.min_replicas,
        scale.scale.policy.max_replicas,
    ) == (
        0.7,
        2,
        8,
    )
    assert scale.scale.query is not None and scale.scale.query.source == "avg(load)"
    assert (scale.scale.policy.tolerance, scale.scale.policy.stabilization_window) == (0.1, 300.0)
    assert scale.safe_pattern.pattern == "[a-z]+"


def test_empty_config_gives_defaults() -> None:
    config = parse_config("")
    assert config.server.listen == DEFAULT_LISTEN
    assert config.store == DEFAULT_STORE
    assert config.prometheus is None
    assert config.strategies == ()
    assert config.defaults.breaker == BreakerSettings()
    assert config.defaults.cooldown == 300.0


def test_service_of_uses_configured_label_order(full: Config) -> None:
    assert full.service_of({"job": "node", "app": "web"}) == "web"
    assert full.service_of({"job": "node", "app": ""}) == "node"
    assert full.service_of({"service": "ignored"}) == ""


def test_basic_auth_reads_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    text = "server:\n  auth:\n    basic_auth: {username: am, password_file: pw}\n"
    auth = parse_config(text, base_dir=tmp_path).server.auth
    assert (auth.basic_username, auth.basic_password, auth.bearer_token) == ("am", "hunter2", None)


# ---------------------------------------------------------------- one test per error class


def test_unknown_top_level_key() -> None:
    problem = only_problem("store: sqlite:///x.db\nstorage: sqlite:///y.db\n")
    assert (problem.path, problem.line) == ("storage", 2)
    assert problem.message.startswith("unknown key 'storage'; allowed: alertmanager, defaults")


def test_unknown_nested_key() -> None:
    problem = only_problem("defaults:\n  cooldown: 5m\n  breaker:\n    threshold: 3\n")
    assert (problem.path, problem.line) == ("defaults.breaker.threshold", 4)
    assert "unknown key 'threshold'" in problem.message
    assert "failure_threshold" in problem.message


def test_unknown_key_in_a_strategy() -> None:
    problem = only_problem(with_strategy("    retries: 3\n"))
    assert (problem.path, problem.line) == ("strategies[0].retries", 11)
    assert "unknown key 'retries'" in problem.message


def test_unknown_key_in_an_executor() -> None:
    problem = only_problem("executors:\n  local:\n    type: command\n    shell: true\n")
    assert (problem.path, problem.line) == ("executors.local.shell", 4)


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        (
            "defaults:\n  max_concurrent_actions: '4'\n",
            "defaults.max_concurrent_actions",
            2,
            "expected an integer, got str",
        ),
        ("defaults:\n  breaker: [3]\n", "defaults.breaker", 2, "expected a mapping, got list"),
        ("server:\n  threads: true\n", "server.threads", 2, "expected an integer, got bool"),
        ("server:\n  listen: 9095\n", "server.listen", 2, "expected a string, got int"),
        ("prometheus: http://p:9090\n", "prometheus", 1, "expected a mapping, got str"),
        ("strategies: {name: x}\n", "strategies", 1, "expected a list of strategies, got mapping"),
        ("defaults:\n  dry_run: 'yes'\n", "defaults.dry_run", 2, "expected true or false, got str"),
        (
            with_strategy("    continue: 1\n"),
            "strategies[0].continue",
            11,
            "expected true or false",
        ),
        (with_strategy(matchers="'alertname=\"Down\"'"), "strategies[0].matchers", 7, "got str"),
        (with_strategy("    params: [a]\n"), "strategies[0].params", 11, "got list"),
        (with_strategy(target="['a']"), "strategies[0].target", 10, "expected a string, got list"),
    ],
)
def test_wrong_type(text: str, path: str, line: int, message: str) -> None:
    problem = only_problem(text)
    assert (problem.path, problem.line) == (path, line)
    assert message in problem.message


def test_integer_below_minimum() -> None:
    problem = only_problem("defaults:\n  breaker: {failure_threshold: 0}\n")
    assert (problem.path, problem.line) == ("defaults.breaker.failure_threshold", 2)
    assert problem.message == "must be at least 1, got 0"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5x", "invalid duration '5x'"),
        ("'300'", "invalid duration '300'"),
        ("-5m", "invalid duration '-5m'"),
        ("5", "expected a duration string such as 30s or 5m, got int"),
        ("1.5", "expected a duration string such as 30s or 5m, got float"),
    ],
)
def test_bad_duration(value: str, message: str) -> None:
    problem = only_problem(f"defaults:\n  dry_run: true\n  cooldown: {value}\n")
    assert (problem.path, problem.line) == ("defaults.cooldown", 3)
    assert problem.message.startswith(message)


def test_bad_duration_in_a_strategy() -> None:
    problem = only_problem(with_strategy("    timeout: 0s\n"))
    assert (problem.path, problem.line) == ("strategies[0].timeout", 11)
    assert problem.message == "must be longer than 0s, got '0s'"


def test_invalid_matcher_syntax() -> None:
    problem = only_problem(with_strategy(matchers="['alertname=\"Down\"', 'severity']"))
    assert (problem.path, problem.line) == ("strategies[0].matchers", 7)
    assert problem.message.startswith("bad matcher 'severity'")


def test_invalid_matcher_label_name() -> None:
    problem = only_problem(with_strategy(matchers="['1abc=\"x\"']"))
    assert (problem.path, problem.line) == ("strategies[0].matchers", 7)
    assert "invalid label name '1abc'" in problem.message


def test_invalid_matcher_regex() -> None:
    problem = only_problem(with_strategy(matchers="['job=~\"(web\"']"))
    assert (problem.path, problem.line) == ("strategies[0].matchers", 7)
    assert problem.message.startswith("invalid regex '(web'")


def test_strategy_naming_a_missing_executor() -> None:
    problem = only_problem(with_strategy(executor="nowhere"))
    assert (problem.path, problem.line) == ("strategies[0].executor", 9)
    assert problem.message == "no executor named 'nowhere' (known: local, procs, sink)"


def test_template_that_does_not_compile() -> None:
    problem = only_problem(with_strategy(target="'{{ labels.service '"))
    assert (problem.path, problem.line) == ("strategies[0].target", 10)
    assert problem.message.startswith("template does not compile")


def test_command_argument_that_does_not_compile() -> None:
    text = with_strategy("    command: [/bin/fix, '{% if %}']\n", executor="local")
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("strategies[0].command", 11)
    assert problem.message.startswith("template does not compile")


def test_verify_query_that_does_not_compile_is_one_problem() -> None:
    text = "prometheus: {url: http://p:9090}\n" + with_strategy("    verify: {query: '{{ x'}\n")
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("strategies[0].verify.query", 12)
    assert problem.message.startswith("template does not compile")


def test_action_the_executor_type_cannot_do() -> None:
    problem = only_problem(
        with_strategy("    command: [/bin/fix]\n", action="run", executor="procs")
    )
    assert (problem.path, problem.line) == ("strategies[0].action", 8)
    assert problem.message == "a supervisor executor cannot run; it supports restart, scale"


def test_unknown_action() -> None:
    problem = only_problem(with_strategy(action="reboot"))
    assert (problem.path, problem.line) == ("strategies[0].action", 8)
    assert problem.message.startswith("expected one of restart, rollback, scale, run, http")


def test_missing_required_strategy_keys() -> None:
    found = problems_of(HEADER + "  - name: fix\n")
    assert [(p.path, p.line, p.message) for p in found] == [
        ("strategies[0].action", 6, "required key is missing"),
        ("strategies[0].executor", 6, "required key is missing"),
        ("strategies[0].matchers", 6, "required key is missing"),
        ("strategies[0].target", 6, "required key is missing"),
    ]


def test_missing_command_for_a_command_executor() -> None:
    problem = only_problem(with_strategy(action="run", executor="local"))
    assert (problem.path, problem.line) == ("strategies[0].command", 6)
    assert problem.message == "required for action 'run' on a command executor"


def test_missing_executor_type_and_url() -> None:
    found = problems_of("executors:\n  a: {timeout: 5s}\n  b:\n    type: supervisor\n")
    assert [(p.path, p.line) for p in found] == [("executors.a.type", 2), ("executors.b.url", 3)]
    assert found[0].message.startswith("expected one of command, http")
    assert found[1].message == "required key is missing"


def test_missing_prometheus_url_key() -> None:
    problem = only_problem("store: sqlite:///x.db\nprometheus:\n  timeout: 5s\n")
    assert (problem.path, problem.line) == ("prometheus.url", 3)
    assert problem.message == "required key is missing"


def test_duplicate_strategy_names() -> None:
    problem = only_problem(with_strategy(STRATEGY))
    assert (problem.path, problem.line) == ("strategies[1].name", 11)
    assert problem.message == "duplicate name 'fix'"


def test_duplicate_yaml_keys() -> None:
    problem = only_problem("store: sqlite:///a.db\nserver: {}\nstore: sqlite:///b.db\n")
    assert (problem.path, problem.line) == ("", 3)
    assert problem.message == "invalid YAML: found duplicate key 'store'"


def test_duplicate_nested_yaml_keys() -> None:
    problem = only_problem("defaults:\n  cooldown: 5m\n  dry_run: true\n  cooldown: 1m\n")
    assert (problem.path, problem.line) == ("", 4)
    assert "duplicate key 'cooldown'" in problem.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("defaults:\n  cooldown: 5m\n breaker: {}\n", 3),
        ("store: sqlite:///a.db\na: b: c\n", 2),
        ("server:\n  auth: {bearer_token_file: x\nstore: sqlite:///a.db\n", 3),
    ],
)
def test_invalid_yaml_syntax_reports_the_line(text: str, line: int) -> None:
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("", line)
    assert problem.message.startswith("invalid YAML: ")


def test_unhashable_yaml_key_is_a_config_error() -> None:
    problem = only_problem("store: sqlite:///a.db\n? [a, b]\n: c\n")
    assert problem.message == "invalid YAML: found unhashable key"
    assert problem.line == 2


def test_top_level_must_be_a_mapping() -> None:
    problem = only_problem("- server\n- store\n")
    assert (problem.path, problem.line) == ("", 1)
    assert problem.message == "expected a mapping, got list"


SECRET_CONFIG = "server:\n  listen: 0.0.0.0:9095\n  auth:\n    bearer_token_file: secrets/token\n"


def test_secret_file_is_relative_to_base_dir(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("abc\n")
    monkeypatch.chdir("/")
    assert parse_config(SECRET_CONFIG, base_dir=tmp_path).server.auth.bearer_token == "abc"


def test_secret_file_missing(tmp_path: Path) -> None:
    problem = only_problem(SECRET_CONFIG, tmp_path)
    assert (problem.path, problem.line) == ("server.auth.bearer_token_file", 4)
    assert problem.message == "cannot read secrets/token: No such file or directory"


def test_secret_file_empty(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text(" \n\n")
    problem = only_problem(SECRET_CONFIG, tmp_path)
    assert (problem.path, problem.line) == ("server.auth.bearer_token_file", 4)
    assert problem.message == "secrets/token is empty"


def test_secret_file_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    token = tmp_path / "abs-token"
    token.write_text("xyz")
    text = f"server:\n  auth: {{bearer_token_file: {token}}}\n"
    assert parse_config(text, base_dir=tmp_path / "elsewhere").server.auth.bearer_token == "xyz"


def test_basic_auth_missing_password_file_key() -> None:
    problem = only_problem("server:\n  auth:\n    basic_auth:\n      username: am\n")
    assert (problem.path, problem.line) == ("server.auth.basic_auth.password_file", 4)


def test_kubernetes_executor_settings(tmp_path: Path) -> None:
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / "config").write_text(KUBECONFIG)
    text = (
        "executors:\n  k8s:\n    type: kubernetes\n    kubeconfig: kube/config\n"
        "    context: prod\n    timeout: 5s\n"
        "  incluster: {type: kubernetes, in_cluster: true}\n"
    )
    config = parse_config(text, base_dir=tmp_path)
    assert config.executors["k8s"].settings == {
        "kubeconfig": "kube/config",
        "context": "prod",
        "timeout": 5.0,
    }
    assert config.executors["incluster"].settings == {"in_cluster": True}


def test_kubernetes_executor_problems(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    unknown = only_problem("executors:\n  k8s:\n    type: kubernetes\n    namespace: prod\n")
    assert (unknown.path, unknown.line) == ("executors.k8s.namespace", 4)
    both = only_problem(
        "executors:\n  k8s:\n    type: kubernetes\n    in_cluster: true\n"
        "    kubeconfig: kubeconfig\n",
        tmp_path,
    )
    assert (both.path, both.line) == ("executors.k8s.in_cluster", 4)
    assert both.message == "set either in_cluster: true or kubeconfig/context, not both"
    # the kubeconfig file itself is the executor's to check (check_executors), so that
    # one removed after start never stops the journal writer from starting again
    parse_config(
        "executors:\n  k8s: {type: kubernetes, kubeconfig: nope/config}\n", base_dir=tmp_path
    )
    flag = only_problem("executors:\n  k8s: {type: kubernetes, in_cluster: 'yes'}\n")
    assert flag.path == "executors.k8s.in_cluster"


def test_kubernetes_executor_cannot_run_commands() -> None:
    text = (
        "executors: {k8s: {type: kubernetes, in_cluster: true}}\n"
        "strategies:\n  - name: s\n    matchers: ['a=\"b\"']\n    action: run\n"
        "    executor: k8s\n    target: x\n    command: [x]\n"
    )
    problem = only_problem(text)
    assert problem.path == "strategies[0].action"
    assert (
        problem.message == "a kubernetes executor cannot run; it supports restart, rollback, scale"
    )


KUBE_TARGET_CONFIG = (
    "executors: {{k8s: {{type: kubernetes, in_cluster: true}}}}\n"
    "strategies:\n  - name: s\n    matchers: ['a=\"b\"']\n    action: {action}\n"
    "    executor: k8s\n    target: '{target}'\n"
)


@pytest.mark.parametrize(
    ("action", "target", "message"),
    [
        ("restart", "deploy/shop/{{ labels.d }}",
         "target 'deploy/shop/{{ labels.d }}': kind must be deployment or statefulset, got "
         "'deploy' (targets are <kind>/<namespace>/<name>)"),
        ("restart", "pods/{{ labels.ns }}/{{ labels.d }}",
         "target 'pods/{{ labels.ns }}/{{ labels.d }}': kind must be deployment or "
         "statefulset, got 'pods' (targets are <kind>/<namespace>/<name>)"),
        ("restart", "deployment/Shop/web",
         "target 'deployment/Shop/web': namespace 'Shop' is not a valid Kubernetes namespace "
         "(a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and "
         "ending with a letter or digit)"),
        ("rollback", "statefulset/shop/{{ labels.s }}",
         "target 'statefulset/shop/{{ labels.s }}': rollback needs a deployment (the "
         "executor rolls back only those)"),
        ("rollback", "statefulset/shop/db",
         "target 'statefulset/shop/db': rollback needs a deployment (the executor rolls "
         "back only those)"),
    ],
)  # fmt: skip
def test_a_kubernetes_target_that_cannot_work_is_refused_at_load(action, target, message):
    problem = only_problem(KUBE_TARGET_CONFIG.format(action=action, target=target))
    assert (problem.path, problem.line, problem.message) == ("strategies[0].target", 7, message)


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("restart", "deployment/{{ labels.namespace }}/{{ labels.deployment }}"),
        ("restart", "statefulset/shop/db"),
        ("rollback", "deployment/shop/{{ labels.d }}"),
        ("restart", "{{ labels.kind }}/shop/{{ labels.d }}"),  # the kind from a label
        ("rollback", "{{ labels.target }}"),
    ],
)
def test_a_kubernetes_target_that_may_work_is_accepted(action, target):
    config = parse_config(KUBE_TARGET_CONFIG.format(action=action, target=target))
    assert config.strategies[0].target.source == target


def test_unhashable_executor_type_is_a_problem() -> None:
    problem = only_problem("executors:\n  x: {type: [command]}\n")
    assert (problem.path, problem.line) == ("executors.x.type", 2)


def test_verify_without_prometheus_url() -> None:
    problem = only_problem(with_strategy("    verify: {query: 'up == 1'}\n"))
    assert (problem.path, problem.line) == ("prometheus.url", 6)
    assert problem.message == "required by strategies that query Prometheus: fix"


def test_alertmanager_executor_without_url() -> None:
    problem = only_problem("store: sqlite:///x.db\nexecutors:\n  am: {type: alertmanager}\n")
    assert (problem.path, problem.line) == ("executors.am.url", 2)
    assert "needs a url here or a top-level alertmanager.url" in problem.message


def test_escalation_executor_must_exist() -> None:
    problem = only_problem("store: sqlite:///x.db\ndefaults:\n  escalation_executor: pager\n")
    assert (problem.path, problem.line) == ("defaults.escalation_executor", 3)
    assert problem.message == "no executor named 'pager'"


def test_scale_needs_exactly_one_value_source() -> None:
    text = with_strategy("    scale: {target_value: 1}\n", action="scale", executor="procs")
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("strategies[0].scale", 11)
    assert problem.message == "set exactly one of query (PromQL) or annotation (alert value)"


def test_several_problems_reported_at_once() -> None:
    text = "storage: x\ndefaults:\n  cooldown: 5x\n" + with_strategy(executor="nowhere")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yml")
    found = info.value.problems
    assert [(p.path, p.line) for p in found] == [
        ("storage", 1),
        ("defaults.cooldown", 3),
        ("strategies[0].executor", 12),
    ]
    assert info.value.source == "bad.yml"
    assert str(info.value).splitlines() == [
        "bad.yml: storage (line 1): unknown key 'storage'; allowed: alertmanager, defaults, "
        "executors, limits, prometheus, retention, server, store, strategies",
        f"bad.yml: defaults.cooldown (line 3): {found[1].message}",
        "bad.yml: strategies[0].executor (line 12): no executor named 'nowhere' "
        "(known: local, procs, sink)",
    ]


def test_problem_str_without_path_or_line() -> None:
    assert str(Problem("", "invalid YAML: x")) == "<top>: invalid YAML: x"
    assert str(Problem("store", "bad", 3)) == "store (line 3): bad"


# ---------------------------------------------------------------- load_config


def test_load_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.source == str(missing)
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("", "cannot read config: No such file or directory")
    ]


def test_load_config_resolves_secrets_next_to_the_file(tmp_path: Path, monkeypatch) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "secrets").mkdir(parents=True)
    (conf_dir / "secrets" / "token").write_text("from-file\n")
    (conf_dir / "remediator.yml").write_text(SECRET_CONFIG)
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/remediator.yml")
    assert config.server.auth.bearer_token == "from-file"
    assert config.source == "etc/remediator.yml"


def test_load_config_reports_source_on_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("storage: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: storage (line 1): unknown key")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("server: {threads: 100000}\n", "server.threads"),
        ("defaults: {max_concurrent_actions: 100000000}\n", "defaults.max_concurrent_actions"),
    ],
)
def test_thread_counts_are_bounded(text, path):
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert [(p.path, p.line) for p in caught.value.problems] == [(path, 1)]
    assert "must be at most" in caught.value.problems[0].message


def test_limits_default_when_the_section_is_absent() -> None:
    config = parse_config(with_strategy())
    assert config.limits == Limits()


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("limits:\n  read_timeout: 0s\n", "limits.read_timeout"),
        ("limits:\n  max_connections: 0\n", "limits.max_connections"),
        ("limits:\n  max_page_bytes: 10\n", "limits.max_page_bytes"),
        ("limits:\n  unknown_bound: 3\n", "limits.unknown_bound"),
    ],
)
def test_a_bad_limit_is_refused_with_its_path(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text + with_strategy())
    assert [p.path for p in info.value.problems] == [path]
