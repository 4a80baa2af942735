"""Pages each commit writes to the journal, by table and index: SQLite's WAL, read back.

In WAL mode every commit appends one frame per page it changed (SQLite's "Write-Ahead
Log" file format: a 32-byte header, then frames of a 24-byte header, whose first field
is the page number and second the database size after a commit frame, and one page).
Each frame is work at the commit (the page's B-tree changes, its write to the WAL) and
again at the checkpoint (copied into the journal file). This journals N one-alert
notifications through the real ingest on a fresh SQLite journal (bench.remediate's
config: each plans one `run` action of a command executor), then carries them out with
the real dispatcher's `run_once`, with the WAL's automatic checkpoint off, and counts the
frames each phase appended: per commit, per alert, and by the table or index that owns
each page (SQLite's `dbstat` virtual table):

    python -m bench.walframes [--alerts 50]
"""

from __future__ import annotations

import argparse
import sqlite3
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import inprocess, remediate

WAL_HEADER = 32
FRAME_HEADER = 24
WARMUP = 10  # alerts journaled and dispatched before counting: the tables' first pages


@dataclass(frozen=True)
class Frame:
    """One WAL frame: the page it holds, and whether it ends a commit (its header's
    database size after the commit is non-zero)."""

    page: int
    commit: bool


def read_frames(wal: bytes, start: int = WAL_HEADER) -> list[Frame]:
    """The frames of a WAL file's bytes from offset `start` (a frame boundary, e.g. the
    file's size before a phase began). Raises ValueError on a file too short for its
    header."""
    if len(wal) < WAL_HEADER:
        raise ValueError(f"not a WAL file: {len(wal)} bytes, its header alone is {WAL_HEADER}")
    page_size = struct.unpack(">I", wal[8:12])[0]
    frames = []
    offset = max(start, WAL_HEADER)
    while offset + FRAME_HEADER + page_size <= len(wal):
        page, size_after = struct.unpack(">II", wal[offset : offset + 8])
        frames.append(Frame(page, size_after != 0))
        offset += FRAME_HEADER + page_size
    return frames


def owners(db: Path) -> dict[int, str]:
    """Page number -> the table or index that owns it (`dbstat`; page 1 is the schema's)."""
    with sqlite3.connect(db) as connection:
        return dict(
            (page, name) for name, page in connection.execute("SELECT name, pageno FROM dbstat")
        )


def summary(frames: list[Frame], owner: dict[int, str], items: int) -> dict[str, Any]:
    """Frames per commit and per item, and per item by owner (most first)."""
    commits = sum(frame.commit for frame in frames)
    by_owner = Counter(owner.get(frame.page, "(freed since)") for frame in frames)
    return {
        "frames": len(frames),
        "commits": commits,
        "frames_per_commit": round(len(frames) / commits, 2) if commits else None,
        "frames_per_item": round(len(frames) / items, 2),
        "per_item_by_owner": {name: round(n / items, 2) for name, n in by_owner.most_common()},
    }


def measure(alerts: int) -> dict[str, Any]:
    """Ingest, then dispatch, `alerts` one-alert notifications (after WARMUP of each);
    the frames each phase appended (see summary)."""
    with inprocess.command_path("walframes") as path:
        wal = Path(f"{path.journal}-wal")
        # this thread's connection (the store's own, which ingest and run_once use
        # here): no automatic checkpoint, so the WAL keeps every frame appended
        path.store._connection().execute("PRAGMA wal_autocheckpoint = 0")
        _, bodies = remediate.bodies(0, WARMUP + alerts)
        path.ingest(bodies[:WARMUP])
        path.dispatch()
        before_ingest = wal.stat().st_size
        path.ingest(bodies[WARMUP:])
        before_dispatch = wal.stat().st_size
        path.dispatch()
        data = wal.read_bytes()
        owner = owners(path.journal)
    return {
        "alerts": alerts,
        "ingest": summary(read_frames(data[:before_dispatch], before_ingest), owner, alerts),
        "dispatch": summary(read_frames(data, before_dispatch), owner, alerts),
    }


def render(result: dict[str, Any]) -> str:
    lines = []
    for phase, unit in (("ingest", "alert"), ("dispatch", "action")):
        figures = result[phase]
        owners_text = ", ".join(f"{n} {v:g}" for n, v in figures["per_item_by_owner"].items())
        lines.append(
            f"{phase}: {figures['frames_per_item']:g} pages per {unit}, "
            f"{figures['frames_per_commit']:g} per commit ({figures['commits']} commits "
            f"for {result['alerts']} {unit}s)\n  by owner, per {unit}: {owners_text}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=50)
    args = p.parse_args(argv)
    result = measure(args.alerts)
    print(render(result))
    return result


if __name__ == "__main__":
    main()
