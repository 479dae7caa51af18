"""The data partition's ext4 file system, made by ``mke2fs -d`` at the
partition's offset inside the image file from a tree of links to the content:
no mount, no root."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from workers.common.bmap import unwritten_extents
from workers.common.progress import Cancel
from workers.creator.partitions import MIB, Partition
from workers.creator.tools import BuildCanceled, BuildError, check_cancel, tool_path

DATA_LABEL = "data"
CHUNK = 4 * MIB
#: The journal is written to every card: keep it small on a mostly-read partition
#: (mke2fs would pick up to 1 GiB on big cards).
JOURNAL_MIB = 32
#: Content is mostly big ZIM files: one inode per 256 KiB still allows ~115k files
#: on a 32 GB card and keeps the inode tables the Pi zeroes on first boot small.
BYTES_PER_INODE = 256 * 1024
FICLONE = 0x40049409


def needed_bytes(contents: Sequence[tuple[Path, PurePosixPath]]) -> int:
    # Files round up to 4 KiB blocks, plus a block each for directory entries and
    # extent trees, plus the journal and ~1% of metadata (bitmaps, inode tables).
    files = sum(-(-src.stat().st_size // 4096) * 4096 + 4096 for src, _ in contents)
    return files + JOURNAL_MIB * MIB


def check_room(contents, data_size: int, image_size: int) -> None:
    needed = needed_bytes(contents)
    room = int(data_size * 0.99)
    if needed > room:
        raise BuildError(
            f"the content needs about {needed / 1e9:.2f} GB but the data partition of "
            f"a {image_size / 1e9:.2f} GB image holds {room / 1e9:.2f} GB: choose a "
            "bigger card or less content"
        )


def stage(
    contents: Sequence[tuple[Path, PurePosixPath]], staging: Path, cancel: Cancel | None
) -> None:
    """Build the tree mke2fs copies from, with links to the sources, not copies."""
    # Directories become the data partition's: the hotspot's services read them.
    staging.mkdir()
    os.chmod(staging, 0o755)  # noqa: S103
    for src, dest in contents:
        check_cancel(cancel)
        target = staging.joinpath(*dest.parts)
        for parent in reversed(target.relative_to(staging).parents[:-1]):
            directory = staging / parent
            if not directory.is_dir():
                directory.mkdir()
                os.chmod(directory, 0o755)  # noqa: S103
        _link_or_copy(src, target)


def _link_or_copy(src: Path, target: Path) -> None:
    # A link shares the source's mode: a file others cannot read is copied instead,
    # so that the hotspot's services can read it.
    if src.stat().st_mode & 0o444 == 0o444:
        try:
            os.link(src, target)
            return
        except OSError as exc:
            # EXDEV: other filesystem; EPERM: protected_hardlinks, foreign owner.
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    with src.open("rb") as source, target.open("wb") as copy:
        try:
            fcntl.ioctl(copy.fileno(), FICLONE, source.fileno())
        except OSError:
            shutil.copyfileobj(source, copy, CHUNK)
    os.chmod(target, 0o644)


def make_filesystem(
    image: Path,
    data: Partition,
    staging: Path,
    contents: Sequence[tuple[Path, PurePosixPath]],
    report: Callable[[str, float | None], None],
    cancel: Cancel | None,
) -> None:
    options = [
        f"offset={data.start}",
        # Discarding would punch holes that mke2fs then trusts as zeroed inode
        # tables, but holes are not written to the card: stale data would remain.
        "nodiscard",
        # Inode tables are zeroed by the kernel on the Pi, not written per card.
        "lazy_itable_init=1",
        "root_owner=0:0",
    ]
    command = [
        "mke2fs",
        "-F",
        "-q",
        "-t",
        "ext4",
        "-L",
        DATA_LABEL,
        "-m",
        "0",  # nothing runs as root on the data partition: no reserved blocks
        "-i",
        str(BYTES_PER_INODE),
        "-J",
        f"size={JOURNAL_MIB}",
        "-E",
        ",".join(options),
        "-d",
        str(staging),
        str(image),
        f"{data.size // 1024}k",
    ]
    total = sum(src.stat().st_size for src, _ in contents) or 1
    blocks_before = image.stat().st_blocks
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": tool_path(), "LC_ALL": "C"},
        text=True,
    )
    output = ""
    try:
        while True:
            try:
                output, _ = process.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel():
                raise BuildCanceled("image build canceled")
            written = (image.stat().st_blocks - blocks_before) * 512
            report("building filesystem", min(99.0, written * 100.0 / total))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise BuildError(
            f"mke2fs failed to build the data filesystem (exit {process.returncode}): "
            f"{output.strip()}"
        )


def materialize_unwritten(image: Path, start: int, end: int) -> None:
    """Write real zeros where mke2fs left unwritten (zero-range) extents.

    mke2fs "zeroes" the journal with fallocate(ZERO_RANGE): the blocks read as
    zeros here but are holes to SEEK_DATA and bmaptool, so they would never reach
    the card and an old card's data would lie in the new journal.
    """
    with image.open("r+b") as stream:
        fd = stream.fileno()
        for position, stop in unwritten_extents(fd, start, end):
            zeros = bytes(min(stop - position, CHUNK))
            while position < stop:
                position += os.pwrite(fd, zeros[: stop - position], position)
        os.fsync(fd)
