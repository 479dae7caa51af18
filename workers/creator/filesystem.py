"""The data partition's ext4 file system, made by ``mke2fs -d`` at the
partition's offset inside the image file from a staging tree: no mount, no root.

The staging tree holds what the base image's data partition held (read with
``debugfs rdump``), then the recipe's OCI images and files, mostly as hard links
into the content cache. Built by a user other than root, the files are then
given to root with ``debugfs``, as image-creator (root) would have them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workers.common.bmap import unwritten_extents
from workers.common.progress import Cancel
from workers.creator.partitions import MIB, Partition
from workers.creator.tools import BuildCanceled, BuildError, run, tool_path

DATA_LABEL = "data"
CHUNK = 4 * MIB
BLOCK = 4096
INODE_SIZE = 256
#: The journal is written to every card: keep it small on a mostly-read partition
#: (mke2fs would pick up to 1 GiB on big cards).
JOURNAL_MIB = 32
#: Content is mostly big ZIM files: one inode per 256 KiB still allows ~115k files
#: on a 32 GB card and keeps the inode tables the Pi zeroes on first boot small;
#: a tree of many small files gets the inodes it needs (``inodes_for``).
BYTES_PER_INODE = 256 * 1024
FICLONE = 0x40049409


class FolderError(BuildError):
    """A path of the tree is a file where a folder is needed, or the reverse."""


@dataclass(frozen=True)
class TreeUsage:
    bytes: int  # file data, in whole blocks
    entries: int  # files, folders and links


def link_or_copy(src: Path, target: Path) -> None:
    """Hard-link ``src`` at ``target`` (a reflink or a copy when that cannot be)."""
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


def make_folders(root: Path, relative: PurePosixPath) -> None:
    """Folders from ``root`` down to ``relative``, readable by the hotspot's
    services (mode 755)."""
    folder = root
    for part in relative.parts:
        folder = folder / part
        if folder.is_dir():
            continue
        if os.path.lexists(folder):
            raise FolderError(
                f"/data/{folder.relative_to(root)} is a file on the data partition, "
                f"where {relative} needs a folder"
            )
        folder.mkdir()
        os.chmod(folder, 0o755)  # noqa: S103


def tree_usage(root: Path) -> TreeUsage:
    """What the tree takes: its files' data in whole blocks, and its entries."""
    data, entries = 0, 0
    for folder, folders, files in os.walk(root):
        entries += len(folders) + len(files)
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            data += -(-info.st_size // BLOCK) * BLOCK
    return TreeUsage(bytes=data, entries=entries)


def inodes_for(usage: TreeUsage, data_size: int) -> int:
    """Inodes of a data partition: one per 256 KiB, or a quarter more than the
    tree's entries when it has many small files."""
    return max(data_size // BYTES_PER_INODE, usage.entries * 5 // 4 + 64)


def journal_mib(data_size: int) -> int:
    """JOURNAL_MIB, or less on a partition too small for it (at most a quarter
    of it; mke2fs wants 1024 blocks at least)."""
    return max(4, min(JOURNAL_MIB, data_size // 4 // MIB))


def needed_bytes(usage: TreeUsage) -> int:
    """Room the tree needs on an ext4 partition sized for it: its data, a block
    per entry (directories, extent trees), the inode tables, the journal, and
    1% of metadata (group descriptors, bitmaps)."""
    inode_tables = (usage.entries * 5 // 4 + 64) * INODE_SIZE
    raw = usage.bytes + usage.entries * BLOCK + inode_tables + JOURNAL_MIB * MIB
    return int(raw * 1.01) + 4 * MIB


def minimum_data_size(usage: TreeUsage) -> int:
    """The smallest data partition ``check_room`` accepts for the tree."""
    # The ratio's inode tables take 1/1024 of the partition itself.
    ratio = BYTES_PER_INODE // INODE_SIZE
    return -(-needed_bytes(usage) * ratio // (ratio - 1))


def check_room(usage: TreeUsage, data_size: int, image_size: int) -> None:
    needed = needed_bytes(usage) + data_size // BYTES_PER_INODE * INODE_SIZE
    if needed > data_size:
        raise BuildError(
            f"the content needs about {needed / 1e9:.2f} GB but the data partition of "
            f"a {image_size / 1e9:.2f} GB image holds {data_size / 1e9:.2f} GB: give "
            "a bigger output.size, or auto"
        )


def dump_partition(image: Path, partition: Partition, dest: Path) -> None:
    """Copy the files of an ext4 partition of ``image`` into ``dest`` (the base
    image's data partition: its ``master_fs`` flag, its images folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    run(
        ["debugfs", "-R", f"rdump / {dest}", f"{image}?offset={partition.start}"],
        what="read the base image's data partition",
    )
    # mke2fs makes its own; the base's is empty and root's alone.
    shutil.rmtree(dest / "lost+found", ignore_errors=True)


def make_filesystem(
    image: Path,
    data: Partition,
    staging: Path,
    usage: TreeUsage,
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
        # 4 KiB blocks whatever the size: mke2fs picks 1 KiB for small partitions,
        # but the card grows this one at first boot.
        "-b",
        str(BLOCK),
        "-N",
        str(inodes_for(usage, data.size)),
        "-J",
        f"size={journal_mib(data.size)}",
        "-E",
        ",".join(options),
        "-d",
        str(staging),
        str(image),
        f"{data.size // 1024}k",
    ]
    total = usage.bytes or 1
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


def give_to_root(image: Path, data: Partition, staging: Path, work: Path) -> None:
    """Make root the owner of every file of the data partition, as image-creator
    (root) writes them; mke2fs copied the owners of the staging tree, ours."""
    if os.geteuid() == 0:
        return  # the tree is root's already
    commands = work / "owners.debugfs"
    with commands.open("w", encoding="utf-8", errors="surrogateescape") as script:
        for folder, folders, files in os.walk(staging):
            for name in (*folders, *files):
                path = "/" + os.path.relpath(os.path.join(folder, name), staging)
                if "\n" in path:
                    continue  # debugfs reads one command a line: left as it is
                quoted = '"' + path.replace('"', '""') + '"'
                script.write(f"sif {quoted} uid 0\nsif {quoted} gid 0\n")
    try:
        run(
            ["debugfs", "-w", "-f", str(commands), f"{image}?offset={data.start}"],
            what="give the data partition's files to root",
        )
    finally:
        commands.unlink(missing_ok=True)


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
