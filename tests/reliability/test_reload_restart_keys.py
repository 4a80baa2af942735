"""A reload's `restart_required` (issue 13): the restart-only keys whose value in the
file differs from what the running server uses, i.e. the config it started with. The
same unapplied change reloaded twice is listed both times; reverting it lists nothing.

Through the real `remediator serve` (gunicorn, journal writer) and POST /-/reload.
"""

from __future__ import annotations

from pathlib import Path

import requests

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
