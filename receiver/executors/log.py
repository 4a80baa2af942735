"""An executor that only writes the action to the log: for trials, demos and dry runs.

It lets operators wire strategies to real alerts and watch what Remediator *would* do,
with the same journal entries, breakers and metrics, before giving it real power.
"""

from __future__ import annotations

import logging

from receiver.config import ACTIONS
from receiver.executors.base import ActionRequest, ExecutionResult, Executor

logger = logging.getLogger(__name__)


class LogExecutor(Executor):
    type = "log"
    actions = frozenset(ACTIONS)

    def execute(self, request: ActionRequest) -> ExecutionResult:
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
        return ExecutionResult(True, "logged only (no change made)")
