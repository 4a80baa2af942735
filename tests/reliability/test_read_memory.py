"""Issue 11 item 4 through a real `remediator serve`: one unauthenticated
`GET /api/v1/incidents` over 60 incidents of ~4 MB of annotations each returned 246 MB
and took the worker from 44 MB to 970 MB of RSS. Now every page is bounded in bytes,
fields are cut with a marker, and the worker's memory stays bounded."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from receiver.alerts import MAX_LABELS, MAX_VALUE_LENGTH
from receiver.store.listing import MARKER
from tests.support.journal import post_webhook
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import write_config

INCIDENTS = 60
PAGE_BYTES = 128 * 1024  # small enough that 60 cut rows need several pages
FIELD_BYTES = 4096
ENVELOPE = 512  # what the page's JSON adds around its rows, at most
GROWTH = 100 * 1024 * 1024

CONFIG = f"""
server:
  auth: {{bearer_token_file: token}}
  max_body_bytes: {8 * 1024 * 1024}
limits:
  max_page_bytes: {PAGE_BYTES}
  max_field_bytes: {FIELD_BYTES}
executors:
  logger: {{type: log}}
strategies:
  - name: never
    matchers: ['alertname="NoSuchAlert"']
    action: escalate
    executor: logger
    target: nobody
"""


def huge_alert(n: int) -> dict:
    """An alert as large as receiver/alerts.py allows: 256 annotations of 16,384 chars."""
    body = alert("Huge", service=f"svc{n:02d}", starts_at=f"2026-11-21T10:{n:02d}:00Z")
    body["annotations"] = {
        f"a{i:03d}": f"{n:02d}" + "x" * (MAX_VALUE_LENGTH - 2) for i in range(MAX_LABELS)
    }
    return body


def rss(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def http_worker(master: int) -> int:
    """gunicorn's worker: the master's child that serves HTTP (the journal writer is the
    worker's own child)."""
    workers = [
        pid
        for pid in children(master)
        if b"receiver.writer" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 1, workers
    return workers[0]


def test_a_listing_of_huge_incidents_is_bounded_in_bytes_and_memory(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    with remediator(tmp_path, config, f"sqlite:///{tmp_path / 'journal.db'}") as server:
        for n in range(INCIDENTS):
            response = post_webhook(server.url, notification(huge_alert(n)), timeout=60)
            assert response.status_code == 200, response.text
        worker = http_worker(server.process.pid)
        before = rss(worker)

        first = requests.get(f"{server.url}/api/v1/incidents?limit=1000", timeout=60)
        assert first.status_code == 200
        assert len(first.content) <= PAGE_BYTES + ENVELOPE
        page = first.json()
        assert page["total"] == INCIDENTS
        assert page["next_offset"] == len(page["data"]) < INCIDENTS
        row = page["data"][0]
        assert row["truncated"] is True
        head = MARKER.split("{", 1)[0]
        assert head in next(iter(row["annotations"].values()))

        seen = [r["labels"]["service"] for r in page["data"]]
        ids = [r["id"] for r in page["data"]]
        offset = page["next_offset"]
        while offset is not None:
            response = requests.get(
                f"{server.url}/api/v1/incidents",
                params={"limit": 1000, "offset": offset},
                timeout=60,
            )
            assert len(response.content) <= PAGE_BYTES + ENVELOPE
            page = response.json()
            assert page["data"], "every page holds at least one row"
            seen += [r["labels"]["service"] for r in page["data"]]
            ids += [r["id"] for r in page["data"]]
            offset = page["next_offset"]
        for incident_id in ids:  # one incident with its trail is bounded the same way
            response = requests.get(f"{server.url}/api/v1/incidents/{incident_id}", timeout=60)
            assert response.status_code == 200
            assert len(response.content) <= PAGE_BYTES + ENVELOPE
            assert response.json()["truncated"] is True
        after = rss(worker)

    assert sorted(seen) == [f"svc{n:02d}" for n in range(INCIDENTS)]  # each exactly once
    assert after - before < GROWTH, f"worker RSS grew {(after - before) / 2**20:.0f} MiB"
