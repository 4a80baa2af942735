"""posix_spawn gives a command what Popen gave it: real programs started, looked at.

Each test starts real processes (the test's own Python, coreutils) with
receiver.executors.spawn and reads what the child saw from inside it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from receiver.executors.spawn import Child, spawn

pytestmark = pytest.mark.integration

PY = sys.executable
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def output_of(child: Child) -> str:
    data = b""
    while chunk := child.stdout.read(65536):
        data += chunk
    child.stdout.close()
    child.wait()
    return data.decode()


def python(code: str, env: dict[str, str] | None = None) -> str:
    return output_of(spawn([PY, "-c", code], env or ENV))


def test_argv_reaches_the_program_verbatim_never_through_a_shell() -> None:
    hostile = ["; rm -rf /", "$(id)", "`id`", "a b", "*"]
    child = spawn([PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *hostile], ENV)
    assert json.loads(output_of(child)) == hostile


def test_the_child_leads_its_own_session_and_process_group() -> None:
    child = spawn([PY, "-c", "import os; print(os.getsid(0), os.getpgid(0), os.getpid())"], ENV)
    sid, pgid, pid = map(int, output_of(child).split())
    assert sid == pgid == pid == child.pid
    assert child.pid != os.getpgid(0)


def test_stdin_is_dev_null_and_stdout_and_stderr_share_one_pipe() -> None:
    code = "import os, sys; print(os.readlink('/proc/self/fd/0'), flush=True); " + (
        "print('to stderr', file=sys.stderr, flush=True); print(repr(sys.stdin.read()))"
    )
    assert python(code).splitlines() == ["/dev/null", "to stderr", "''"]


def test_the_environment_is_exactly_the_one_given() -> None:
    env = {"PATH": ENV["PATH"], "REMEDIATOR_TARGET": "web-1"}
    shown = python("import json, os; print(json.dumps(sorted(os.environ)))", env)
    # LC_CTYPE: Python's own UTF-8 coercion at its start, not the parent's environment
    assert set(json.loads(shown)) - {"LC_CTYPE"} == set(env)


def test_signals_python_ignores_are_back_at_their_default_in_the_child() -> None:
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # so the test can fail
    status = output_of(spawn(["cat", "/proc/self/status"], ENV))
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:"))[7:], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


def test_a_descriptor_inherited_inheritable_is_not_passed_on(tmp_path: Path) -> None:
    """In a fresh process (the sealing is once per process): a descriptor it was given
    inheritable, and one Python opened itself, reach no program it spawns."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from receiver.executors.spawn import spawn
        inherited = os.open({str(tmp_path / "given")!r}, os.O_CREAT | os.O_RDWR)
        os.dup2(inherited, 77)  # dup2 makes 77 inheritable, as a parent's would be
        assert os.get_inheritable(77)
        own = os.open({str(tmp_path / "own")!r}, os.O_CREAT | os.O_RDWR)
        code = "import json, os; print(json.dumps(sorted(map(int, os.listdir('/proc/self/fd')))))"
        child = spawn([sys.executable, "-c", code], {{"PATH": "/usr/bin:/bin"}})
        data = child.stdout.read()
        child.wait()
        print(own, data.decode().strip())
        """
    )
    result = subprocess.run(
        [PY, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=True,
    )
    own, seen = result.stdout.split(" ", 1)
    fds = json.loads(seen)
    assert 77 not in fds and int(own) not in fds
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4  # the listing's own descriptor at most


def test_a_bare_name_is_looked_up_in_the_childs_path(tmp_path: Path) -> None:
    program = tmp_path / "remediator-probe"
    program.write_text(f"#!{PY}\nprint('found')\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{tmp_path / 'missing'}:{tmp_path}"}
    assert output_of(spawn(["remediator-probe"], env)).strip() == "found"
    with pytest.raises(FileNotFoundError):
        spawn(["remediator-probe"], {"PATH": "/usr/bin:/bin"})


def test_a_file_that_is_not_executable_is_permission_denied(tmp_path: Path) -> None:
    program = tmp_path / "not-executable"
    program.write_text("print('never')\n")
    with pytest.raises(PermissionError):
        spawn([str(program)], ENV)
    with pytest.raises(PermissionError):
        spawn(["not-executable"], {"PATH": str(tmp_path)})


def test_a_nul_byte_is_a_value_error_and_leaks_no_descriptor() -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError):
        spawn([PY, "-c", "print(1)", "a\x00b"], ENV)
    assert len(os.listdir("/proc/self/fd")) == before


def test_wait_times_out_then_the_group_can_be_killed() -> None:
    child = spawn([PY, "-c", "import time; time.sleep(60)"], ENV)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.05)
    assert child.poll() is None
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    child.stdout.close()


def test_the_exit_status_is_returned() -> None:
    child = spawn([PY, "-c", "raise SystemExit(3)"], ENV)
    assert output_of(child) == ""
    assert child.returncode == 3


def test_a_reaped_child_leaves_no_descriptor_behind() -> None:
    before = sorted(os.listdir("/proc/self/fd"))
    child = spawn([PY, "-c", "print('done')"], ENV)
    assert child.wait(30) == 0
    child.stdout.close()
    assert child.pidfd is None
    assert sorted(os.listdir("/proc/self/fd")) == before
