"""A reload's `restart_required` (issue 13): the restart-only keys whose value in the
file differs from what the running server uses, i.e. the config it started with. The
same unapplied change reloaded twice is listed both times; reverting it lists nothing.

Through the real `remediator serve` (gunicorn, journal writer) and POST /-/reload, and
for every restart-only key through AppState.reload on a real config file and journal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from receiver.app import RESTART_KEYS, AppState
from receiver.config import load_config
from receiver.store import open_store
from tests.support.journal import bearer
from tests.support.processes import remediator
from tests.support.receiver import LOG_RESTART, write_config


def config_text(threads: int, read_timeout: str) -> str:
    return (
        "server:\n"
        "  auth: {bearer_token_file: token}\n"
        f"  threads: {threads}\n"
        f"limits: {{read_timeout: {read_timeout}}}\n" + LOG_RESTART
    )


STARTED = config_text(4, "10s")


def reload(url: str) -> list[str]:
    response = requests.post(f"{url}/-/reload", headers=bearer(), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "reloaded"
    return response.json()["restart_required"]


def test_restart_required_is_judged_against_the_config_the_server_started_with(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, STARTED)
    with remediator(tmp_path, config, f"sqlite:///{tmp_path / 'journal.db'}") as server:
        config.write_text(config_text(8, "10s"))
        assert reload(server.url) == ["server.threads"]
        assert reload(server.url) == ["server.threads"]  # still not applied: said again

        config.write_text(config_text(8, "20s"))
        assert reload(server.url) == ["server.threads", "limits.read_timeout"]

        config.write_text(STARTED)  # back to what runs: nothing needs a restart
        assert reload(server.url) == []
        assert reload(server.url) == []
        output = server.output()
    warnings = [line for line in output.splitlines() if "need a restart to apply" in line]
    assert len(warnings) == 3, output
    assert all("WARNING" in line and "server.threads" in line for line in warnings)


#: Each restart-only key, as the started config has it and as changed in the file.
BEFORE_AFTER = {
    "store": ("store: sqlite:///a.db", "store: sqlite:///b.db"),
    "server.listen": ("server: {listen: 127.0.0.1:9095}", "server: {listen: 127.0.0.1:9096}"),
    "server.threads": ("server: {threads: 4}", "server: {threads: 8}"),
    "limits.read_timeout": ("limits: {read_timeout: 10s}", "limits: {read_timeout: 20s}"),
    "limits.max_connections": ("limits: {max_connections: 100}", "limits: {max_connections: 200}"),
    "limits.max_connections_per_peer": (
        "limits: {max_connections_per_peer: 8}",
        "limits: {max_connections_per_peer: 16}",
    ),
}


def test_every_restart_key_has_a_case() -> None:
    assert set(BEFORE_AFTER) == set(RESTART_KEYS)


@pytest.mark.parametrize("key", sorted(BEFORE_AFTER))
def test_each_restart_key_is_listed_until_reverted(tmp_path: Path, key: str) -> None:
    before, after = BEFORE_AFTER[key]
    path = tmp_path / "remediation.yml"
    path.write_text(before + "\n" + LOG_RESTART)
    store = open_store(f"sqlite:///{tmp_path / 'journal.db'}")
    state = AppState(load_config(str(path)), store, config_path=str(path))
    try:
        path.write_text(after + "\n" + LOG_RESTART)
        assert state.reload()["restart_required"] == [key]
        assert state.reload()["restart_required"] == [key]
        path.write_text(before + "\n" + LOG_RESTART)
        assert state.reload()["restart_required"] == []
    finally:
        store.close()
