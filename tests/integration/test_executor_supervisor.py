"""The supervisor executor against a real supervisord (XML-RPC over a loopback port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.config import Config, ExecutorConfig
from receiver.executors import ExecutorError, SupervisorExecutor, build_executors
from tests.support.actions import action_request
from tests.support.processes import free_port
from tests.support.supervisor import Supervisord, program, supervisord

pytestmark = pytest.mark.integration

PROGRAMS = program("web", numprocs=3) + program(
    "broken", numprocs=1, command="/bin/false", autostart=False, startretries=0
)


def executor_for(url: str, **settings) -> SupervisorExecutor:
    config = Config(
        executors={"procs": ExecutorConfig("procs", "supervisor", {"url": url, **settings})}
    )
    executor = build_executors(config)["procs"]
    assert isinstance(executor, SupervisorExecutor)
    return executor


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Supervisord]:
    with supervisord(tmp_path_factory.mktemp("supervisord"), PROGRAMS, wait_for=("web",)) as sv:
        yield sv


@pytest.fixture
def sv(daemon: Supervisord) -> Supervisord:
    """The shared supervisord with all three `web` processes running again."""
    daemon.start_all("web")
    return daemon


@pytest.fixture
def procs(sv: Supervisord) -> SupervisorExecutor:
    return executor_for(sv.url, timeout=5.0)


def test_restart_group_changes_every_pid(sv, procs):
    before = sv.pids("web")
    result = procs.execute(action_request("restart", "web"))
    assert result.ok, result.detail
    after = sv.pids("web")
    assert sv.running("web") == sorted(before)
    assert all(after[spec] != before[spec] for spec in before)
    assert result.detail.startswith("restarted web:web_00, web:web_01, web:web_02 (pids ")
    assert ",".join(map(str, after.values())) in result.detail


def test_restart_one_process_changes_only_its_pid(sv, procs):
    before = sv.pids("web")
    result = procs.execute(action_request("restart", "web:web_01"))
    assert result.ok, result.detail
    after = sv.pids("web")
    assert after["web:web_01"] != before["web:web_01"]
    assert after["web:web_00"] == before["web:web_00"]
    assert after["web:web_02"] == before["web:web_02"]
    assert result.detail == (
        f"restarted web:web_01 (pids {before['web:web_01']} -> {after['web:web_01']})"
    )


def test_scale_down_then_up(sv, procs):
    result = procs.execute(action_request("scale", "web", replicas=1))
    assert result.ok, result.detail
    assert sv.running("web") == ["web:web_00"]
    assert procs.replicas("web") == 1
    assert "from 3 to 1" in result.detail

    result = procs.execute(action_request("scale", "web", replicas=2))
    assert result.ok, result.detail
    assert sv.running("web") == ["web:web_00", "web:web_01"]
    assert procs.replicas("web") == 2
    assert "started web:web_01" in result.detail


def test_group_restart_keeps_scaled_down_processes_stopped(sv, procs):
    assert procs.execute(action_request("scale", "web", replicas=2)).ok
    result = procs.execute(action_request("restart", "web"))
    assert result.ok, result.detail
    assert sv.running("web") == ["web:web_00", "web:web_01"]
    assert sv.states("web")["web:web_02"] == "STOPPED"


def test_scale_beyond_configured_processes_fails(sv, procs):
    result = procs.execute(action_request("scale", "web", replicas=5))
    assert not result.ok
    assert result.detail == "group web has only 3 processes configured"
    assert len(sv.running("web")) == 3


def test_unknown_group_and_process_fail_clearly(sv, procs):
    result = procs.execute(action_request("restart", "nosuch"))
    assert (result.ok, result.detail) == (False, "no such process group nosuch")
    result = procs.execute(action_request("scale", "nosuch", replicas=1))
    assert (result.ok, result.detail) == (False, "no such process group nosuch")
    result = procs.execute(action_request("restart", "web:web_09"))
    assert (result.ok, result.detail) == (False, "no such process web:web_09")
    with pytest.raises(ExecutorError, match="no such process group nosuch"):
        procs.replicas("nosuch")


def test_process_that_cannot_start_fails_with_its_state(sv, procs):
    result = procs.execute(action_request("restart", "broken"))
    assert not result.ok
    assert result.detail == "broken:broken failed to start (FATAL)"


def test_start_slower_than_the_timeout_is_timed_out(sv, procs):
    result = procs.execute(action_request("restart", "web:web_02", timeout=0.3))
    assert not result.ok
    assert result.timed_out
    assert "timed out waiting for processes to start: web:web_02 is STARTING" in result.detail


def test_unsupported_action_is_refused_without_raising(sv, procs):
    result = procs.execute(action_request("rollback", "web"))
    assert (result.ok, result.detail) == (False, "supervisor executor 'procs' cannot rollback")


def test_basic_auth(tmp_path: Path):
    (tmp_path / "password").write_text("hunter2\n")
    with supervisord(
        tmp_path / "sv", program("api", numprocs=2), username="ops", password="hunter2"
    ) as sv:
        config = Config(
            executors={
                "procs": ExecutorConfig(
                    "procs",
                    "supervisor",
                    {"url": sv.url, "username": "ops", "password_file": "password"},
                )
            },
            source=str(tmp_path / "remediation.yml"),
        )
        assert build_executors(config)["procs"].replicas("api") == 2
        anonymous = executor_for(sv.url)
        result = anonymous.execute(action_request("restart", "api"))
        assert not result.ok
        assert result.detail == f"supervisord at {sv.url} answered HTTP 401 Unauthorized"


def test_missing_password_file_is_a_build_error(tmp_path: Path):
    with pytest.raises(ExecutorError, match=r"executor 'procs': cannot read supervisord password"):
        executor_for(
            "http://127.0.0.1:9001/RPC2", username="ops", password_file=str(tmp_path / "nope")
        )


def test_supervisord_down_is_a_clear_connection_failure(tmp_path: Path):
    with supervisord(tmp_path / "sv", program("api", numprocs=1)) as sv:
        procs = executor_for(sv.url)
        assert procs.replicas("api") == 1
        sv.shutdown()
        result = procs.execute(action_request("restart", "api"))
    assert not result.ok
    assert result.detail == f"cannot reach supervisord at {sv.url}: Connection refused"
    with pytest.raises(ExecutorError, match="cannot reach supervisord"):
        procs.replicas("api")


def test_nothing_listening_at_all():
    url = f"http://127.0.0.1:{free_port()}/RPC2"
    result = executor_for(url).execute(action_request("scale", "web", replicas=1))
    assert (result.ok, result.detail) == (
        False,
        f"cannot reach supervisord at {url}: Connection refused",
    )
