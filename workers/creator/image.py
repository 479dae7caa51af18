"""Build an SD-card image without root: no mount, no loop device.

The base image is copied sparse and grown to the image's size, its data
partition (3) grown to the end with sfdisk (or added after the root partition),
and the data filesystem made inside the image file by `mke2fs -d` at the
partition's offset from a staging tree. Files for the FAT boot partition
(``offspot.yaml``) are put there with mtools.

The steps live beside this module: ``partitions`` (sfdisk), ``filesystem``
(mke2fs, debugfs) and ``tools`` (running them).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.common.bmap import data_extents
from workers.common.progress import Cancel, Progress
from workers.creator.filesystem import (
    CHUNK,
    TreeUsage,
    check_room,
    give_to_root,
    make_filesystem,
    materialize_unwritten,
)
from workers.creator.partitions import (
    Partition,
    PartitionTable,
    add_data_partition,
    boot_partition,
    data_partition_start,
    read_partition_table,
)
from workers.creator.tools import (
    BuildCanceled,
    BuildError,
    check_cancel,
    run,
)

PHASES = ("copying base", "partitioning", "building filesystem", "writing config")


@dataclass(frozen=True)
class BuiltImage:
    path: Path
    size: int
    partitions: tuple[Partition, ...]
    boot_offset: int
    data_offset: int
    data_size: int


def build_image(
    *,
    base_image: Path,
    output: Path,
    image_size: int,
    staging: Path,
    usage: TreeUsage,
    work_dir: Path,
    boot_files: Sequence[tuple[Path, str]] = (),
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> BuiltImage:
    """Build the image of `image_size` bytes at `output` and describe it.

    staging: the data partition's tree (``usage`` is what it takes), copied by
    mke2fs; boot_files: (source file, name) pairs put on the boot partition. On
    cancel (BuildCanceled) or any error, the files this build made are removed.
    """
    base_image, output, work_dir = Path(base_image), Path(output), Path(work_dir)
    if image_size <= 0 or image_size % 512:
        raise BuildError(f"the image size {image_size} is not whole 512-byte sectors")
    boots = _check_boot_files(boot_files)
    if not base_image.is_file():
        raise BuildError(f"base image {base_image} does not exist")
    base_size = base_image.stat().st_size
    if base_size > image_size:
        raise BuildError(
            f"base image {base_image} ({base_size} bytes) is bigger than the "
            f"image may be ({image_size} bytes): give a bigger output.size"
        )
    base_table = read_partition_table(base_image)
    boot = boot_partition(base_table, base_image)
    data_start = data_partition_start(base_table, base_image)
    check_room(usage, image_size - data_start, image_size)

    report = _Reporter(progress)
    work_dir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    scratch = Path(tempfile.mkdtemp(prefix="image-", dir=work_dir))
    try:
        check_cancel(cancel)
        report("copying base", 0)
        sparse_copy(
            base_image,
            part,
            progress=lambda percent: report("copying base", percent),
            cancel=cancel,
        )
        os.truncate(part, image_size)
        report("copying base", 100)

        check_cancel(cancel)
        report("partitioning", None)
        table = add_data_partition(part, base_table)
        data = table.get(3)
        check_room(usage, data.size, image_size)
        report("partitioning", 100)

        check_cancel(cancel)
        report("building filesystem", 0)
        make_filesystem(part, data, staging, usage, report, cancel)
        give_to_root(part, data, staging, scratch)
        materialize_unwritten(part, data.start, data.end)
        report("building filesystem", 100)

        check_cancel(cancel)
        report("writing config", None)
        _mcopy(part, boot, boots)
        check_cancel(cancel)
        os.replace(part, output)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report("writing config", 100)
    return BuiltImage(
        path=output,
        size=image_size,
        partitions=table.partitions,
        boot_offset=boot.start,
        data_offset=data.start,
        data_size=data.size,
    )


def sparse_copy(
    src: Path,
    dest: Path,
    *,
    progress: Callable[[float], None] | None = None,
    cancel: Cancel | None = None,
) -> None:
    """Copy `src` to `dest` so that holes stay holes."""
    with src.open("rb") as source, dest.open("wb") as target:
        size = os.fstat(source.fileno()).st_size
        ranges = list(data_extents(source.fileno(), size))
        total = sum(end - start for start, end in ranges) or 1
        done = 0
        for start, end in ranges:
            position = start
            while position < end:
                check_cancel(cancel)
                count = min(CHUNK * 16, end - position)
                copied = _copy_range(source.fileno(), target.fileno(), position, count)
                position += copied
                done += copied
                if progress:
                    progress(done * 100.0 / total)
        target.truncate(size)


def _copy_range(src_fd: int, dest_fd: int, offset: int, count: int) -> int:
    try:
        # In the kernel, and a reflink on filesystems that share extents.
        copied = os.copy_file_range(src_fd, dest_fd, count, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        copied = 0
    if copied > 0:
        return copied
    data = os.pread(src_fd, min(count, CHUNK), offset)
    if not data:
        raise BuildError(f"unexpected end of the base image at byte {offset}")
    os.pwrite(dest_fd, data, offset)
    return len(data)


# -- steps --------------------------------------------------------------------------


class _Reporter:
    """Calls progress(phase, percent) when the phase or the whole percent changes."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.last: tuple[str, int | None] | None = None

    def __call__(self, phase: str, percent: float | None) -> None:
        if self.progress is None:
            return
        key = (phase, None if percent is None else int(percent))
        if key != self.last:
            self.last = key
            self.progress(phase, None if percent is None else round(percent, 1))


def _check_boot_files(boot_files: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    checked = []
    for src, name in boot_files:
        src, name = Path(src), str(name)
        if not name or "/" in name or name in (".", ".."):
            raise BuildError(f"boot file name {name!r} must be a plain file name")
        if not src.is_file():
            raise BuildError(f"boot file {src} does not exist or is not a file")
        checked.append((src, name))
    return checked


def _mcopy(image: Path, boot: Partition, files: Sequence[tuple[Path, str]]) -> None:
    for src, name in files:
        run(
            [
                "mcopy",
                "-D",
                "o",
                "-i",
                f"{image}@@{boot.start}",
                str(src),
                f"::/{name}",
            ],
            what=f"write {name} onto the boot partition",
            # Raspberry Pi FAT partitions do not match mtools' floppy-era checks.
            env={"MTOOLS_SKIP_CHECK": "1"},
        )


__all__ = [
    "PHASES",
    "BuildCanceled",
    "BuildError",
    "BuiltImage",
    "Partition",
    "PartitionTable",
    "build_image",
    "read_partition_table",
    "sparse_copy",
]
