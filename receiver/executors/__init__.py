"""Executors carry out remediation actions; `build_executors` makes one per configured name.

All are built up front from the validated config, so a missing secret file or an
unreachable-by-construction setting fails at start (or reload), not at 3 a.m.
"""

from __future__ import annotations

from receiver.config import Config
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


def build_executors(config: Config) -> dict[str, Executor]:
    """Name -> executor; ExecutorError names the executor whose settings are unusable."""
    built: dict[str, Executor] = {}
    for name, spec in config.executors.items():
        cls = EXECUTOR_CLASSES.get(spec.type)
        if cls is None:
            raise ExecutorError(f"executor {name!r}: unsupported type {spec.type!r}")
        try:
            built[name] = cls(spec, config)
        except ExecutorError as exc:
            raise ExecutorError(f"executor {name!r}: {exc}") from exc
    return built


__all__ = [
    "EXECUTOR_CLASSES",
    "ActionRequest",
    "AlertmanagerExecutor",
    "CommandExecutor",
    "ExecutionResult",
    "Executor",
    "ExecutorError",
    "HttpExecutor",
    "KubernetesExecutor",
    "LogExecutor",
    "SupervisorExecutor",
    "build_executors",
]
