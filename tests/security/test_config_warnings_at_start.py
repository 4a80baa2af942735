"""Issue 13: what `check` warns about is logged when `serve` starts too, from one rule
(receiver.config.config_warnings): no strategies, no auth, a capped strategy timeout."""

from __future__ import annotations

from pathlib import Path

from tests.security.test_start_warning import start_output
from tests.support.receiver import AUTH_SERVER


def warnings_of(output: str) -> list[str]:
    return [
        line.split(" receiver.server: ", 1)[1]
        for line in output.splitlines()
        if "WARNING receiver.server: " in line
    ]


def test_an_empty_config_on_loopback_logs_no_strategies_and_no_auth(tmp_path: Path) -> None:
    found = warnings_of(start_output(tmp_path, "127.0.0.1", ""))
    assert [line.split(":")[0] for line in found] == [
        "no strategies",
        "server.auth is not set",
    ]
    assert "every alert is journaled as unmatched and nothing is remediated" in found[0]
    assert "set server.auth (bearer token or basic auth) before listening beyond" in found[1]


def test_a_capped_timeout_is_logged_at_start_naming_strategy_and_executor(
    tmp_path: Path,
) -> None:
    config = AUTH_SERVER + (
        "executors: {sh: {type: command, timeout: 5s}}\n"
        "strategies:\n"
        "  - {name: clean, matchers: [], action: run, executor: sh, target: t, command: [x],"
        " timeout: 1m}\n"
    )
    assert warnings_of(start_output(tmp_path, "127.0.0.1", config)) == [
        "strategy 'clean' asks for 1m (its timeout, or defaults.timeout) but executor 'sh' "
        "caps every action at 5s (executors.sh.timeout): the action is stopped after 5s; "
        "lower the strategy's timeout or raise the executor's"
    ]
