"""The log executor: records what would happen, changes nothing."""

from __future__ import annotations

import logging

from receiver.config import Config, ExecutorConfig
from receiver.executors import LogExecutor, build_executors
from tests.support.actions import action_request


def test_logs_the_action_with_its_id_and_succeeds(caplog):
    config = Config(executors={"note": ExecutorConfig("note", "log")})
    executor = build_executors(config)["note"]
    assert isinstance(executor, LogExecutor)
    request = action_request(
        "restart",
        "web",
        action_id=7,
        strategy="restart-web",
        rendered={"params": {"grace": "10s"}},
    )
    with caplog.at_level(logging.INFO, logger="receiver.executors.log"):
        result = executor.execute(request)
    assert (result.ok, result.detail, result.timed_out) == (
        True,
        "logged only (no change made)",
        False,
    )
    [record] = caplog.records
    assert record.action_id == 7
    assert record.strategy == "restart-web"
    assert record.target == "web"
    assert "would restart web" in record.getMessage()
    assert "grace" in record.getMessage()


def test_accepts_every_action():
    executor = LogExecutor(ExecutorConfig("note", "log"), Config())
    for action in ("restart", "rollback", "scale", "run", "http", "escalate"):
        assert executor.execute(action_request(action, replicas=2)).ok


def test_an_escalation_is_logged_at_warning_with_its_reason_and_trail(caplog):
    """As defaults.escalation_executor (for trials), the log says what a person would be
    told: the reason and the runbook trail the dispatcher puts in the request's reason."""
    executor = LogExecutor(ExecutorConfig("note", "log"), Config())
    request = action_request(
        "escalate",
        "web",
        strategy="fix-web",
        reason="ended uncured: out of steps\nstep 1 (restart) at 2026-11-29 10:00:00Z: failed",
    )
    with caplog.at_level(logging.INFO, logger="receiver.executors.log"):
        result = executor.execute(request)
    assert (result.ok, result.detail) == (True, "logged only (no one was told)")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "would escalate web (strategy fix-web): ended uncured" in record.getMessage()
    assert "step 1 (restart)" in record.getMessage()
