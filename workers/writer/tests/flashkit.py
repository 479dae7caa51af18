"""What the flash engine's tests share: a real ext4 image with its bmap,
loop devices filled with OLD as cards, and ways to look at them or break them."""

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.cards import loop_missing
from workers.common.bmap import Bmap, create_bmap
from workers.common.tests.test_bmap import make_ext4_image

MiB = 1024 * 1024
OLD = b"\xaa"  # what the card holds before we write: unwritten blocks keep it
ROOT = Path(__file__).resolve().parents[3]


def _missing() -> str | None:
    if missing := loop_missing():
        return missing
    for tool in ("partx", "mount", "e2fsck", "bmaptool"):
        if shutil.which(tool) is None:
            return f"the {tool} command"
    return None


MISSING = _missing()
needs_loop = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")


@dataclass
class Card:
    device: str
    backing: Path

    def content(self) -> bytes:
        # The loop driver writes through the backing file's page cache, so
        # reading the file shows what the "card" holds right now.
        return self.backing.read_bytes()


@dataclass
class Image:
    path: Path
    bmap_path: Path
    bmap: Bmap
    content: Path


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flash")
    path = make_ext4_image(folder)
    bmap = create_bmap(path)
    return Image(path, path.with_suffix(".bmap"), bmap, folder / "content")


@pytest.fixture
def attach(tmp_path):
    """attach(size) -> a Card: a loop device over a file filled with OLD."""
    attached = []

    def attach(size=80 * MiB, *, backing=None, sector=None, partitions=False):
        if backing is None:
            backing = tmp_path / f"card{len(attached)}.raw"
            with open(backing, "wb") as out:
                for _ in range(size // MiB):
                    out.write(OLD * MiB)
        command = ["losetup", "-f", "--show"]
        command += ["-b", str(sector)] if sector else []
        command += ["-P"] if partitions else []
        device = run(*command, str(backing))
        attached.append(device)
        return Card(device, Path(backing))

    yield attach
    for device in reversed(attached):
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout.strip()


def bad_blocks(card: Card, image_path: Path, bmap: Bmap) -> list[int]:
    """Blocks where the card is not: image bytes if mapped, else still OLD."""
    data, got = image_path.read_bytes(), card.content()
    mapped = {b for first, last, _ in bmap.ranges for b in range(first, last + 1)}
    size = bmap.block_size
    bad = []
    for block in range(bmap.blocks_count):
        start, end = block * size, min((block + 1) * size, len(data))
        want = data[start:end] if block in mapped else OLD * (end - start)
        if got[start:end] != want:
            bad.append(block)
    if got[len(data) :] != OLD * (len(got) - len(data)):
        bad.append(-1)  # something was written past the image
    return bad


def set_sizelimit(device: str, limit: int) -> None:
    """Change a live loop device's size limit (0: the whole backing file)."""
    loop_get_status64, loop_set_status64 = 0x4C05, 0x4C04
    fd = os.open(device, os.O_RDONLY)
    try:
        info = bytearray(232)  # struct loop_info64
        fcntl.ioctl(fd, loop_get_status64, info, True)
        info[32:40] = limit.to_bytes(8, "little")  # lo_sizelimit
        fcntl.ioctl(fd, loop_set_status64, bytes(info))
    finally:
        os.close(fd)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.writer.flash", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
