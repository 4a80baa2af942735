"""How an execution that did not succeed becomes an action's outcome (dispatcher.failure).

Refused by the alert's own data: skipped "refused: ...". Stopped at the end of the
shutdown grace: failed. Neither is a remediation failure the breaker counts; a timeout
and every other failure are.
"""

from __future__ import annotations

import pytest

from receiver.dispatcher import Outcome, failure
from receiver.executors.base import ExecutionResult


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            ExecutionResult(False, "cannot start x: argument list too long", refused=True),
            Outcome("skipped", "refused: cannot start x: argument list too long", counts=False),
        ),
        (
            ExecutionResult(False, "killed at shutdown after 1s grace", "out", interrupted=True),
            # not counted by the breaker; its runbook ends instead of going on (runs.follow)
            Outcome(
                "failed",
                "killed at shutdown after 1s grace",
                "out",
                counts=False,
                interrupted=True,
            ),
        ),
        (
            ExecutionResult(False, "timed out after 5s", "out", timed_out=True),
            Outcome("timed_out", "timed out after 5s", "out"),
        ),
        (
            ExecutionResult(False, "exit status 1", "out"),
            Outcome("failed", "exit status 1", "out"),
        ),
    ],
)
def test_an_unsuccessful_execution_maps_to_its_outcome(result, expected):
    assert failure(result) == expected
