"""The executor contract: what the dispatcher hands an executor and what it gets back.

Executors are the only code that changes the outside world, so their contract is narrow:
`execute` turns every runtime failure into an `ExecutionResult` with a one-line reason
(the dispatcher journals it and feeds the breaker), while `ExecutorError` is kept for
things an operator must fix in the config, found when executors are built.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from receiver.config import Config, ExecutorConfig

if TYPE_CHECKING:
    from receiver.executors.processes import ProcessIdentity

#: Bound for response bodies and similar excerpts kept in results and the journal.
EXCERPT_BYTES = 4096


class Interrupt:
    """Set by the dispatcher when running actions must stop (the shutdown grace is over):
    executors that can stop what they run do so and report `interrupted` with `reason`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class ActionRequest:
    """One planned action, fully rendered and validated before it reaches an executor.

    `interrupt` (may be None) tells an executor to stop; `on_process` (may be None) is
    called with the identity of each process group an executor starts, so the journal
    can find it after a crash of this process (see processes.py)."""

    action_id: int
    action: str
    target: str
    rendered: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]
    timeout: float
    replicas: int | None = None
    reason: str = ""
    strategy: str = ""
    interrupt: Interrupt | None = None
    on_process: Callable[[ProcessIdentity], None] | None = None


@dataclass(frozen=True)
class ExecutionResult:
    """What happened, in one line an operator can read in the journal or a log.

    `refused`: the alert's own data made the action impossible (e.g. an environment or
    argv too large for exec); it ends skipped "refused: ..." and is no remediation
    failure, so the breaker does not count it. `interrupted`: stopped by the dispatcher
    (its `Interrupt`), not failed on its own; journaled failed, not counted either."""

    ok: bool
    detail: str
    output: str = ""
    timed_out: bool = False
    refused: bool = False
    interrupted: bool = False


class ExecutorError(Exception):
    """Misconfiguration or an unsupported call; never used for a failed remediation.

    `setting` names the executor setting at fault, relative to the executor
    (`header_files.Authorization`, `kubeconfig`), so that `check`, start and reload can
    point at it; empty when the executor as a whole is at fault.
    """

    def __init__(self, message: str, *, setting: str = "") -> None:
        super().__init__(message)
        self.setting = setting


class Executor(ABC):
    """Base for all executor types; subclasses read their settings in __init__."""

    type: ClassVar[str]
    #: The actions this type carries out (mirrors receiver.config.EXECUTOR_ACTIONS).
    actions: ClassVar[frozenset[str]]
    #: True for types that change nothing (log): a scale they "carry out" is not recorded
    #: as the target's new replica count, only the decision is journaled.
    records_only: ClassVar[bool] = False
    #: True for types that log each action they carry out themselves (log): the
    #: dispatcher's "executing <action> on <target>" line would say it a second time.
    logs_each_action: ClassVar[bool] = False

    def __init__(self, config: ExecutorConfig, root: Config) -> None:
        self.config = config
        self.root = root
        self.name = config.name
        self.settings: dict[str, Any] = dict(config.settings)

    @abstractmethod
    def execute(self, request: ActionRequest) -> ExecutionResult:
        """Carry out the action; report failures in the result, never by raising."""

    def replicas(self, target: str) -> int:
        """Current replica count of target, for executors that can scale."""
        raise ExecutorError(f"{self.type} executor cannot report replicas")

    @classmethod
    def preflight(cls, config: ExecutorConfig, root: Config) -> None:
        """What `remediator check` may verify without this host's runtime or the network.

        By default that is the whole build (reading secret files is cheap and safe
        anywhere); types whose build needs more (credentials only present in a pod, a
        kubeconfig's exec plugin) override it. Raises ExecutorError like the build.
        """
        cls(config, root).close()

    def close(self) -> None:
        """Release what the build acquired (connections, clients); nothing by default."""
        return None

    def unsupported(self, request: ActionRequest) -> ExecutionResult:
        """Result for an action this executor type cannot carry out (config check missed it)."""
        return ExecutionResult(False, f"{self.type} executor {self.name!r} cannot {request.action}")

    def resolve_path(self, value: str) -> Path:
        """Relative paths in settings are relative to the config file, like secret files."""
        return resolve_path(self.root, value)


def config_dir(root: Config) -> Path:
    return Path(root.source).resolve().parent if root.source else Path.cwd()


def resolve_path(root: Config, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else config_dir(root) / path


def read_secret(root: Config, value: str, what: str, setting: str = "") -> str:
    """Read a secret file at build time so a missing secret fails the config, not an action.

    `setting` (e.g. `header_files.Authorization`) is carried by the ExecutorError raised
    when the file is missing, unreadable, empty or longer than one line.
    """
    path = resolve_path(root, value)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ExecutorError(f"cannot read {what} from {path}: {reason}", setting=setting) from exc
    if not secret:
        raise ExecutorError(f"{what} file {path} is empty", setting=setting)
    if "\n" in secret or "\r" in secret:
        raise ExecutorError(f"{what} file {path} must hold a single line", setting=setting)
    return secret


def effective_timeout(
    request_timeout: float, setting: float | None, fallback: float = 60.0
) -> float:
    """The shorter of the action's timeout and the executor's own cap; both are limits."""
    candidates = [t for t in (request_timeout, setting) if t and t > 0 and math.isfinite(t)]
    return min(candidates) if candidates else fallback


def seconds(value: float) -> str:
    """Readable seconds for details: 5s, 0.5s, 2.25s."""
    return f"{value:.3g}s" if value < 10 else f"{value:.0f}s"


def excerpt(data: bytes, limit: int = EXCERPT_BYTES) -> str:
    """The head of a body, decoded leniently, with a marker when it was cut at limit."""
    text = data[:limit].decode("utf-8", errors="replace")
    return text + f"\n[... cut after the first {limit} bytes]" if len(data) > limit else text
