"""Shared fixtures of the reliability suite: stores, a Prometheus, an in-process app and a
loop-mounted filesystem. Every component is real; see tests/support for how each starts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from receiver.app import AppState, create_app
from receiver.config import parse_config
from receiver.store.sqlite import SqliteStore
from tests.support.loopfs import LoopFilesystem, loop_filesystem, mount_unavailable
from tests.support.postgres import postgres_schema
from tests.support.processes import Running, prometheus
from tests.support.receiver import PROMETHEUS_CONFIG, TOKEN


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh journal: a SQLite file, or a throwaway schema on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A real Prometheus, for strategies that verify (the query `vector(1)` is true)."""
    with prometheus(tmp_path_factory.mktemp("prometheus"), PROMETHEUS_CONFIG) as running:
        yield running


@pytest.fixture
def loopfs(tmp_path: Path) -> Iterator[LoopFilesystem]:
    """A 32 MiB ext4 filesystem mounted in tmp_path/mnt (see tests/support/loopfs.py)."""
    reason = mount_unavailable()
    if reason:
        pytest.skip(f"store outage by filesystem needs a loop mount: {reason}")
    with ExitStack() as stack:
        try:
            fs = stack.enter_context(loop_filesystem(tmp_path))
        except RuntimeError as exc:
            pytest.skip(f"store outage by filesystem needs a loop mount: {exc}")
        yield fs


InProcess = Callable[[str], tuple[FlaskClient, SqliteStore]]


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    """Build the app gunicorn serves (create_app) on a tmp SQLite journal, for speed.

    The config text may name `token` (holding TOKEN) and `password` files."""
    tmp_path = tmp_path_factory.mktemp("inprocess")
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "password").write_text(TOKEN + "\n")
    stores: list[SqliteStore] = []

    def build(config_text: str) -> tuple[FlaskClient, Any]:
        config = parse_config(config_text, base_dir=tmp_path)
        store = SqliteStore(f"sqlite:///{tmp_path / f'journal-{len(stores)}.db'}")
        stores.append(store)
        return create_app(AppState(config, store)).test_client(), store

    yield build
    for store in stores:
        store.close()
