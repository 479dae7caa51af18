"""Real full disks for the fault tests: a small tmpfs mounted on a folder that a
worker or the warehouse uses, filled up, then given room as an operator would.

Mounting needs root; ``missing()`` says what is missing otherwise, for a skip.
"""

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

MiB = 1024 * 1024


def missing() -> str | None:
    """What this machine lacks to mount a small disk (None: nothing)."""
    if os.geteuid() != 0:
        return "root (to mount a small tmpfs as a full disk)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount and umount (util-linux)"
    return None


class SmallDisk:
    """A tmpfs of ``size`` bytes mounted on ``folder``."""

    def __init__(self, folder: Path, size: int):
        self.folder = folder
        self.size = size
        self.ballast = folder / "ballast"

    def mount(self) -> "SmallDisk":
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", self.folder],
            check=True,
            capture_output=True,
        )
        return self

    def unmount(self) -> None:
        # Lazy: a file a stopped thread still holds open must not keep the
        # mount (and its memory) after the test.
        subprocess.run(["umount", "-l", self.folder], check=False, capture_output=True)

    @property
    def free(self) -> int:
        return shutil.disk_usage(self.folder).free

    def grow(self, size: int) -> None:
        """The operator's fix: a bigger disk under the same folder, files kept."""
        options = f"remount,size={size}"
        subprocess.run(
            ["mount", "-o", options, self.folder], check=True, capture_output=True
        )
        self.size = size

    def fill(self, leave: int = 0) -> int:
        """Write a ballast file (another process's data) until ``leave`` bytes
        are free, or none; returns its size. Real bytes: tmpfs counts pages."""
        written = 0
        block = b"\xa5" * MiB
        # Unbuffered: a buffer's last flush, at close, would hit the full disk.
        with open(self.ballast, "ab", buffering=0) as out:
            while (room := self.free - leave) > 0:
                try:
                    written += out.write(block[: min(room, MiB)])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        return written

    def make_room(self) -> None:
        """The operator's other fix: the ballast is deleted."""
        self.ballast.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(folder: Path, size: int):
    disk = SmallDisk(folder, size).mount()
    try:
        yield disk
    finally:
        disk.unmount()
