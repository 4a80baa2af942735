"""The command executor running real subprocesses (the test's own Python as the program)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from receiver.config import Config, ExecutorConfig
from receiver.executors import CommandExecutor, build_executors
from tests.support.actions import action_request
from tests.support.supervisor import alive

pytestmark = pytest.mark.integration

PY = sys.executable


def executor(source: str = "", **settings) -> CommandExecutor:
    spec = ExecutorConfig("local", "command", settings)
    built = build_executors(Config(executors={"local": spec}, source=source))["local"]
    assert isinstance(built, CommandExecutor)
    return built


def run(code: str, *args: str, ex: CommandExecutor | None = None, params=None, **request):
    rendered = {"command": [PY, "-c", code, *args], "params": params or {}}
    return (ex or executor()).execute(action_request("run", rendered=rendered, **request))


def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise TimeoutError(f"{path} was not written")


# A child that starts a grandchild (which ignores SIGTERM, so only SIGKILL of the whole
# group gets rid of it), records the grandchild's pid, then sleeps.
SPAWNS_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
with open(sys.argv[1], "w") as f:
    f.write(str(grandchild.pid))
print("spawned", grandchild.pid, flush=True)
time.sleep(60)
"""


def test_success_captures_stdout_and_stderr():
    result = run("import sys; print('hello'); print('oops', file=sys.stderr)")
    assert (result.ok, result.detail, result.timed_out) == (True, "exit status 0", False)
    assert "hello" in result.output
    assert "oops" in result.output


def test_environment_is_minimal_plus_alert_data(monkeypatch):
    monkeypatch.setenv("REMEDIATOR_TEST_SECRET", "must-not-leak")
    result = run(
        "import json, os; print(json.dumps(dict(os.environ)))",
        ex=executor(env={"EXTRA_SETTING": "from-config"}),
        params={"mode": "fast"},
        action_id=42,
        target="db-1",
        strategy="clean-disk",
        labels={"alertname": "DiskFull", "instance": "db-1:9100", "mount.point-x": "/var"},
        annotations={"summary": "disk is full", "runbook_url": "http://wiki/disk"},
    )
    assert result.ok, result.detail
    env = json.loads(result.output)
    assert env["REMEDIATOR_ACTION_ID"] == "42"
    assert env["REMEDIATOR_ACTION"] == "run"
    assert env["REMEDIATOR_TARGET"] == "db-1"
    assert env["REMEDIATOR_STRATEGY"] == "clean-disk"
    assert env["ALERT_LABEL_ALERTNAME"] == "DiskFull"
    assert env["ALERT_LABEL_INSTANCE"] == "db-1:9100"
    assert env["ALERT_LABEL_MOUNT_POINT_X"] == "/var"
    assert env["ALERT_ANNOTATION_SUMMARY"] == "disk is full"
    assert env["ALERT_ANNOTATION_RUNBOOK_URL"] == "http://wiki/disk"
    assert env["REMEDIATOR_PARAM_MODE"] == "fast"
    assert env["EXTRA_SETTING"] == "from-config"
    assert env["PATH"]
    assert "REMEDIATOR_TEST_SECRET" not in env


def test_nonzero_exit_fails_with_status_and_output():
    result = run("import sys; print('no space left'); sys.exit(3)")
    assert (result.ok, result.detail) == (False, "exit status 3")
    assert "no space left" in result.output


def test_death_by_signal_is_named():
    result = run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert (result.ok, result.detail) == (False, "killed by signal SIGKILL")


def test_timeout_kills_the_whole_process_group(tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    result = run(SPAWNS_GRANDCHILD, str(pid_file), timeout=1.0)
    elapsed = time.monotonic() - started
    grandchild = int(wait_for_file(pid_file))
    try:
        assert (result.ok, result.timed_out) == (False, True)
        assert result.detail == "timed out after 1s (process group killed)"
        assert "spawned" in result.output
        assert elapsed < 4, f"took {elapsed:.1f}s"
        deadline = time.monotonic() + 2
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(grandchild), "grandchild survived the timeout"
    finally:
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_executor_timeout_setting_caps_the_action_timeout():
    result = run("import time; time.sleep(30)", ex=executor(timeout=0.3), timeout=30)
    assert result.timed_out
    assert result.detail == "timed out after 0.3s (process group killed)"


def test_background_child_holding_the_pipe_does_not_block(tmp_path: Path):
    """A restart script may leave a daemon behind; we return when the script exits."""
    pid_file = tmp_path / "daemon.pid"
    code = (
        "import subprocess, sys\n"
        "d = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "open(sys.argv[1], 'w').write(str(d.pid))\n"
        "print('started daemon')\n"
    )
    started = time.monotonic()
    result = run(code, str(pid_file), timeout=10)
    daemon = int(wait_for_file(pid_file))
    try:
        assert (result.ok, result.detail) == (True, "exit status 0")
        assert "started daemon" in result.output
        assert time.monotonic() - started < 3
        assert alive(daemon), "a daemon left by a successful command must not be killed"
    finally:
        os.kill(daemon, signal.SIGKILL)


def test_output_is_bounded_keeping_the_tail():
    code = "import sys; sys.stdout.write('x' * 100000 + 'THE-END')"
    result = run(code, ex=executor(max_output_bytes=1000))
    assert result.ok, result.detail
    assert result.output.endswith("THE-END")
    assert result.output.startswith("[... first 99007 bytes dropped, last 1000 kept]\n")
    assert len(result.output.split("\n", 1)[1]) == 1000


def test_missing_program():
    request = action_request("run", rendered={"command": ["/nonexistent/fix-it", "now"]})
    result = executor().execute(request)
    assert (result.ok, result.detail) == (False, "command not found: /nonexistent/fix-it")


def test_nul_bytes_are_refused_not_raised():
    result = run("print('never')", "bad\0arg")
    assert (result.ok, result.output) == (False, "")
    assert result.detail == "argument 3 contains a NUL byte; refusing to run"
    result = run("print('never')", labels={"service": "a\0b"})
    assert not result.ok
    assert result.detail == (
        "environment variable ALERT_LABEL_SERVICE contains a NUL byte; refusing to run"
    )


def test_shell_metacharacters_arrive_literally(tmp_path: Path):
    marker = tmp_path / "pwned"
    hostile = f"x; touch {marker} && echo $(id) `id` | cat > {marker} & rm -rf {tmp_path}/*"
    result = run(
        "import sys; print(repr(sys.argv[1]))",
        hostile,
        labels={"instance": hostile},
    )
    assert result.ok, result.detail
    assert result.output.strip() == repr(hostile)
    assert not marker.exists()


def test_cwd_is_relative_to_the_config_file(tmp_path: Path):
    (tmp_path / "scripts").mkdir()
    ex = executor(source=str(tmp_path / "remediation.yml"), cwd="scripts")
    result = run("import os; print(os.getcwd())", ex=ex)
    assert result.ok, result.detail
    assert result.output.strip() == str(tmp_path / "scripts")
    missing = executor(source=str(tmp_path / "remediation.yml"), cwd="gone")
    result = run("print(1)", ex=missing)
    assert (result.ok, result.detail) == (
        False,
        f"working directory does not exist: {tmp_path}/gone",
    )


def test_nothing_to_run_or_wrong_action_fails_without_raising():
    result = executor().execute(action_request("run", rendered={}))
    assert (result.ok, result.detail) == (False, "no command to run: the strategy rendered no argv")
    result = executor().execute(action_request("scale", rendered={"command": ["true"]}))
    assert (result.ok, result.detail) == (False, "command executor 'local' cannot scale")
