"""Run a local program as an argv list: no shell, bounded time, bounded output.

Alert labels are untrusted, so the program gets them only as separate argv entries (from
the strategy's templates) and as environment variables, never through a shell. Each
command runs in its own session so a timeout can kill everything it started, and its
environment is rebuilt from scratch so the service's own secrets do not leak into scripts.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from receiver.config import Config, ExecutorConfig
from receiver.executors.base import (
    ActionRequest,
    ExecutionResult,
    Executor,
    ExecutorError,
    effective_timeout,
    seconds,
)

DEFAULT_MAX_OUTPUT = 65536
#: How long a timed-out process group gets between SIGTERM and SIGKILL.
KILL_GRACE = 1.0
#: After the program exits, how long to keep reading output still in the pipe. Short on
#: purpose: a daemon started in the background may hold the pipe open for ever.
DRAIN_AFTER_EXIT = 0.2
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"
_READ_SIZE = 65536


def env_name(name: str) -> str:
    """ALERT_LABEL_<NAME>: upper-cased, anything but ASCII letters and digits becomes `_`."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def alert_environment(request: ActionRequest) -> dict[str, str]:
    """The alert and action as environment variables, so scripts need not parse argv."""
    env = {
        "REMEDIATOR_ACTION_ID": str(request.action_id),
        "REMEDIATOR_ACTION": request.action,
        "REMEDIATOR_TARGET": request.target,
        "REMEDIATOR_STRATEGY": request.strategy,
    }
    if request.replicas is not None:
        env["REMEDIATOR_REPLICAS"] = str(request.replicas)
    params = request.rendered.get("params") or {}
    for prefix, values in (
        ("REMEDIATOR_PARAM_", params),
        ("ALERT_LABEL_", request.labels),
        ("ALERT_ANNOTATION_", request.annotations),
    ):
        for name in sorted(values):
            env[prefix + env_name(name)] = str(values[name])
    return env


def find_nul(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Name the first value the kernel would refuse; exec cannot carry NUL bytes."""
    for index, arg in enumerate(argv):
        if "\0" in arg:
            return f"argument {index} contains a NUL byte; refusing to run"
    for name, value in env.items():
        if "\0" in name or "\0" in value:
            return f"environment variable {env_name(name)} contains a NUL byte; refusing to run"
    return None


@dataclass
class OutputTail:
    """Keeps the LAST `limit` bytes of combined stdout+stderr: errors are usually at the end."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        body = self.data.decode("utf-8", errors="replace")
        if not self.dropped:
            return body
        return f"[... first {self.dropped} bytes dropped, last {self.limit} kept]\n{body}"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    timed_out: bool


class _Watch:
    """Reads a child's output pipe until it exits or the deadline passes."""

    def __init__(self, process: subprocess.Popen, tail: OutputTail) -> None:
        assert process.stdout is not None
        self.process = process
        self.fd = process.stdout.fileno()
        self.tail = tail
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.eof = False

    def close(self) -> None:
        self.selector.close()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def read_once(self, wait: float) -> bool:
        """Read one chunk if one arrives within wait; False when nothing came."""
        if self.eof or not self.selector.select(max(wait, 0.0)):
            return False
        chunk = os.read(self.fd, _READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        self.tail.add(chunk)
        return True

    def until_exit(self, deadline: float) -> bool:
        """True if the program exited before the deadline."""
        while self.process.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.eof:
                try:
                    self.process.wait(remaining)
                except subprocess.TimeoutExpired:
                    return False
                break
            self.read_once(min(0.1, remaining))
        self.drain(DRAIN_AFTER_EXIT)
        return True

    def drain(self, window: float) -> None:
        end = time.monotonic() + window
        while not self.eof and (remaining := end - time.monotonic()) > 0:
            if not self.read_once(remaining):
                return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_group(process: subprocess.Popen, grace: float = KILL_GRACE) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever ignored it for `grace`."""
    pgid = process.pid  # start_new_session: the child leads its own session and group
    if _signal_group(pgid, signal.SIGTERM):
        end = time.monotonic() + grace
        while time.monotonic() < end and (process.poll() is None or _group_alive(pgid)):
            time.sleep(0.02)
        _signal_group(pgid, signal.SIGKILL)
    process.wait()


def supervise(process: subprocess.Popen, timeout: float, tail: OutputTail) -> Outcome:
    watch = _Watch(process, tail)
    try:
        if watch.until_exit(time.monotonic() + timeout):
            return Outcome(process.returncode, timed_out=False)
        kill_group(process)
        watch.drain(DRAIN_AFTER_EXIT)
        return Outcome(process.returncode, timed_out=True)
    finally:
        watch.close()


def describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


class CommandExecutor(Executor):
    """`run`, `restart` and `rollback` all execute the strategy's rendered argv."""

    type = "command"
    actions = frozenset({"run", "restart", "rollback"})

    def __init__(self, config: ExecutorConfig, root: Config) -> None:
        super().__init__(config, root)
        self.max_output = int(self.settings.get("max_output_bytes", DEFAULT_MAX_OUTPUT))
        self.timeout_cap: float | None = self.settings.get("timeout")
        self.cwd = str(self.resolve_path(self.settings["cwd"])) if "cwd" in self.settings else None
        self.extra_env: dict[str, str] = dict(self.settings.get("env") or {})
        problem = find_nul([self.cwd or ""], self.extra_env)
        if problem:
            raise ExecutorError(f"command executor {self.name!r}: {problem}")

    def environment(self, request: ActionRequest) -> dict[str, str]:
        """Minimal base, then the alert, then the operator's `env` (which wins)."""
        env = {
            "PATH": os.environ.get("PATH") or FALLBACK_PATH,
            "LANG": os.environ.get("LANG") or "C.UTF-8",
        }
        env.update(alert_environment(request))
        env.update(self.extra_env)
        return env

    def execute(self, request: ActionRequest) -> ExecutionResult:
        if request.action not in self.actions:
            return self.unsupported(request)
        argv = request.rendered.get("command")
        if not isinstance(argv, list | tuple) or not argv:
            return ExecutionResult(False, "no command to run: the strategy rendered no argv")
        if not all(isinstance(arg, str) for arg in argv):
            return ExecutionResult(False, "command arguments must all be strings")
        env = self.environment(request)
        problem = find_nul(argv, env)
        if problem:
            return ExecutionResult(False, problem)
        if self.cwd and not os.path.isdir(self.cwd):
            return ExecutionResult(False, f"working directory does not exist: {self.cwd}")
        return self._run(list(argv), env, effective_timeout(request.timeout, self.timeout_cap))

    def _run(self, argv: list[str], env: dict[str, str], timeout: float) -> ExecutionResult:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            return ExecutionResult(False, f"command not found: {argv[0]}")
        except PermissionError:
            return ExecutionResult(False, f"cannot execute {argv[0]}: permission denied")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            return ExecutionResult(False, f"cannot start {argv[0]}: {reason}")
        tail = OutputTail(self.max_output)
        outcome = supervise(process, timeout, tail)
        if outcome.timed_out:
            detail = f"timed out after {seconds(timeout)} (process group killed)"
            return ExecutionResult(False, detail, tail.text(), timed_out=True)
        return ExecutionResult(
            outcome.returncode == 0, describe_exit(outcome.returncode), tail.text()
        )
