"""Restart and scale processes managed by supervisord, through its XML-RPC API.

Only the standard library is used (xmlrpc.client), with a socket timeout on every call so
a wedged supervisord cannot hang a dispatcher thread. Starts and stops are issued without
supervisord's own blocking wait and then polled, so a whole group restarts in parallel and
the action stays within its timeout however many processes the group has.

Scaling maps "replicas" onto a numprocs group: the first n processes by name run, the rest
are stopped, so repeated scale actions converge on the same processes. A group restart
leaves processes that were deliberately STOPPED (e.g. scaled down) alone.
"""

from __future__ import annotations

import base64
import http.client
import time
import xmlrpc.client
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from receiver.config import Config, ExecutorConfig
from receiver.executors.base import (
    ActionRequest,
    ExecutionResult,
    Executor,
    ExecutorError,
    effective_timeout,
    read_secret,
    seconds,
)

DEFAULT_RPC_TIMEOUT = 10.0
POLL_INTERVAL = 0.1
#: States that count as a replica (STARTING will be RUNNING after `startsecs`).
UP_STATES = frozenset({"RUNNING", "STARTING"})
#: States in which supervisord accepts stopProcess (its RUNNING_STATES).
STOPPABLE_STATES = frozenset({"RUNNING", "STARTING", "BACKOFF"})
#: Settled "not running" states.
DOWN_STATES = frozenset({"STOPPED", "EXITED", "FATAL"})
_FAULT_ALREADY_STARTED = 60
_FAULT_NOT_RUNNING = 70


class SupervisorError(Exception):
    """A failed RPC or a process that did not reach the wanted state; message is the detail."""

    def __init__(
        self, message: str, timed_out: bool = False, fault_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.fault_code = fault_code


@dataclass(frozen=True)
class Process:
    group: str
    name: str
    state: str
    pid: int

    @property
    def spec(self) -> str:
        return f"{self.group}:{self.name}"


class _TimeoutMixin:
    """Adds a socket timeout and an optional Authorization header to an xmlrpc Transport."""

    timeout: float
    authorization: str | None

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)  # type: ignore[misc]
        connection.timeout = self.timeout
        return connection

    def send_headers(self, connection: http.client.HTTPConnection, headers: list) -> None:
        if self.authorization:
            headers = [*headers, ("Authorization", self.authorization)]
        super().send_headers(connection, headers)  # type: ignore[misc]


class _Transport(_TimeoutMixin, xmlrpc.client.Transport):
    """http:// supervisord URLs, with our timeout and credentials."""


class _SafeTransport(_TimeoutMixin, xmlrpc.client.SafeTransport):
    """https:// supervisord URLs, with our timeout and credentials."""


class SupervisorClient:
    """Thin, thread-safe wrapper: a new proxy per call, errors turned into one clear line."""

    def __init__(self, url: str, authorization: str | None, timeout: float) -> None:
        self.url = url
        self.authorization = authorization
        self.timeout = timeout

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        transport = _SafeTransport() if self.url.startswith("https:") else _Transport()
        transport.timeout = min(timeout or self.timeout, self.timeout)
        transport.authorization = self.authorization
        proxy = xmlrpc.client.ServerProxy(self.url, transport=transport)
        try:
            return getattr(proxy, f"supervisor.{method}")(*args)
        except xmlrpc.client.Fault as fault:
            shown = ", ".join(map(str, args))
            message = f"supervisord refused {method}({shown}): {fault.faultString}"
            raise SupervisorError(message, fault_code=fault.faultCode) from fault
        except TimeoutError as exc:
            message = (
                f"supervisord at {self.url} did not answer within {seconds(transport.timeout)}"
            )
            raise SupervisorError(message) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise SupervisorError(f"cannot reach supervisord at {self.url}: {reason}") from exc
        except xmlrpc.client.ProtocolError as exc:
            message = f"supervisord at {self.url} answered HTTP {exc.errcode} {exc.errmsg}"
            raise SupervisorError(message) from exc
        except (xmlrpc.client.Error, http.client.HTTPException, ValueError) as exc:
            message = f"bad answer from supervisord at {self.url}: {exc}"
            raise SupervisorError(message) from exc
        finally:
            proxy("close")()

    def processes(self, timeout: float | None = None) -> list[Process]:
        infos = self.call("getAllProcessInfo", timeout=timeout)
        try:
            return [
                Process(info["group"], info["name"], info["statename"], int(info["pid"]))
                for info in infos
            ]
        except (KeyError, TypeError, ValueError) as exc:
            message = f"bad answer from supervisord at {self.url}: unexpected process info"
            raise SupervisorError(message) from exc


def _pids(processes: Iterable[Process]) -> str:
    return ",".join(str(p.pid) if p.pid else "-" for p in processes)


class SupervisorExecutor(Executor):
    """`restart` a group or one process; `scale` a numprocs group; report replicas."""

    type = "supervisor"
    actions = frozenset({"restart", "scale"})

    def __init__(self, config: ExecutorConfig, root: Config) -> None:
        super().__init__(config, root)
        url = self.settings.get("url")
        if not url:
            raise ExecutorError(f"supervisor executor {self.name!r} needs a url")
        self.client = SupervisorClient(
            url, self._authorization(), float(self.settings.get("timeout", DEFAULT_RPC_TIMEOUT))
        )

    def _authorization(self) -> str | None:
        username = self.settings.get("username")
        password_file = self.settings.get("password_file")
        if not username and not password_file:
            return None
        if not (username and password_file):
            raise ExecutorError(
                f"supervisor executor {self.name!r}: set both username and password_file"
            )
        password = read_secret(self.root, password_file, "supervisord password")
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return f"Basic {token}"

    # ------------------------------------------------------------ public API

    def execute(self, request: ActionRequest) -> ExecutionResult:
        if request.action not in self.actions:
            return self.unsupported(request)
        deadline = time.monotonic() + effective_timeout(request.timeout, None)
        try:
            if request.action == "restart":
                return self._restart(request.target, deadline)
            return self._scale(request.target, request.replicas, deadline)
        except SupervisorError as exc:
            return ExecutionResult(False, str(exc), timed_out=exc.timed_out)

    def replicas(self, target: str) -> int:
        """Processes of the group that are RUNNING or STARTING; ExecutorError if unknown."""
        try:
            members = self._group(target, self.client.processes())
        except SupervisorError as exc:
            raise ExecutorError(str(exc)) from exc
        return sum(1 for p in members if p.state in UP_STATES)

    # ------------------------------------------------------------ restart

    def _restart(self, target: str, deadline: float) -> ExecutionResult:
        chosen = self._restart_set(target, self.client.processes())
        before = {p.spec: p for p in chosen}
        self._stop(chosen, deadline)
        after = self._start(list(before), deadline)
        names = ", ".join(before)
        pids = f"pids {_pids(before.values())} -> {_pids(after[s] for s in before)}"
        return ExecutionResult(True, f"restarted {names} ({pids})")

    def _restart_set(self, target: str, processes: list[Process]) -> list[Process]:
        """One process, or the group's processes that are meant to run (all if none are)."""
        group, _, name = target.partition(":")
        members = self._group(group, processes)
        if name and name != "*":
            found = [p for p in members if p.name == name]
            if not found:
                raise SupervisorError(f"no such process {group}:{name}")
            return found
        meant_to_run = [p for p in members if p.state != "STOPPED"]
        return meant_to_run or members

    # ------------------------------------------------------------ scale

    def _scale(self, target: str, replicas: int | None, deadline: float) -> ExecutionResult:
        if replicas is None or replicas < 0:
            return ExecutionResult(False, f"scale needs a desired replica count, got {replicas}")
        group, _, name = target.partition(":")
        if name and name != "*":
            return ExecutionResult(False, f"scale needs a process group, got {target}")
        members = self._group(group, self.client.processes())
        if replicas > len(members):
            return ExecutionResult(
                False, f"group {group} has only {len(members)} processes configured"
            )
        current = sum(1 for p in members if p.state in UP_STATES)
        keep, drop = members[:replicas], members[replicas:]
        to_stop = [p for p in drop if p.state in STOPPABLE_STATES]
        to_start = [p for p in keep if p.state != "RUNNING"]
        self._stop(drop + [p for p in keep if p.state == "STOPPING"], deadline)
        self._start([p.spec for p in to_start], deadline)
        changes = [f"started {p.spec}" for p in to_start] + [f"stopped {p.spec}" for p in to_stop]
        summary = "; ".join(changes) or "no change needed"
        return ExecutionResult(True, f"scaled {group} from {current} to {replicas} ({summary})")

    # ------------------------------------------------------------ primitives

    def _group(self, group: str, processes: list[Process]) -> list[Process]:
        members = sorted((p for p in processes if p.group == group), key=lambda p: p.name)
        if not members:
            raise SupervisorError(f"no such process group {group}")
        return members

    def _stop(self, processes: list[Process], deadline: float) -> None:
        """Stop those that run and wait until all of them (STOPPING ones too) are down."""
        for process in processes:
            if process.state not in STOPPABLE_STATES:
                continue
            try:
                self.client.call("stopProcess", process.spec, False, timeout=_left(deadline))
            except SupervisorError as exc:
                if exc.fault_code != _FAULT_NOT_RUNNING:
                    raise
        waiting = {p.spec for p in processes if p.state not in DOWN_STATES}
        if waiting:
            self._await(waiting, DOWN_STATES, deadline, "stop")

    def _start(self, specs: list[str], deadline: float) -> dict[str, Process]:
        if not specs:
            return {}
        for spec in specs:
            try:
                self.client.call("startProcess", spec, False, timeout=_left(deadline))
            except SupervisorError as exc:
                if exc.fault_code != _FAULT_ALREADY_STARTED:
                    raise
        return self._await(set(specs), frozenset({"RUNNING"}), deadline, "start")

    def _await(
        self, specs: set[str], wanted: frozenset[str], deadline: float, verb: str
    ) -> dict[str, Process]:
        """Poll until every process is in a wanted state; FATAL while starting fails at once."""
        while True:
            by_spec = {p.spec: p for p in self.client.processes(timeout=_left(deadline))}
            pending = {
                s: by_spec[s] for s in specs if s in by_spec and by_spec[s].state not in wanted
            }
            if not pending:
                return by_spec
            fatal = [s for s, p in pending.items() if verb == "start" and p.state == "FATAL"]
            if fatal:
                raise SupervisorError(f"{', '.join(sorted(fatal))} failed to start (FATAL)")
            if time.monotonic() >= deadline:
                states = ", ".join(f"{s} is {p.state}" for s, p in sorted(pending.items()))
                message = f"timed out waiting for processes to {verb}: {states}"
                raise SupervisorError(message, timed_out=True)
            time.sleep(min(POLL_INTERVAL, max(deadline - time.monotonic(), 0.0)))


def _left(deadline: float) -> float:
    """Socket timeout for the next RPC: what is left of the action, at least a moment."""
    return max(deadline - time.monotonic(), 0.5)
