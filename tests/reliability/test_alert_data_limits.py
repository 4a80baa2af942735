"""Alert data is not a remediation failure (issue 11, item 8 of "Bounded everything": 11).

A real `remediator serve` runs a real command. Three alerts each carry ~3.2 MB of
annotations, which exec used to refuse (`Argument list too long`) and which opened the
breaker: now the command runs with a bounded environment (each value cut to
`limits.command_env_value_bytes` with a marker, all of it within
`limits.command_env_bytes`, REMEDIATOR_ENV_TRUNCATED naming what was cut), the actions
succeed and the breaker stays closed. A strategy whose rendered argv is too large for
exec ends each action skipped "refused: ..." and its breaker stays closed too.
"""

from __future__ import annotations

from pathlib import Path

import requests

from receiver.executors.command import TRUNCATED_VARIABLE, truncation_marker
from tests.support.journal import open_journal, post_webhook, settle
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import write_config

VALUE_BYTES = 4096  # the defaults of limits.command_env_value_bytes / command_env_bytes
TOTAL_BYTES = 65536
NOTES = 200  # annotations of 16,000 bytes (the payload's bound per value is 16,384):
NOTE_BYTES = 16_000  # 3.2 MB in all, per alert
#: One argument built from 9 annotations of 16,000 bytes: past the kernel's 128 KiB bound
#: on one string (MAX_ARG_STRLEN), so exec fails with E2BIG.
PARTS = 9
ONE_ARGUMENT = "".join(f"{{{{ annotations.part{i} }}}}" for i in range(PARTS))

DUMP_ENV = """#!/bin/sh
# dump-env.sh DIR: the environment this command was given, one file per action
env > "$1/env-$REMEDIATOR_ACTION_ID"
"""


def config_text(dump: Path, out: Path) -> str:
    return f"""
server:
  auth: {{bearer_token_file: token}}
  max_body_bytes: 8388608
defaults:
  cooldown: 0s
  breaker: {{failure_threshold: 3, recovery_timeout: 10m}}
executors:
  local: {{type: command}}
strategies:
  - name: dump-env
    matchers: ['alertname="BigAnnotations"']
    action: run
    executor: local
    target: big
    command: ['/bin/sh', '{dump}', '{out}']
    timeout: 20s
  - name: huge-argv
    matchers: ['alertname="HugeArgument"']
    action: run
    executor: local
    target: argv
    safe_pattern: '[a-z]+'
    command: ['/bin/echo', '{ONE_ARGUMENT}']
    timeout: 20s
"""


def big_alert(number: int) -> dict:
    body = alert("BigAnnotations", starts_at=f"2026-05-01T00:00:0{number}Z", n=str(number))
    body["annotations"] = {f"note_{i:03d}": str(number) * NOTE_BYTES for i in range(NOTES)}
    return body


def argv_alert(number: int) -> dict:
    body = alert("HugeArgument", starts_at=f"2026-05-01T00:00:0{number}Z", n=str(number))
    body["annotations"] = {f"part{i}": "b" * NOTE_BYTES for i in range(PARTS)}
    return body


def read_env(path: Path) -> dict[str, str]:
    """`env` output: NAME=value per line (no value here holds a newline)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return dict(pairs)


def breakers(url: str) -> dict[str, str]:
    data = requests.get(f"{url}/api/v1/breakers", timeout=10).json()["data"]
    return {item["key"]: item["state"] for item in data}


def test_megabytes_of_annotations_run_with_a_bounded_environment(tmp_path: Path) -> None:
    dump = tmp_path / "dump-env.sh"
    dump.write_text(DUMP_ENV)
    out = tmp_path / "envs"
    out.mkdir()
    config = write_config(tmp_path, config_text(dump, out))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        for number in range(3):
            body = notification(big_alert(number), group_key=f"{{}}:{{n={number}}}")
            assert len(str(body)) > 3_100_000
            response = post_webhook(server.url, body, timeout=60)
            assert response.status_code == 200, response.text
        actions = settle(open_journal(store), expected=3, timeout=60)
        states = breakers(server.url)

    assert [a["status"] for a in actions] == ["succeeded"] * 3, actions
    assert states == {"dump-env/big": "closed"}
    marker = truncation_marker(NOTE_BYTES)
    expected = [f"ALERT_ANNOTATION_NOTE_{i:03d}" for i in range(NOTES)]
    every_name = ",".join(expected)  # all cut: the kept ones truncated, the rest left out
    for action in actions:
        env = read_env(out / f"env-{action['id']}")
        number = env["ALERT_LABEL_N"]
        alert_env = {k: v for k, v in env.items() if k.startswith(("ALERT_", "REMEDIATOR_"))}
        assert sum(len(k) + len(v) + 2 for k, v in alert_env.items()) <= TOTAL_BYTES
        notes = sorted(k for k in env if k.startswith("ALERT_ANNOTATION_NOTE_"))
        assert notes == expected[: len(notes)]  # kept in order while they fit
        assert TOTAL_BYTES // (2 * VALUE_BYTES) < len(notes) < TOTAL_BYTES // VALUE_BYTES
        for name in notes:
            assert env[name] == number * (VALUE_BYTES - len(marker)) + marker
        listed = env[TRUNCATED_VARIABLE]
        assert len(listed) <= VALUE_BYTES
        assert listed.endswith(truncation_marker(len(every_name)))
        assert every_name.startswith(listed[: -len(truncation_marker(len(every_name)))])
        assert env["REMEDIATOR_ACTION_ID"] == str(action["id"])
        assert env["ALERT_LABEL_ALERTNAME"] == "BigAnnotations"


def test_an_argv_too_large_for_exec_is_refused_and_not_counted(tmp_path: Path) -> None:
    dump = tmp_path / "dump-env.sh"
    dump.write_text(DUMP_ENV)
    config = write_config(tmp_path, config_text(dump, tmp_path))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        for number in range(4):  # one more than failure_threshold
            body = notification(argv_alert(number), group_key=f"{{}}:{{n={number}}}")
            response = post_webhook(server.url, body, timeout=30)
            assert response.status_code == 200, response.text
        actions = settle(open_journal(store), expected=4, timeout=60)
        states = breakers(server.url)

    refused = "refused: cannot start /bin/echo: argument list too long for exec"
    for action in actions:
        assert action["status"] == "skipped", action
        assert action["reason"].startswith(refused), action["reason"]
    assert states.get("huge-argv/argv", "closed") == "closed"
