"""Run a local program as an argv list: no shell, bounded time, bounded output.

Alert labels are untrusted, so the program gets them only as separate argv entries (from
the strategy's templates) and as environment variables, never through a shell. Each
command runs in its own session so a timeout can kill everything it started, and its
environment is rebuilt from scratch so the service's own secrets do not leak into scripts.

The alert's part of that environment is bounded (`limits.command_env_value_bytes` per
variable, `limits.command_env_bytes` in all; see `bound_environment`), so an alert with
megabytes of annotations still runs its remediation. What the kernel still refuses
because of the alert's own data (E2BIG: argv or environment too large; a NUL byte) is
`refused`, not a failed remediation: the breaker does not count it.

The process group's identity is reported as soon as it starts (`on_process`), so that
after a crash of this process the next dispatcher can find it (see processes.py), and
an `Interrupt` (the end of the shutdown grace) kills the group like a timeout does.

Programs start with `subprocess.Popen`, not os.posix_spawn, although posix_spawn
costs this process less CPU (bench/spawn.py: 23-54% less per spawn of /bin/true over
six runs, 30-100 us): os.posix_spawn keeps the interpreter lock until the child has
exec'd, where Popen lets go of it (CPython drops the GIL around its vfork,
gh-104372), so every other thread of this process (ingest, the other dispatcher
threads) would wait for each exec: a thread sleeping 1 ms woke 1.3-3.9 ms late at
p99 while posix_spawn ran, 0.7-0.8 ms while Popen did (two runs), and a program on a
slow file system would stall them all for as long as its exec takes. A program's
exit is waited for on a pidfd where the system has them (Linux 5.3+), which wakes at
the exit, instead of Popen.wait's sleeps of 0.5-50 ms.
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from receiver.config import Config, ExecutorConfig
from receiver.executors.base import (
    ActionRequest,
    ExecutionResult,
    Executor,
    ExecutorError,
    Interrupt,
    effective_timeout,
    seconds,
)
from receiver.executors.processes import ProcessIdentity, group_alive, identify, signal_group

DEFAULT_MAX_OUTPUT = 65536
#: How long a timed-out process group gets between SIGTERM and SIGKILL.
KILL_GRACE = 1.0
#: After the program exits, how long to keep reading output still in the pipe. Short on
#: purpose: a daemon started in the background may hold the pipe open for ever.
DRAIN_AFTER_EXIT = 0.2
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"
#: How often a running program's supervisor looks for an interrupt (seconds).
POLL_S = 0.1
_READ_SIZE = 65536


_NOT_ENV_CHARACTER = re.compile(r"[^A-Za-z0-9]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


#: env_name's answers for the names seen, so each name is mapped once; label names are
#: the sender's, so the memo is bounded (emptied when full)
_ENV_NAMES: dict[str, str] = {}
_ENV_NAMES_MAX = 4096


def env_name(name: str) -> str:
    """ALERT_LABEL_<NAME>: upper-cased, anything but ASCII letters and digits becomes `_`
    (`k8s.pod.name` -> `K8S_POD_NAME`); names that map alike collide, see alert_environment."""
    mapped = _ENV_NAMES.get(name)
    if mapped is None:
        mapped = _NOT_ENV_CHARACTER.sub("_", name).upper()
        if len(_ENV_NAMES) >= _ENV_NAMES_MAX:
            _ENV_NAMES.clear()
        _ENV_NAMES[name] = mapped
    return mapped


def alert_environment(request: ActionRequest) -> dict[str, str]:
    """The alert and action as environment variables, so scripts need not parse argv.

    When several names map to one variable (`k8s.pod.name` and `k8s_pod_name`), one
    gets it, chosen by _env_precedence; the others are left out."""
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
        chosen: dict[str, str] = {}
        for name in sorted(values, key=_env_precedence):
            chosen.setdefault(prefix + env_name(name), str(values[name]))
        env.update(chosen)
    return env


def _env_precedence(name: str) -> tuple[bool, str]:
    """Which of the names that map to one variable gets it (the smallest key): a name
    needing no mapping (`k8s_pod_name`) before a mapped one (`k8s.pod.name`), then
    code-point order, so a variable never depends on how a sender ordered its labels."""
    return (not _PLAIN_NAME.fullmatch(name), name)


#: Lists the variables of the alert environment truncated or left out, comma-separated.
TRUNCATED_VARIABLE = "REMEDIATOR_ENV_TRUNCATED"


def truncation_marker(size: int) -> str:
    """Ends a value cut to its bound; says how long the whole value was (bytes)."""
    return f"...[truncated by remediator: {size} bytes in all]"


def _utf8_bytes(text: str) -> int:
    """Length of text in UTF-8 (unencodable characters as "?"), without encoding ASCII."""
    return len(text) if text.isascii() else len(text.encode("utf-8", errors="replace"))


def _entry_bytes(name: str, value: str) -> int:
    """What one variable costs the kernel's argument space: `NAME=value` and a NUL."""
    return _utf8_bytes(name) + _utf8_bytes(value) + 2


def truncate_value(value: str, limit: int) -> tuple[str, bool]:
    """(value cut to at most limit UTF-8 bytes with the marker, whether it was cut).

    Unencodable characters (lone surrogates) become "?" first, as exec needs bytes."""
    if value.isascii() and len(value) <= limit:  # its UTF-8 is itself: nothing to cut
        return value, False
    data = value.encode("utf-8", errors="replace")
    clean = data.decode("utf-8")
    if len(data) <= limit:
        return clean, False
    marker = truncation_marker(len(data)).encode()
    head = data[: max(limit - len(marker), 0)].decode("utf-8", errors="ignore")
    return (head.encode() + marker)[:limit].decode("utf-8", errors="ignore"), True


def bound_environment(env: Mapping[str, str], value_bytes: int, total_bytes: int) -> dict[str, str]:
    """The alert environment within bounds, deterministically.

    Each value is cut to `value_bytes` (UTF-8 bytes, marker included). Variables are then
    kept in `env`'s order while they fit in `total_bytes` (counted as `NAME=value\\0`);
    one that does not fit is left out and later, smaller ones may still be kept. When
    anything was cut, TRUNCATED_VARIABLE names the cut variables in that order (itself
    bounded, room reserved for it inside `total_bytes`). A name longer than
    `value_bytes` is left out: names are never altered."""
    total = 0
    for name, value in env.items():  # the common case first: all ASCII, all within bounds
        if not (name.isascii() and value.isascii()) or max(len(name), len(value)) > value_bytes:
            break
        total += len(name) + len(value) + 2
    else:
        if total <= total_bytes:
            return dict(env)  # what the general rule below keeps: everything, unchanged
    values: dict[str, str] = {}
    cut: list[str] = []
    for name, value in env.items():
        bounded, truncated = truncate_value(value, value_bytes)
        if _utf8_bytes(name) > value_bytes:
            cut.append(name)
            continue
        values[name] = bounded
        if truncated:
            cut.append(name)
    kept, left_out = _fit(values, total_bytes)
    if not cut and not left_out:
        return kept
    list_limit = min(value_bytes, total_bytes // 4)
    kept, left_out = _fit(values, total_bytes - _entry_bytes(TRUNCATED_VARIABLE, "") - list_limit)
    truncated_names = set(cut)
    names = [name for name in env if name in truncated_names or name in left_out]
    kept[TRUNCATED_VARIABLE] = truncate_value(",".join(names), list_limit)[0]
    return kept


def _fit(values: Mapping[str, str], budget: int) -> tuple[dict[str, str], set[str]]:
    """(variables kept in order while they fit in budget bytes, names left out)."""
    kept: dict[str, str] = {}
    left_out: set[str] = set()
    for name, value in values.items():
        cost = _entry_bytes(name, value)
        if cost <= budget:
            kept[name] = value
            budget -= cost
        else:
            left_out.add(name)
    return kept, left_out


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
    interrupted: bool = False


class _Watch:
    """Reads a child's output pipe until it exits or the deadline passes."""

    def __init__(self, process: subprocess.Popen, tail: OutputTail) -> None:
        assert process.stdout is not None
        self.process = process
        self.fd = process.stdout.fileno()
        self.tail = tail
        # poll(2), not the default epoll: one descriptor watched for one program, and
        # epoll costs a descriptor of its own (create, register, close: 12-16 against
        # 4-5 us per command with two selects, bench/README.md)
        self.selector = selectors.PollSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)
        self.eof = False
        self.exited = _exit_watch(process.pid)

    def close(self) -> None:
        self.selector.close()
        if self.exited is not None:
            self.exited.close()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def wait_exit(self, timeout: float) -> None:
        """Return once the program has exited (reaped); subprocess.TimeoutExpired after
        `timeout` seconds. Wakes at the exit when a pidfd watches it, else Popen.wait's
        polling."""
        if self.exited is not None and not self.exited.select(timeout):
            raise subprocess.TimeoutExpired(self.process.args, timeout)
        self.process.wait(None if self.exited is not None else timeout)

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

    def until_exit(self, deadline: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """True if the program exited before the deadline and before `stop()` said so
        (looked at every POLL_S)."""
        while self.process.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop():
                return False
            if self.eof:
                try:
                    self.wait_exit(min(POLL_S, remaining))
                except subprocess.TimeoutExpired:
                    continue
                break
            self.read_once(min(POLL_S, remaining))
        self.drain(DRAIN_AFTER_EXIT)
        return True

    def drain(self, window: float) -> None:
        end = time.monotonic() + window
        while not self.eof and (remaining := end - time.monotonic()) > 0:
            if not self.read_once(remaining):
                return


def _exit_watch(pid: int) -> selectors.BaseSelector | None:
    """A selector that becomes ready when `pid` (our unreaped child) exits, through a
    pidfd (close-on-exec; closed with the selector); None where there are no pidfds."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    watch = _PidfdSelector()
    watch.register(pidfd, selectors.EVENT_READ)
    return watch


class _PidfdSelector(selectors.PollSelector):
    """A poll selector that closes the pidfds registered with it when it is closed."""

    def close(self) -> None:
        for key in list(self.get_map().values()):
            os.close(key.fd)
        super().close()


def kill_group(process: subprocess.Popen, grace: float = KILL_GRACE) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever ignored it for `grace`."""
    pgid = process.pid  # start_new_session: the child leads its own session and group
    if signal_group(pgid, signal.SIGTERM):
        end = time.monotonic() + grace
        while time.monotonic() < end and (process.poll() is None or group_alive(pgid)):
            time.sleep(0.02)
        signal_group(pgid, signal.SIGKILL)
    process.wait()


def supervise(
    process: subprocess.Popen,
    timeout: float,
    tail: OutputTail,
    interrupt: Interrupt | None = None,
) -> Outcome:
    """Wait for the program within timeout; on timeout or interrupt kill its group."""
    watch = _Watch(process, tail)
    stop = interrupt.is_set if interrupt is not None else (lambda: False)
    try:
        if watch.until_exit(time.monotonic() + timeout, stop):
            return Outcome(process.returncode, timed_out=False)
        interrupted = stop()
        kill_group(process)
        watch.drain(DRAIN_AFTER_EXIT)
        return Outcome(process.returncode, timed_out=not interrupted, interrupted=interrupted)
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
        self.env_value_bytes = root.limits.command_env_value_bytes
        self.env_bytes = root.limits.command_env_bytes
        problem = find_nul([self.cwd or ""], self.extra_env)
        if problem:
            raise ExecutorError(f"command executor {self.name!r}: {problem}")

    def environment(self, request: ActionRequest) -> dict[str, str]:
        """Minimal base, then the alert (bounded: see bound_environment), then the
        operator's `env` (which wins, and is not bounded: it is trusted config)."""
        env = {
            "PATH": os.environ.get("PATH") or FALLBACK_PATH,
            "LANG": os.environ.get("LANG") or "C.UTF-8",
        }
        env.update(
            bound_environment(alert_environment(request), self.env_value_bytes, self.env_bytes)
        )
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
        if problem:  # the alert's data (config values were checked when built)
            return ExecutionResult(False, problem, refused=True)
        if self.cwd and not os.path.isdir(self.cwd):
            return ExecutionResult(False, f"working directory does not exist: {self.cwd}")
        timeout = effective_timeout(request.timeout, self.timeout_cap)
        return self._run(list(argv), env, timeout, request)

    def _run(
        self, argv: list[str], env: dict[str, str], timeout: float, request: ActionRequest
    ) -> ExecutionResult:
        started_at = time.time()
        try:
            process = self._start(argv, env)
        except (OSError, ValueError) as exc:
            return start_failure(argv, env, exc)
        tail = OutputTail(self.max_output)
        if request.on_process is not None:
            identity = identify(process.pid, started_at)
            if identity is not None:
                report_process(request.on_process, identity, process)
        outcome = supervise(process, timeout, tail, request.interrupt)
        if outcome.interrupted:
            assert request.interrupt is not None
            detail = f"{request.interrupt.reason} (process group killed)"
            return ExecutionResult(False, detail, tail.text(), interrupted=True)
        if outcome.timed_out:
            detail = f"timed out after {seconds(timeout)} (process group killed)"
            return ExecutionResult(False, detail, tail.text(), timed_out=True)
        return ExecutionResult(
            outcome.returncode == 0, describe_exit(outcome.returncode), tail.text()
        )

    def _start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        """The program started in a session of its own, stdin /dev/null, stdout and
        stderr to one pipe, no other descriptor. Raises OSError, ValueError."""
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
            close_fds=True,
        )


def report_process(
    on_process: Callable[[ProcessIdentity], None],
    identity: ProcessIdentity,
    process: subprocess.Popen,
) -> None:
    """Hand the started group's identity to the dispatcher (which journals it). If that
    fails the program must not run unrecorded: its group is killed and the error raised."""
    try:
        on_process(identity)
    except BaseException:
        kill_group(process, grace=0)
        if process.stdout is not None:
            process.stdout.close()
        raise


def start_failure(
    argv: Sequence[str], env: Mapping[str, str], exc: OSError | ValueError
) -> ExecutionResult:
    """Why exec failed, as a result. E2BIG (argv and environment past the kernel's limit,
    or one string past 128 KiB) comes from the alert's data: `refused`, not failed."""
    if isinstance(exc, FileNotFoundError):
        return ExecutionResult(False, f"command not found: {argv[0]}")
    if isinstance(exc, PermissionError):
        return ExecutionResult(False, f"cannot execute {argv[0]}: permission denied")
    if isinstance(exc, OSError) and exc.errno == errno.E2BIG:
        argv_bytes = sum(len(arg.encode("utf-8", errors="replace")) + 1 for arg in argv)
        env_bytes = sum(_entry_bytes(name, value) for name, value in env.items())
        detail = (
            f"cannot start {argv[0]}: argument list too long for exec (argv {argv_bytes} "
            f"bytes in {len(argv)} arguments, environment {env_bytes} bytes)"
        )
        return ExecutionResult(False, detail, refused=True)
    reason = getattr(exc, "strerror", None) or str(exc)
    return ExecutionResult(False, f"cannot start {argv[0]}: {reason}")
