"""Which leftover journal-writer directories a start removes (receiver/writer/client.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from receiver.writer.client import (
    FALLBACK_PARENT,
    MAX_SOCKET_PATH,
    directory_parent,
    remove_stale_directories,
)


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_only_real_directories_of_dead_owners_are_removed(tmp_path: Path) -> None:
    dead = dead_pid()
    stale = tmp_path / f"remediator-writer-{dead}-a1"
    stale.mkdir()
    (stale / "journal.sock").write_text("")
    live = tmp_path / f"remediator-writer-{os.getpid()}-b2"
    live.mkdir()
    unnamed = tmp_path / "remediator-writer-c3xyz"  # an older version's: owner unknown
    unnamed.mkdir()
    huge = tmp_path / f"remediator-writer-{'9' * 30}-e5"  # not a pid any process can have
    huge.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep")
    link = tmp_path / f"remediator-writer-{dead}-d4"
    link.symlink_to(precious)

    assert remove_stale_directories(str(tmp_path)) == [stale]
    assert not stale.exists()
    assert live.is_dir() and unnamed.is_dir() and huge.is_dir() and link.is_symlink()
    assert (precious / "data").read_text() == "keep"


def test_a_temp_directory_short_enough_for_a_socket_path_is_used() -> None:
    assert directory_parent("/tmp", 4_194_304) == "/tmp"
    short = "/var/tmp/x"
    assert directory_parent(short, 123) == short


def test_a_temp_directory_too_deep_for_a_socket_path_falls_back() -> None:
    deep = "/srv/" + "d" * 80  # with the directory and socket names: past sun_path's 107
    assert len(os.fsencode(f"{deep}/remediator-writer-1-XXXXXXXX/journal.sock")) > MAX_SOCKET_PATH
    assert directory_parent(deep, 1) == FALLBACK_PARENT
