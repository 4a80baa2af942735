"""Helpers for reliability tests: post to a webhook, read a whole journal, wait for it.

A "journal" here is a store opened by the test process itself (SqliteStore or
PostgresStore on the server's URL): it reads what the server committed, not what the
server says over HTTP.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests

from receiver.store import open_store
from tests.support.receiver import TOKEN

T = TypeVar("T")
FINAL = ("succeeded", "failed", "timed_out", "skipped", "cancelled")


def iso(moment: datetime) -> str:
    """The canonical form the journal keys incidents by (microseconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_webhook(
    url: str,
    body: Any,
    *,
    token: str | None = TOKEN,
    timeout: float = 10.0,
) -> requests.Response:
    headers = bearer(token) if token is not None else {}
    return requests.post(f"{url}/webhook", json=body, headers=headers, timeout=timeout)


def open_journal(store_url: str) -> Any:
    return open_store(store_url)


def all_incidents(journal: Any) -> list[dict[str, Any]]:
    return _all(journal.list_incidents)


def all_actions(journal: Any) -> list[dict[str, Any]]:
    """Every action with its events, oldest first."""
    return sorted(_all(journal.list_actions), key=lambda a: a["id"])


def _all(lister: Callable[..., Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = lister(limit=1000, offset=offset)
        items.extend(page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return items


def incident_keys(journal: Any) -> Counter:
    """(fingerprint, starts_at) -> how many incidents carry that key (must be 1)."""
    return Counter((i["fingerprint"], i["starts_at"]) for i in all_incidents(journal))


def wait_for(check: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {value!r}")
        time.sleep(0.1)


def settle(journal: Any, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until at least `expected` actions exist and none is planned or running."""

    def done() -> list[dict[str, Any]] | None:
        actions = all_actions(journal)
        if len(actions) >= expected and all(a["status"] in FINAL for a in actions):
            return actions
        return None

    try:
        return wait_for(done, timeout, f"{expected} actions to reach a final state")
    except AssertionError:
        left = [(a["id"], a["status"], a["reason"]) for a in all_actions(journal)]
        unsettled = [a for a in left if a[1] not in FINAL]
        raise AssertionError(f"actions did not settle: {len(left)} total, {unsettled}") from None


# ---------------------------------------------------------------- a command that records


RECORDER = """#!/bin/sh
# record.sh RUNS VALUE SECONDS: one line when it starts and one when it ends, with the
# action id from the environment, so a test can count how often each action ran.
echo "start $REMEDIATOR_ACTION_ID $2" >> "$1"
sleep "$3"
echo "end $REMEDIATOR_ACTION_ID $2" >> "$1"
"""


@dataclass
class Runs:
    starts: Counter = field(default_factory=Counter)  # action id -> executions started
    ends: Counter = field(default_factory=Counter)
    values: dict[int, set[str]] = field(default_factory=dict)  # action id -> VALUE seen

    @property
    def total(self) -> int:
        return sum(self.starts.values())


def write_script(workdir: Path, name: str, text: str) -> Path:
    """Write `text` to workdir/`name`, executable (mode 755), and return its path."""
    script = workdir / name
    script.write_text(text)
    script.chmod(0o755)
    return script


def write_recorder(workdir: Path) -> Path:
    return write_script(workdir, "record.sh", RECORDER)


def read_runs(path: Path) -> Runs:
    runs = Runs()
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        phase, action_id, value = line.split(" ", 2)
        number = int(action_id)
        (runs.starts if phase == "start" else runs.ends)[number] += 1
        runs.values.setdefault(number, set()).add(value)
    return runs
