"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stores import BACKENDS, opened_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh journal's store on each backend (a SQLite file, a PostgreSQL schema),
    opened, closed afterwards; a module's own `store` fixture overrides it."""
    with opened_store(request.param, tmp_path) as opened:
        yield opened
