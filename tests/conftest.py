"""Fixtures shared across the test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.approvals import approval_stack
from tests.support.stores import BACKENDS


@pytest.fixture(params=BACKENDS)
def approvals(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The approvals stack (tests/support/approvals.py approval_stack) on each backend:
    (workdir, config, store URL, a real Alertmanager, the command's record file)."""
    with approval_stack(request.param, tmp_path) as parts:
        yield parts
