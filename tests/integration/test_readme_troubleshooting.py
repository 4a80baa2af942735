"""Every command of the README's Troubleshooting section works as written.

A real `remediator serve` journals what the section explains: a failing command whose
breaker opens, a refused label value, an alert refused alone, alerts Alertmanager left
out, an unmatched alert, superseded occurrences and a timed-out command. Then each line
of the section's `sh` blocks is run as written (after the section's own `R=` and
`TOKEN_FILE=` settings; pipelines run stage by stage, never through a shell), in order:
each must exit 0, print something, and show what the text around it promises.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.payloads import alert, notification
from tests.support.processes import REPO, binary, remediator
from tests.support.receiver import TOKEN, write_config

pytestmark = pytest.mark.integration

CONFIG = """server:
  auth: {{bearer_token_file: token}}
defaults:
  cooldown: 0s
executors:
  local: {{type: command, timeout: 10s}}
strategies:
  - name: clean-tmp
    matchers: ['alertname="DiskFilling"', 'instance=~".+"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: ['{ls}', '/nonexistent/{{{{ labels.instance }}}}']
    breaker: {{failure_threshold: 2, recovery_timeout: 10m}}
  - name: slow-fix
    matchers: ['alertname="DiskSlow"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: ['{sleep}', '30']
    timeout: 1s
"""

#: What each command (found by a piece of it) must show, as the README says it does.
SHOWS = {
    "api/v1/notifications": ['"truncated_alerts": 2'],
    "incidents?alertname=DiskFilling": ['"matched": true', '"instance": "web-1"'],
    "remediator explain": ["strategy 'clean-tmp'", "gates (in order)"],
    "incident_id=4": ["refused: interpolated value 'web-2;reboot'"],
    "status=skipped": ["breaker_open: clean-tmp on web-1 is open", "refused: "],
    "status=resolved": ["superseded by the occurrence starting"],
    "status=failed": ["exit status 2", "No such file or directory"],
    "status=timed_out": ['"status": "timed_out"'],
    'api/v1/breakers" | jq': ['"state": "open"'],
    "remediator_breaker_state": ["1.0"],
    "/reset": ['"state":"closed"'],
    "api/v1/status": ['"config_sha256"', '"clean-tmp"'],
}


def section(readme: str, title: str) -> str:
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def sh_lines(text: str) -> list[str]:
    """The lines of every ```sh block of `text`, in order."""
    blocks = re.findall(r"^ *```sh\n(.*?)^ *```", text, re.S | re.M)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def stages(line: str, variables: dict[str, str]) -> list[list[str]]:
    """Split a pipeline into argv lists, expanding $(cat "$X") and $X as sh would here."""
    for name, value in variables.items():
        if f'$(cat "${name}")' in line:
            line = line.replace(f'$(cat "${name}")', Path(value).read_text().strip())
        line = line.replace(f"${name}", value)
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    argvs: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            argvs.append([])
        else:
            argvs[-1].append(token)
    return argvs


def run_pipeline(argvs: list[list[str]]) -> tuple[list[int], str]:
    """Run the stages connected by pipes; return each exit status and the last output."""
    processes: list[subprocess.Popen[bytes]] = []
    for argv in argvs:
        stdin = processes[-1].stdout if processes else subprocess.DEVNULL
        processes.append(subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, cwd=REPO))
    for process in processes[:-1]:
        assert process.stdout is not None
        process.stdout.close()  # the next stage owns it now
    out, _ = processes[-1].communicate(timeout=60)
    return [process.wait(timeout=60) for process in processes], out.decode()


def post(url: str, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = requests.post(f"{url}/webhook", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(url: str, path: str, params: dict, count: int) -> None:
    deadline = time.monotonic() + 30
    while requests.get(f"{url}{path}", params=params, timeout=5).json()["total"] < count:
        assert time.monotonic() < deadline, f"{path} {params}: fewer than {count}"
        time.sleep(0.2)


def journal_the_cases(url: str) -> None:
    """Incidents 1-3: DiskFilling on web-1 three times (failed, failed, breaker open);
    4: a refused label value; 5: unmatched; an alert refused alone, 2 left out; 6: a
    command that times out."""
    for minute in range(3):
        starts = f"2026-11-29T18:0{minute}:00Z"
        post(url, notification(alert("DiskFilling", instance="web-1", starts_at=starts)))
        wait_for(url, "/api/v1/actions", {"status": "planned"}, 0)
        wait_for(url, "/api/v1/actions", {}, minute + 1)
        time.sleep(0.5)  # the action's outcome before the next occurrence
    mixed = notification(
        alert("DiskFilling", instance="web-2;reboot"),
        alert("DiskFull", instance="web-3"),
        alert("DiskFilling", instance="web-4", starts_at="yesterday"),
        group_key='{}:{alertname="Mixed"}',
    )
    answer = post(url, {**mixed, "truncatedAlerts": 2})
    assert answer["refused"] == 1 and answer["truncated_alerts"] == 2, answer
    assert answer["rejected"][0]["field"] == "alerts[2].startsAt", answer
    post(url, notification(alert("DiskSlow", instance="web-5")))
    wait_for(url, "/api/v1/actions", {"status": "failed"}, 2)
    wait_for(url, "/api/v1/actions", {"status": "timed_out"}, 1)


def test_every_troubleshooting_command_works_as_written(tmp_path):
    text = section((REPO / "README.md").read_text(), "Troubleshooting")
    lines = sh_lines(text)
    settings = dict(line.split("=", 1) for line in lines if re.fullmatch(r"[A-Z_]+=\S+", line))
    assert set(settings) == {"R", "TOKEN_FILE"}, settings
    commands = [line for line in lines if not re.fullmatch(r"[A-Z_]+=\S+", line)]
    for tool in ("jq", "curl", "grep"):
        binary(tool)  # a clear error when one is missing
    config = CONFIG.format(ls=shutil.which("ls"), sleep=shutil.which("sleep"))
    with remediator(tmp_path, write_config(tmp_path, config), "sqlite:///journal.db") as server:
        journal_the_cases(server.url)
        variables = {"TOKEN_FILE": str(tmp_path / "token"), "R": server.url}
        shown = set()
        for command in commands:
            statuses, out = run_pipeline(stages(command, variables))
            assert statuses == [0] * len(statuses), f"{command}\n{statuses}\n{out}"
            assert out.strip(), f"no output: {command}"
            for piece, wanted in SHOWS.items():
                if piece in command:
                    shown.add(piece)
                    for want in wanted:
                        assert want in out, f"{command}\nwants {want!r}\n{out}"
        assert shown == set(SHOWS), set(SHOWS) - shown


def test_stages_split_pipes_but_not_quoted_ones(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0k\n")
    line = """curl -H "Authorization: Bearer $(cat "$TOKEN_FILE")" "$R/x" | jq '.a | {b}'"""
    assert stages(line, {"TOKEN_FILE": str(token), "R": "http://h"}) == [
        ["curl", "-H", "Authorization: Bearer t0k", "http://h/x"],
        ["jq", ".a | {b}"],
    ]
