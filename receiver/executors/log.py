"""An executor that only writes the action to the log: for trials, demos and dry runs.

It lets operators wire strategies to real alerts and watch what Remediator *would* do,
with the same journal entries, breakers and metrics, before giving it real power.

A scale strategy is decided as on a real executor (HPA rule, value from Prometheus or
the alert, decision journaled), starting from the configured `current_replicas`: the
log executor cannot read a real count, and since it changes nothing, every decision
starts from that same count (`records_only`: the dispatcher does not record a scale).
"""

from __future__ import annotations

import logging

from receiver.config import ACTIONS
from receiver.executors.base import ActionRequest, ExecutionResult, Executor, ExecutorError

logger = logging.getLogger(__name__)


class LogExecutor(Executor):
    type = "log"
    actions = frozenset(ACTIONS)
    records_only = True
    logs_each_action = True

    def execute(self, request: ActionRequest) -> ExecutionResult:
        if request.action == "escalate":  # a person would be told: say what, with why
            logger.warning(
                "would escalate %s (strategy %s): %s",
                request.target,
                request.strategy or "-",
                request.reason,
                extra={"action_id": request.action_id, "strategy": request.strategy},
            )
            return ExecutionResult(True, "logged only (no one was told)")
        logger.info(
            "would %s %s (strategy %s, replicas %s): %s",
            request.action,
            request.target,
            request.strategy or "-",
            request.replicas if request.replicas is not None else "-",
            request.rendered,
            extra={
                "action_id": request.action_id,
                "strategy": request.strategy,
                "target": request.target,
            },
        )
        if request.action == "scale" and request.replicas is not None:
            return ExecutionResult(
                True, f"logged only: would scale to {request.replicas} (no change made)"
            )
        return ExecutionResult(True, "logged only (no change made)")

    def replicas(self, target: str) -> int:
        """The configured `current_replicas` (int >= 0), the same for every target.

        Raises ExecutorError when it is not set (check refuses a scale strategy then)."""
        current = self.settings.get("current_replicas")
        if current is None:
            raise ExecutorError(
                f"log executor {self.name!r} cannot report replicas: set current_replicas",
                setting="current_replicas",
            )
        return int(current)
