"""`approval:` in the config: defaults, inheritance by a runbook's steps, clear errors."""

from __future__ import annotations

import pytest

from receiver.approvals import ApprovalSettings
from receiver.config import ConfigError, parse_config

HEADER = """\
alertmanager: {url: http://127.0.0.1:9093}
defaults: {escalation_executor: am}
executors:
  local: {type: command}
  am: {type: alertmanager}
strategies:
"""
STRATEGY = """\
  - name: fix
    matchers: ['alertname="X"']
    action: run
    executor: local
    target: x
    command: ['/bin/true']
"""


def strategy_with(approval: str, header: str = HEADER) -> str:
    return header + STRATEGY + f"    approval: {approval}\n"


@pytest.mark.parametrize(
    ("approval", "expected"),
    [
        ("{required: true, timeout: 15m, on_timeout: skip}", ApprovalSettings(True, 900.0, "skip")),
        ("{}", ApprovalSettings(True, 900.0, "skip")),  # the defaults
        ("{timeout: 30s, on_timeout: run}", ApprovalSettings(True, 30.0, "run")),
        ("{required: false}", None),
    ],
)
def test_approval_is_read_with_its_defaults(approval, expected):
    (strategy,) = parse_config(strategy_with(approval)).strategies
    assert strategy.approval == expected


def test_without_approval_nothing_waits_for_a_person():
    (strategy,) = parse_config(HEADER + STRATEGY).strategies
    assert strategy.approval is None


def test_runbook_steps_inherit_the_strategy_approval_and_may_opt_out():
    text = (
        HEADER
        + """\
  - name: rb
    matchers: ['alertname="Y"']
    target: x
    approval: {timeout: 1m}
    steps:
      - {action: run, executor: local, command: ['/bin/true']}
      - {action: run, executor: local, command: ['/bin/true'], approval: {required: false}}
      - {action: run, executor: local, command: ['/bin/true'], approval: {on_timeout: run}}
"""
    )
    (strategy,) = parse_config(text).strategies
    assert [s.approval for s in strategy.steps] == [
        ApprovalSettings(True, 60.0, "skip"),
        None,
        ApprovalSettings(True, 900.0, "run"),
    ]


@pytest.mark.parametrize(
    ("approval", "path", "message"),
    [
        ("{timeout: 0s}", "strategies[0].approval.timeout", "must be longer than 0s"),
        ("{on_timeout: later}", "strategies[0].approval.on_timeout", "expected skip or run"),
        ("{required: yes please}", "strategies[0].approval.required", "expected true or false"),
        ("{require: true}", "strategies[0].approval.require", "unknown key"),
        ("true", "strategies[0].approval", "expected a mapping"),
    ],
)
def test_bad_approval_is_a_clear_error_with_its_path(approval, path, message):
    with pytest.raises(ConfigError) as info:
        parse_config(strategy_with(approval))
    (problem,) = info.value.problems
    assert problem.path == path
    assert message in problem.message
    # the line of the `approval:` key: the strategy's last line
    assert problem.line == len(strategy_with(approval).splitlines())


def test_approval_needs_an_escalation_executor_to_announce_it():
    header = HEADER.replace("defaults: {escalation_executor: am}\n", "")
    with pytest.raises(ConfigError) as info:
        parse_config(strategy_with("{}", header))
    (problem,) = info.value.problems
    assert problem.path == "strategies[0].approval"
    assert "needs defaults.escalation_executor" in problem.message


def test_check_and_explain_show_the_approval():
    from receiver import cli

    text = (
        HEADER
        + STRATEGY
        + "    approval: {timeout: 30s, on_timeout: run}\n"
        + """\
  - name: rb
    matchers: ['alertname="Y"']
    target: x
    steps:
      - {action: run, executor: local, command: ['/bin/true']}
      - {name: last, action: run, executor: local, command: ['/bin/true'], approval: {}}
"""
    )
    config = parse_config(text)
    assert cli.approval_lines(config) == [
        "fix: approval required, waits up to 30s for a person, then run as if approved",
        "rb step 2 (last): approval required, waits up to 15m for a person, then skipped",
    ]
    fix = config.strategies[0]
    described = cli.gates(config, fix, "x")
    assert described[:2] == [
        "dry-run: no",
        "approval: waits up to 30s for a person, then run as if approved; announced as "
        "RemediationAwaitingApproval, decided by POST /api/v1/actions/<id>/approve or /deny",
    ]
    assert not any(g.startswith("approval") for g in cli.gates(config, config.strategies[1], "x"))
