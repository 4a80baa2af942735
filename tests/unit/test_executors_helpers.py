"""Pure pieces of the executors: naming, bounding, building, the escalation alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from receiver.config import EXECUTOR_ACTIONS, EXECUTOR_TYPES, Config, ExecutorConfig
from receiver.executors import (
    EXECUTOR_CLASSES,
    ExecutorError,
    LogExecutor,
    build_each,
    build_executors,
    check_executors,
)
from receiver.executors.alertmanager import escalation_alert
from receiver.executors.base import effective_timeout, excerpt, seconds
from receiver.executors.command import OutputTail, env_name
from receiver.executors.http import connection_reason, shown_url


def test_every_configurable_type_has_an_executor_with_the_same_actions():
    assert set(EXECUTOR_CLASSES) == set(EXECUTOR_TYPES)
    for name, cls in EXECUTOR_CLASSES.items():
        assert cls.actions == EXECUTOR_ACTIONS[name], name


def test_build_executors_names_the_broken_one():
    config = Config(executors={"x": ExecutorConfig("x", "telepathy")})
    with pytest.raises(ExecutorError, match="executor 'x': unsupported type 'telepathy'"):
        build_executors(config)
    ok = Config(executors={"a": ExecutorConfig("a", "log")})
    assert isinstance(build_executors(ok)["a"], LogExecutor)


def test_build_each_keeps_the_usable_executors_and_says_why_the_others_are_not(tmp_path):
    missing = tmp_path / "missing-token"
    config = Config(
        executors={
            "audit": ExecutorConfig("audit", "log"),
            "api": ExecutorConfig("api", "http", {"header_files": {"Authorization": str(missing)}}),
        }
    )
    built = build_each(config)
    assert list(built.executors) == ["audit"]
    assert built.errors == {
        "api": f"executor 'api': cannot read header Authorization from {missing}: "
        "No such file or directory"
    }
    (problem,) = check_executors(config, full=True)
    assert problem.path == "executors.api.header_files.Authorization"
    assert problem.message == built.errors["api"].removeprefix("executor 'api': ")


def test_replicas_is_unsupported_by_default():
    executor = EXECUTOR_CLASSES["command"](ExecutorConfig("a", "command"), Config())
    with pytest.raises(ExecutorError, match="command executor cannot report replicas"):
        executor.replicas("web")


def test_a_log_executor_reports_replicas_only_when_configured():
    with pytest.raises(ExecutorError, match="log executor 'a' cannot report replicas"):
        LogExecutor(ExecutorConfig("a", "log"), Config()).replicas("web")
    configured = ExecutorConfig("a", "log", {"current_replicas": 4})
    assert LogExecutor(configured, Config()).replicas("web") == 4


@pytest.mark.parametrize(
    ("name", "expected"),
    [("service", "SERVICE"), ("mount.point-x", "MOUNT_POINT_X"), ("a b/c", "A_B_C")],
)
def test_env_name(name, expected):
    assert env_name(name) == expected


def test_output_tail_keeps_the_last_bytes():
    tail = OutputTail(5)
    tail.add(b"abc")
    assert tail.text() == "abc"
    tail.add(b"defgh")
    assert tail.data == bytearray(b"defgh")
    assert tail.text() == "[... first 3 bytes dropped, last 5 kept]\ndefgh"


def test_excerpt_and_seconds():
    assert excerpt(b"hello", 10) == "hello"
    assert excerpt(b"hello world", 5) == "hello\n[... cut after the first 5 bytes]"
    assert (seconds(5), seconds(0.25), seconds(60)) == ("5s", "0.25s", "60s")


def test_effective_timeout_is_the_shorter_limit():
    assert effective_timeout(30, None) == 30
    assert effective_timeout(30, 5) == 5
    assert effective_timeout(0, None) == 60


def test_shown_url_hides_credentials_and_query():
    assert shown_url("https://u:p@host:8443/a/b?token=x") == "https://host:8443/a/b"


def test_connection_reason_extracts_the_os_error():
    text = (
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: / "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: "
        "Failed to establish a new connection: [Errno 111] Connection refused'))"
    )
    assert connection_reason(Exception(text)) == "Connection refused"


def test_escalation_alert_drops_the_routing_label_and_empty_values():
    alert = escalation_alert(
        {"alertname": "Down", "remediation": "auto", "job": "", "service": "web"},
        {},
        "",
        "restart",
        "web",
        now=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    assert alert == {
        "labels": {
            "alertname": "RemediationFailed",
            "service": "web",
            "original_alertname": "Down",
            "remediation_strategy": "restart",
            "remediation_target": "web",
        },
        "annotations": {
            "summary": "Remediation failed for Down on web",
            "reason": "remediation failed",
        },
        "startsAt": "2024-05-01T12:00:00.000Z",
    }


def test_env_name_memo_stays_bounded():
    # label names come from senders: the memo of mapped names must not grow without end
    from receiver.executors import command

    for number in range(command._ENV_NAMES_MAX + 10):
        assert env_name(f"label.{number}") == f"LABEL_{number}"
    assert len(command._ENV_NAMES) <= command._ENV_NAMES_MAX


def test_process_identity_is_journaled_with_every_field_and_read_back_whole():
    import dataclasses

    from receiver.executors.processes import ProcessIdentity

    identity = ProcessIdentity("host-a", "boot-1", 4242, 987654, 1700000000.25)
    data = identity.to_dict()
    assert data == {f.name: getattr(identity, f.name) for f in dataclasses.fields(identity)}
    assert ProcessIdentity.from_dict(json.loads(json.dumps(data))) == identity
