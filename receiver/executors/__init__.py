"""Executors carry out remediation actions; `build_executors` makes one per configured name.

An executor that cannot be built fails `check`, start and reload, never other
strategies: `check_executors` lists every such executor as a config problem naming its
setting, and the dispatcher builds executors one by one (`build_each`), so one that
becomes unusable at run time anyway (a secret file removed since) fails only its own
strategies' actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from receiver.config import Config, ConfigError, ExecutorConfig, Problem
from receiver.executors.alertmanager import AlertmanagerExecutor
from receiver.executors.base import ActionRequest, ExecutionResult, Executor, ExecutorError
from receiver.executors.command import CommandExecutor
from receiver.executors.http import HttpExecutor
from receiver.executors.kubernetes import KubernetesExecutor
from receiver.executors.log import LogExecutor
from receiver.executors.supervisor import SupervisorExecutor

EXECUTOR_CLASSES: dict[str, type[Executor]] = {
    cls.type: cls
    for cls in (
        CommandExecutor,
        HttpExecutor,
        SupervisorExecutor,
        KubernetesExecutor,
        AlertmanagerExecutor,
        LogExecutor,
    )
}


def build_executor(name: str, spec: ExecutorConfig, config: Config) -> Executor:
    """One executor from its validated settings.

    Raises ExecutorError ("executor 'api': cannot read header ...", its `setting` kept)
    when the type is unknown or the settings are unusable here (a secret file missing,
    the optional client not installed, no credentials).
    """
    cls = EXECUTOR_CLASSES.get(spec.type)
    if cls is None:
        raise ExecutorError(f"executor {name!r}: unsupported type {spec.type!r}", setting="type")
    try:
        return cls(spec, config)
    except ExecutorError as exc:
        raise ExecutorError(f"executor {name!r}: {exc}", setting=exc.setting) from exc


def build_executors(config: Config) -> dict[str, Executor]:
    """Name -> executor, all or nothing; ExecutorError names the first unusable one."""
    return {name: build_executor(name, spec, config) for name, spec in config.executors.items()}


@dataclass
class BuiltExecutors:
    """The executors of one config, built one by one: the usable and why the rest are not."""

    executors: dict[str, Executor] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # name -> reason, for the journal


def build_each(config: Config) -> BuiltExecutors:
    """Build every executor on its own, so that one unusable executor disables only itself."""
    built = BuiltExecutors()
    for name, spec in config.executors.items():
        try:
            built.executors[name] = build_executor(name, spec, config)
        except ExecutorError as exc:
            built.errors[name] = str(exc)
    return built


def _setting_path(name: str, exc: ExecutorError) -> str:
    return f"executors.{name}.{exc.setting}" if exc.setting else f"executors.{name}"


def check_executors(config: Config, *, full: bool) -> list[Problem]:
    """Every executor that cannot be built, as a config problem at its setting's path.

    full=False (`remediator check`) runs each type's preflight: what is cheap and safe
    on any machine (secret files read, the kubernetes client imported, no network).
    full=True (start and reload, on the host that will run the actions) builds each
    executor as the dispatcher will, then closes it. Problems look like
    `executors.api.header_files.Authorization: cannot read header Authorization from
    /etc/remediator/api-token: No such file or directory`.
    """
    problems = []
    for name, spec in config.executors.items():
        cls = EXECUTOR_CLASSES.get(spec.type)
        try:
            if cls is None:
                raise ExecutorError(f"unsupported type {spec.type!r}", setting="type")
            cls.preflight(spec, config)  # the same reasons at check, start and reload
            if full:
                cls(spec, config).close()
        except ExecutorError as exc:
            problems.append(Problem(_setting_path(name, exc), str(exc)))
    return problems


def require_usable_executors(config: Config, *, full: bool = True) -> None:
    """Raise ConfigError listing every executor that cannot be built (see check_executors)."""
    problems = check_executors(config, full=full)
    if problems:
        raise ConfigError(problems, config.source)


__all__ = [
    "EXECUTOR_CLASSES",
    "ActionRequest",
    "AlertmanagerExecutor",
    "BuiltExecutors",
    "CommandExecutor",
    "ExecutionResult",
    "Executor",
    "ExecutorError",
    "HttpExecutor",
    "KubernetesExecutor",
    "LogExecutor",
    "SupervisorExecutor",
    "build_each",
    "build_executor",
    "build_executors",
    "check_executors",
    "require_usable_executors",
]
