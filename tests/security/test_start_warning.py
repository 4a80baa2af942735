"""Issue 11, item 12: a server with no `server.auth` that listens beyond loopback says
so at start, on the real CLI's stderr; on loopback, or with auth, it says nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.processes import free_port, remediator_argv, running
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

STRATEGIES = LOG_RESTART
AUTH = AUTH_SERVER
WARNING = "WARNING receiver.server: no server.auth is configured and the server listens on"


def start_output(tmp_path: Path, host: str, config_text: str) -> str:
    """Start `remediator serve` on host, wait until it is ready, stop it: its stderr."""
    config = write_config(tmp_path, config_text)
    port = free_port()
    listen = f"{host}:{port}"
    argv = remediator_argv(config, listen, f"sqlite:///{tmp_path / 'journal.db'}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{port}"
    with running(argv, url, tmp_path / "serve.log", "/-/ready", cwd=tmp_path, env=env) as server:
        pass
    return server.output()


def test_no_auth_on_every_address_logs_a_warning_naming_the_risk(tmp_path: Path) -> None:
    output = start_output(tmp_path, "0.0.0.0", STRATEGIES)
    [line] = [line for line in output.splitlines() if WARNING in line]
    assert "listens on 0.0.0.0:" in line
    assert "anyone who can reach it can post alerts that start remediation" in line
    assert "set server.auth" in line


@pytest.mark.parametrize(
    ("host", "config_text"),
    [("127.0.0.1", STRATEGIES), ("localhost", STRATEGIES), ("0.0.0.0", AUTH + STRATEGIES)],
    ids=["loopback", "localhost", "with-auth"],
)
def test_loopback_or_auth_starts_without_the_warning(
    tmp_path: Path, host: str, config_text: str
) -> None:
    output = start_output(tmp_path, host, config_text)
    assert "remediator listening on" in output  # it did start and log
    assert "no server.auth" not in output
