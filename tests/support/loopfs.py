"""A small real filesystem for store-outage tests: an ext4 image loop-mounted in a tmp dir.

Tests run as root, and root ignores file modes, so `chmod` cannot make a journal
read-only. What does stop root:

- a FULL filesystem: `fill()` writes a filler file until the kernel says ENOSPC
  (the image is made with `-m 0`, so no blocks are reserved for root);
- the ext4 IMMUTABLE attribute (`chattr +i`): ext4 enforces it on files that are
  already open too (since Linux 5.5), so the server's open database connection gets
  EPERM on its next write.

Why not the simpler tmpfs + `mount -o remount,ro`: Linux refuses to remount a
filesystem read-only while a file on it is open for writing ("mount point is busy"),
and the server keeps its SQLite files open; tmpfs does not enforce the immutable flag
on open files. So: ext4 on a loop device, which `mount` needs root (and loop devices)
for; `mount_unavailable()` says why when it cannot be done on this machine.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class LoopFilesystem:
    def __init__(self, image: Path, path: Path) -> None:
        self.image = image
        self.path = path
        self.filler = path / "filler.bin"
        self.frozen: list[Path] = []

    def fill(self) -> int:
        """Write a filler file until the disk is full; return the bytes written."""
        written = 0
        with self.filler.open("ab", buffering=0) as out:
            for size in (1 << 20, 1 << 16, 4096, 512, 1):
                block = b"\0" * size
                while True:
                    try:
                        out.write(block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                    written += size
            with suppress(OSError):
                os.fsync(out.fileno())
        return written

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def freeze(self, *names: str) -> None:
        """chattr +i: no process, root included, may write these files, open or not."""
        for name in names:
            target = self.path / name
            subprocess.run(["chattr", "+i", str(target)], check=True, capture_output=True)
            self.frozen.append(target)

    def thaw(self) -> None:
        for target in self.frozen:
            subprocess.run(["chattr", "-i", str(target)], check=True, capture_output=True)
        self.frozen.clear()

    def close(self) -> None:
        with suppress(subprocess.CalledProcessError, FileNotFoundError):
            self.thaw()
        result = subprocess.run(["umount", str(self.path)], capture_output=True)
        if result.returncode != 0:  # something still holds it: detach lazily
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
        self.image.unlink(missing_ok=True)


def mount_unavailable() -> str | None:
    """None when this process can loop-mount an ext4 image, else the reason it cannot."""
    if os.geteuid() != 0:
        return "loop-mounting a filesystem needs root"
    for tool in ("mount", "umount", "mkfs.ext4", "chattr"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@contextmanager
def loop_filesystem(workdir: Path, size_mb: int = 32) -> Iterator[LoopFilesystem]:
    """Mount a fresh ext4 image of size_mb at workdir/mnt; RuntimeError if mount fails."""
    reason = mount_unavailable()
    if reason:
        raise RuntimeError(reason)
    image = workdir / f"fs-{uuid.uuid4().hex[:8]}.img"
    mountpoint = workdir / "mnt"
    mountpoint.mkdir(exist_ok=True)
    with image.open("wb") as out:
        out.truncate(size_mb << 20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True
    )
    result = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True, text=True
    )
    if result.returncode != 0:
        image.unlink(missing_ok=True)
        raise RuntimeError(f"mount -o loop failed: {result.stderr.strip()}")
    fs = LoopFilesystem(image, mountpoint)
    try:
        yield fs
    finally:
        fs.close()
