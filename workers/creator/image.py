"""Build an SD-card image without root: no mount, no loop device.

The base image is copied sparse, grown to the size the API gives for the order
(the usable bytes of its card, ``work["image_bytes"]``), given a data
partition with sfdisk, and the data filesystem is made inside the image file by
`mke2fs -d` at the partition's offset. The hotspot configuration goes onto the FAT
boot partition with mtools.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from workers.common.bmap import data_extents, unwritten_extents
from workers.common.progress import Cancel, Canceled, Progress

PHASES = ("copying base", "partitioning", "building filesystem", "writing config")
CONFIG_NAME = "hotspot.yaml"
DATA_LABEL = "data"
MIB = 1024 * 1024
#: partitions start on 4 MiB boundaries: the erase-block size of most SD-cards
ALIGNMENT = 4 * MIB
CHUNK = 4 * MIB
#: The journal is written to every card: keep it small on a mostly-read partition
#: (mke2fs would pick up to 1 GiB on big cards).
JOURNAL_MIB = 32
#: Content is mostly big ZIM files: one inode per 256 KiB still allows ~115k files
#: on a 32 GB card and keeps the inode tables the Pi zeroes on first boot small.
BYTES_PER_INODE = 256 * 1024
TOOLS = {"sfdisk": "fdisk", "mke2fs": "e2fsprogs", "mcopy": "mtools"}
#: Debian keeps sfdisk and mke2fs in the sbin folders, which are not on an
#: ordinary user's PATH, though on an image file they need no root.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
FAT_TYPES = {
    "1",
    "4",
    "6",
    "b",
    "c",
    "e",
    "ef",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",  # GPT Microsoft basic data
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # GPT EFI system
}
HOTSPOT_KEYS = (
    "name",
    "ssid",
    "language",
    "timezone",
    "admin",
    "wifi_password",
    "branding",
    "content",
)
FICLONE = 0x40049409


class BuildError(Exception):
    """The image could not be built; the message says what to change."""


class BuildCanceled(Canceled):
    """cancel() returned True; every file of the build was removed."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the image
    size: int  # bytes
    type: str

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class PartitionTable:
    label: str  # "dos" or "gpt"
    partitions: tuple[Partition, ...]

    def get(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)


@dataclass(frozen=True)
class BuiltImage:
    path: Path
    size: int
    partitions: tuple[Partition, ...]
    boot_offset: int
    data_offset: int
    data_size: int


ContentFiles = Sequence[tuple[os.PathLike | str, os.PathLike | str]]


def build_image(
    *,
    base_image: Path,
    output: Path,
    image_bytes: int,
    content_files: ContentFiles,
    hotspot_config: Mapping,
    work_dir: Path,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    boot_files: ContentFiles = (),
    config_name: str = CONFIG_NAME,
) -> BuiltImage:
    """Build the card image of `image_bytes` bytes at `output` and describe it.

    content_files: (source file, path on the data partition) pairs; sources are
    hard-linked, not copied, into the staging tree mke2fs reads. boot_files:
    (source file, name) pairs put next to the configuration on the boot partition.
    On cancel (BuildCanceled) or any error, the files this build made are removed.
    """
    base_image, output, work_dir = Path(base_image), Path(output), Path(work_dir)
    image_size = _check_size(image_bytes)
    _check_tools()
    contents = _check_content(content_files)
    boots = _check_boot_files(boot_files)
    config_text = render_config(hotspot_config, contents)
    if not base_image.is_file():
        raise BuildError(f"base image {base_image} does not exist")
    base_size = base_image.stat().st_size
    if base_size > image_size:
        raise BuildError(
            f"base image {base_image} ({base_size} bytes) is bigger than the "
            f"image may be ({image_size} bytes, what the card holds): use a bigger "
            "card"
        )
    base_table = read_partition_table(base_image)
    boot = _boot_partition(base_table, base_image)
    data_start = _data_partition_start(base_table, base_image)
    _check_room(contents, image_size - data_start, image_size)

    report = _Reporter(progress)
    work_dir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=work_dir))
    try:
        _check_cancel(cancel)
        report("copying base", 0)
        sparse_copy(
            base_image,
            part,
            progress=lambda percent: report("copying base", percent),
            cancel=cancel,
        )
        os.truncate(part, image_size)
        report("copying base", 100)

        _check_cancel(cancel)
        report("partitioning", None)
        table = _add_data_partition(part, base_table)
        data = table.get(3)
        _check_room(contents, data.size, image_size)
        report("partitioning", 100)

        _check_cancel(cancel)
        report("building filesystem", 0)
        staging = scratch / "staging"
        _stage(contents, staging, cancel)
        _make_filesystem(part, data, staging, contents, report, cancel)
        _materialize_unwritten(part, data.start, data.end)
        report("building filesystem", 100)

        _check_cancel(cancel)
        report("writing config", None)
        config = scratch / "config.yaml"
        config.write_text(config_text, encoding="utf-8")
        _mcopy(part, boot, [(config, config_name), *boots])
        _check_cancel(cancel)
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


def render_config(
    hotspot_config: Mapping, contents: Sequence[tuple[Path, PurePosixPath]] = ()
) -> str:
    """The hotspot configuration YAML written onto the boot partition."""
    config = dict(hotspot_config)
    unknown = sorted(set(config) - set(HOTSPOT_KEYS))
    if unknown:
        raise BuildError(
            f"unknown hotspot_config keys {', '.join(unknown)}: "
            f"use only {', '.join(HOTSPOT_KEYS)}"
        )
    name = config.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BuildError("hotspot_config needs a non-empty 'name'")
    ssid = config.get("ssid") or name
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise BuildError(f"SSID {ssid!r} must be 1 to 32 bytes long: shorten it")
    password = config.get("wifi_password") or None
    if password is not None and not (
        isinstance(password, str)
        and 8 <= len(password) <= 63
        and password.isascii()
        and password.isprintable()
    ):
        raise BuildError(
            "the Wi-Fi password must be 8 to 63 printable ASCII characters "
            "(WPA2), or empty for an open network"
        )
    timezone = config.get("timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise BuildError(
            f"unknown timezone {timezone!r}: use an IANA name such as Europe/Paris"
        ) from None
    admin = config.get("admin")
    if admin is not None and not (
        isinstance(admin, Mapping)
        and set(admin) <= {"login", "password"}
        and all(isinstance(admin.get(k), str) and admin[k] for k in admin)
    ):
        raise BuildError("hotspot_config 'admin' must be {login: ..., password: ...}")
    branding = config.get("branding")
    if branding is not None and not isinstance(branding, Mapping):
        raise BuildError("hotspot_config 'branding' must map names to file names")
    content = config.get("content")
    if content is None:
        content = [
            {"path": str(dest), "size": src.stat().st_size} for src, dest in contents
        ]
    document = {
        "name": name,
        "ssid": ssid,
        "language": config.get("language") or "en",
        "timezone": timezone,
        "admin": dict(admin) if admin else None,
        "wifi_password": password,
        "branding": dict(branding) if branding else {},
        "content": list(content),
    }
    # JSON round trip: plain types only, so safe_dump never meets a Path or tuple.
    document = json.loads(json.dumps(document, default=str))
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def read_partition_table(image: Path) -> PartitionTable:
    """The partition table of an image file, as `sfdisk -J` reads it."""
    result = _run(["sfdisk", "-J", str(image)], what=f"read the partitions of {image}")
    try:
        table = json.loads(result.stdout)["partitiontable"]
    except (ValueError, KeyError):
        raise BuildError(
            f"{image} has no partition table: is it a disk image?"
        ) from None
    sector = int(table.get("sectorsize", 512))
    partitions = []
    for entry in table.get("partitions", []):
        suffix = entry["node"][len(str(image)) :].lstrip("p")
        partitions.append(
            Partition(
                number=int(suffix),
                start=int(entry["start"]) * sector,
                size=int(entry["size"]) * sector,
                type=str(entry["type"]),
            )
        )
    return PartitionTable(label=table["label"], partitions=tuple(partitions))


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
                _check_cancel(cancel)
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


def _check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise BuildCanceled("image build canceled")


def _check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool, path=tool_path()) is None]
    if missing:
        packages = " ".join(sorted({TOOLS[tool] for tool in missing}))
        raise BuildError(
            f"{', '.join(missing)} not found on PATH nor in {', '.join(SBIN)}: "
            f"install the {packages} "
            "package(s) (Debian: apt-get install " + packages + ")"
        )


def _check_content(content_files: ContentFiles) -> list[tuple[Path, PurePosixPath]]:
    contents: list[tuple[Path, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    for src, dest in content_files:
        src, dest = Path(src), PurePosixPath(dest)
        if dest.is_absolute() or not dest.parts or ".." in dest.parts:
            raise BuildError(
                f"content destination {str(dest)!r} must be a relative path "
                "inside the data partition, without '..'"
            )
        if not src.is_file():
            raise BuildError(f"content file {src} does not exist or is not a file")
        if dest in seen:
            raise BuildError(f"content destination {dest} is used twice")
        seen.add(dest)
        contents.append((src, dest))
    for _, dest in contents:
        if any(parent in seen for parent in dest.parents):
            raise BuildError(f"content destination {dest} is inside another file")
    return contents


def _check_boot_files(boot_files: ContentFiles) -> list[tuple[Path, str]]:
    checked = []
    for src, name in boot_files:
        src, name = Path(src), str(name)
        if not name or "/" in name or name in (".", "..") or name == CONFIG_NAME:
            raise BuildError(
                f"boot file name {name!r} must be a plain file name other than "
                f"{CONFIG_NAME}"
            )
        if not src.is_file():
            raise BuildError(f"boot file {src} does not exist or is not a file")
        checked.append((src, name))
    return checked


def _boot_partition(table: PartitionTable, image: Path) -> Partition:
    for partition in table.partitions:
        if partition.type.upper() in {t.upper() for t in FAT_TYPES}:
            return partition
    raise BuildError(
        f"base image {image} has no FAT boot partition: use a Raspberry Pi image"
    )


def _data_partition_start(table: PartitionTable, image: Path) -> int:
    numbers = [p.number for p in table.partitions]
    if numbers == [1, 2, 3]:
        return table.get(3).start
    if numbers == [1, 2]:
        return -(-table.get(2).end // ALIGNMENT) * ALIGNMENT
    raise BuildError(
        f"base image {image} has partitions {numbers}: it needs 1 (boot) and 2 "
        "(root), optionally 3 (data, grown to fill the card)"
    )


def _needed_bytes(contents: Sequence[tuple[Path, PurePosixPath]]) -> int:
    # Files round up to 4 KiB blocks, plus a block each for directory entries and
    # extent trees, plus the journal and ~1% of metadata (bitmaps, inode tables).
    files = sum(-(-src.stat().st_size // 4096) * 4096 + 4096 for src, _ in contents)
    return files + JOURNAL_MIB * MIB


def _check_size(image_bytes) -> int:
    # The API gives the card's usable bytes; a partition table counts sectors.
    if (
        not isinstance(image_bytes, int)
        or isinstance(image_bytes, bool)
        or image_bytes <= 0
        or image_bytes % 512
    ):
        raise BuildError(
            f"the image size {image_bytes!r} is not a whole number of 512-byte "
            "sectors: give the card's usable bytes, as the API does"
        )
    return image_bytes


def _check_room(contents, data_size: int, image_size: int) -> None:
    needed = _needed_bytes(contents)
    room = int(data_size * 0.99)
    if needed > room:
        raise BuildError(
            f"the content needs about {needed / 1e9:.2f} GB but the data partition of "
            f"a {image_size / 1e9:.2f} GB image holds {room / 1e9:.2f} GB: choose a "
            "bigger card or less content"
        )


def _add_data_partition(image: Path, base_table: PartitionTable) -> PartitionTable:
    flags = ["--no-reread", "--no-tell-kernel"]
    if base_table.label == "gpt":
        # The image grew: the backup GPT header must move to the new end.
        _run(
            ["sfdisk", *flags, "--relocate", "gpt-bak-std", str(image)], what="move GPT"
        )
    if base_table.get(3) is not None:
        # Keep the start, take all the space, make it a Linux partition.
        _run(
            ["sfdisk", *flags, "-N", "3", str(image)],
            stdin=", +, L\n",
            what="grow the data partition",
        )
    else:
        start = _data_partition_start(base_table, image) // 512
        _run(
            ["sfdisk", *flags, "--append", str(image)],
            stdin=f"start={start}, type=L\n",
            what="add the data partition",
        )
    table = read_partition_table(image)
    if table.get(3) is None:
        raise BuildError(f"sfdisk did not create partition 3 in {image}")
    return table


def _stage(
    contents: Sequence[tuple[Path, PurePosixPath]], staging: Path, cancel: Cancel | None
) -> None:
    """Build the tree mke2fs copies from, with links to the sources, not copies."""
    # Directories become the data partition's: the hotspot's services read them.
    staging.mkdir()
    os.chmod(staging, 0o755)  # noqa: S103
    for src, dest in contents:
        _check_cancel(cancel)
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


def _make_filesystem(
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


def _materialize_unwritten(image: Path, start: int, end: int) -> None:
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


def _mcopy(image: Path, boot: Partition, files: Sequence[tuple[Path, str]]) -> None:
    for src, name in files:
        _run(
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


def tool_path() -> str:
    """PATH, then the sbin folders it lacks: a tool earlier on PATH still wins."""
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(path + [folder for folder in SBIN if folder not in path])


def _run(
    command: list[str],
    *,
    what: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": tool_path(), "LC_ALL": "C", **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise BuildError(f"could not {what}: {command[0]} failed: {message}")
    return result


__all__ = [
    "PHASES",
    "BuildCanceled",
    "BuildError",
    "BuiltImage",
    "Partition",
    "PartitionTable",
    "build_image",
    "read_partition_table",
    "render_config",
    "sparse_copy",
]
