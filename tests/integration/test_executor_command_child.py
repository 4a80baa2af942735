"""What a program started by the command executor finds: its own session, stdin from
/dev/null, Python's ignored signals back at their defaults, no descriptor of ours. Real
programs (the test's own Python) report from inside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from receiver.config import Config, ExecutorConfig
from receiver.executors import CommandExecutor, build_executors
from tests.support.actions import action_request

pytestmark = pytest.mark.integration

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]


def executor() -> CommandExecutor:
    built = build_executors(Config(executors={"local": ExecutorConfig("local", "command", {})}))
    assert isinstance(built["local"], CommandExecutor)
    return built["local"]


def seen(code: str) -> object:
    """What the program printed, as JSON."""
    rendered = {"command": [PY, "-c", code], "params": {}}
    result = executor().execute(action_request("run", rendered=rendered))
    assert result.ok, result
    return json.loads(result.output)


def test_the_program_leads_its_own_session_and_process_group() -> None:
    sid, pgid, pid = seen(
        "import json, os; print(json.dumps([os.getsid(0), os.getpgid(0), os.getpid()]))"
    )  # type: ignore[misc]
    assert sid == pgid == pid != os.getpgid(0)


def test_stdin_is_dev_null() -> None:
    assert seen("import json, os; print(json.dumps(os.readlink('/proc/self/fd/0')))") == "/dev/null"


def test_signals_python_ignores_are_back_at_their_default() -> None:
    """`cat`, not Python: Python ignores SIGPIPE again as it starts."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # so the test can fail
    rendered = {"command": ["cat", "/proc/self/status"], "params": {}}
    result = executor().execute(action_request("run", rendered=rendered))
    assert result.ok, result
    line = next(x for x in result.output.splitlines() if x.startswith("SigIgn:"))
    ignored = int(line[7:], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


def test_no_descriptor_of_the_executors_process_reaches_the_program(tmp_path: Path) -> None:
    """In a fresh process holding an inheritable descriptor (as one a parent passed
    down) and one Python opened: the program sees neither."""
    script = textwrap.dedent(
        f"""
        import json, os, sys
        from receiver.config import Config, ExecutorConfig
        from receiver.executors import build_executors
        from tests.support.actions import action_request
        given = os.open({str(tmp_path / "given")!r}, os.O_CREAT | os.O_RDWR)
        os.dup2(given, 77)  # inheritable, as a parent's would be
        assert os.get_inheritable(77)
        own = os.open({str(tmp_path / "own")!r}, os.O_CREAT | os.O_RDWR)
        spec = ExecutorConfig("local", "command", {{}})
        ex = build_executors(Config(executors={{"local": spec}}))["local"]
        code = "import json, os; print(json.dumps(sorted(map(int, os.listdir('/proc/self/fd')))))"
        rendered = {{"command": [sys.executable, "-c", code], "params": {{}}}}
        result = ex.execute(action_request("run", rendered=rendered))
        print(json.dumps([own, json.loads(result.output)]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [PY, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=True
    )
    own, fds = json.loads(out.stdout)
    assert 77 not in fds and own not in fds
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4  # the listing's own descriptor at most
