"""The card: what may be written (check_target), opening it, moving data to
and from it with retries, and noticing that it went away.

How a removed card is detected: an I/O error ENODEV/ENXIO/ENOENT/ENOMEDIUM means
removal. Any other error or short transfer triggers a probe, and so does the
passing time (``PROBE_INTERVAL``): the device node is gone or points to another
device, its /sys entry is gone, or its capacity changed (0: a USB reader with no
medium). EIO on a present card is retried (``RETRY_DELAYS``), then fails.
"""

import errno
import fcntl
import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from workers.writer.flash.errors import (
    CardRemoved,
    CardTooSmall,
    FlashError,
    InvalidInput,
    UnsafeTarget,
)

RETRY_DELAYS = (0.1, 0.5, 1.5)  # seconds before each retry of a transient EIO
PROBE_INTERVAL = 0.25  # seconds between removal probes while all goes well

_BLKSSZGET = 0x1268  # logical sector size, the O_DIRECT alignment unit
FILE_SECTOR = 4096  # O_DIRECT alignment that suits every file system for files
_REMOVED_ERRNOS = {errno.ENODEV, errno.ENXIO, errno.ENOENT, errno.ENOMEDIUM}


@dataclass(slots=True)
class Device:
    """An open card and what it looked like when opened, for the removal probe."""

    path: str
    fd: int
    rdev: int
    size: int
    sector: int
    is_file: bool = False  # then rdev is the file's inode number
    retries: int = 0
    probed_at: float = 0.0

    def removal(self) -> str | None:
        """Why the card counts as removed, or None if it still looks present."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            what = "card file" if self.is_file else "device node"
            return f"the {what} disappeared"
        except OSError:
            return None
        if self.is_file:
            if not stat.S_ISREG(st.st_mode) or st.st_ino != self.rdev:
                return "another card file is there now"
            if st.st_size != self.size:
                return "the capacity changed (another card?)"
            return None
        if not stat.S_ISBLK(st.st_mode) or st.st_rdev != self.rdev:
            return "the device node now belongs to another device"
        sysfs = f"/sys/dev/block/{os.major(self.rdev)}:{os.minor(self.rdev)}/size"
        try:
            sectors = int(Path(sysfs).read_text())
        except FileNotFoundError:
            return "the device left /sys"
        except (OSError, ValueError):
            return None
        if sectors == 0:
            return "no medium (capacity is 0)"
        if sectors * 512 != self.size:
            return "the capacity changed (another card?)"
        return None

    def check(self) -> None:
        reason = self.removal()
        if reason:
            raise CardRemoved(f"card removed from {self.path}: {reason}")

    def check_now_and_then(self) -> None:
        # Errors always probe; between them a few probes a second are enough.
        now = time.monotonic()
        if now - self.probed_at >= PROBE_INTERVAL:
            self.probed_at = now
            self.check()


def check_target(device: str | os.PathLike) -> None:
    """Raise UnsafeTarget if ``device`` is mounted, in use or holds the system.

    Mounts (/proc/self/mountinfo) and swap of the device and of its partitions
    count, and so do holders (device-mapper, RAID) built on them.
    """
    device = os.fspath(device)
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise InvalidInput(f"{device} does not exist: check with lsblk") from None
    if stat.S_ISREG(st.st_mode):
        return  # a file standing in for a card: flash() asks for file_ok
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidInput(f"{device} is not a block device")
    node = _sysfs(st.st_rdev)
    if node is None:
        return  # not a disk /sys knows about; nothing mounted can come from it
    family = [node] + [p for p in sorted(node.iterdir()) if (p / "partition").exists()]
    whole = node.parent if (node / "partition").exists() else node
    system = _system_devices()
    if _devnum(node) in system or _devnum(whole) in system:
        raise UnsafeTarget(f"{device} holds the running system (/); pick another disk")
    used = _mounted()
    for part in family:
        devnum = _devnum(part)
        if devnum in used:
            raise UnsafeTarget(
                f"{device} is in use: /dev/{part.name} is {used[devnum]}; "
                "unmount it first (or use --force)"
            )
        holders = sorted(h.name for h in (part / "holders").glob("*"))
        if holders:
            raise UnsafeTarget(
                f"{device} is in use by {', '.join(holders)} (device-mapper or "
                "RAID); stop that first (or use --force)"
            )


def open_device(
    path: str, flags: int, *, need: int, identity=None, file_ok: bool = False
) -> Device:
    try:
        try:
            fd = os.open(path, flags | os.O_DIRECT | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # A file system without O_DIRECT (a card file on an old tmpfs).
            fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        if identity is not None and exc.errno in _REMOVED_ERRNOS:
            raise CardRemoved(f"card removed from {path}: {exc.strerror}") from None
        if exc.errno == errno.ENOENT:
            raise InvalidInput(f"{path} does not exist: check with lsblk") from None
        if exc.errno in _REMOVED_ERRNOS:
            raise CardRemoved(f"no card in {path}: {exc.strerror}") from None
        if exc.errno == errno.EBUSY:
            raise UnsafeTarget(
                f"{path} is busy: mounted, or open by another writer"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise FlashError(
                f"no permission to open {path}: run as root or join group disk"
            ) from None
        raise FlashError(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if not file_ok:
                raise InvalidInput(
                    f"{path} is a regular file, not a card: pass --to-file to "
                    "write into a file"
                )
            if st.st_size % FILE_SECTOR:
                raise InvalidInput(
                    f"the card file {path} has {st.st_size} bytes: make it a "
                    f"multiple of {FILE_SECTOR} (truncate -s 8G {path})"
                )
            dev = Device(path, fd, st.st_ino, st.st_size, FILE_SECTOR, is_file=True)
        elif stat.S_ISBLK(st.st_mode):
            size = os.lseek(fd, 0, os.SEEK_END)
            sector = struct.unpack("i", fcntl.ioctl(fd, _BLKSSZGET, b"\0" * 4))[0]
            dev = Device(path, fd, st.st_rdev, size, sector)
        else:
            raise InvalidInput(f"{path} is not a block device")
        if dev.size == 0:
            raise CardRemoved(f"no card in {path} (capacity is 0)")
        if identity is not None and identity != (dev.rdev, dev.size):
            raise CardRemoved(f"card removed from {path}: another card is there now")
        if dev.size < need:
            raise CardTooSmall(
                f"the card in {path} holds {dev.size} bytes but the image needs "
                f"{need}: use a bigger card"
            )
    except BaseException:
        os.close(fd)
        raise
    return dev


def transfer(dev: Device, op, view: memoryview, offset: int, what: str) -> None:
    """Move all of ``view`` with ``op`` (os.preadv/os.pwritev), retrying EIO."""
    pos, attempt = 0, 0
    while pos < len(view):
        try:
            moved = op(dev.fd, [view[pos:]], offset + pos)
        except OSError as exc:
            if exc.errno in _REMOVED_ERRNOS:
                raise CardRemoved(
                    f"card removed from {dev.path}: {exc.strerror}"
                ) from None
            dev.check()
            if exc.errno == errno.EIO and attempt < len(RETRY_DELAYS):
                time.sleep(RETRY_DELAYS[attempt])
                attempt += 1
                dev.retries += 1
                continue
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise FlashError(
                f"error {what} {dev.path} at byte {offset + pos}{tries}: "
                f"{exc.strerror}; the card may be worn out"
            ) from None
        if not moved:
            dev.check()
            raise FlashError(f"{dev.path} stopped {what} at byte {offset + pos}")
        pos += moved


def sync(dev: Device) -> None:
    try:
        os.fsync(dev.fd)
    except OSError as exc:
        dev.check()
        raise FlashError(f"cannot flush {dev.path}: {exc.strerror}") from None


# -- what is in use -----------------------------------------------------------


def _sysfs(rdev: int) -> Path | None:
    node = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    return node.resolve() if node.exists() else None


def _devnum(node: Path) -> int:
    major, minor = (node / "dev").read_text().strip().split(":")
    return os.makedev(int(major), int(minor))


def _mounted() -> dict[int, str]:
    """Device numbers in use -> description (mounts and swap)."""
    used: dict[int, str] = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            major, minor = fields[2].split(":")
            mountpoint = fields[4].replace("\\040", " ")
            source = fields[fields.index("-") + 2]
            devnums = {os.makedev(int(major), int(minor))}
            devnums.add(_rdev(source))  # btrfs and others report an anonymous number
            for devnum in devnums - {None}:
                used.setdefault(devnum, f"mounted on {mountpoint}")
    try:
        with open("/proc/swaps") as swaps:
            for line in list(swaps)[1:]:
                devnum = _rdev(line.split()[0])
                if devnum is not None:
                    used.setdefault(devnum, "used as swap")
    except FileNotFoundError:
        pass
    return used


def _rdev(path: str) -> int | None:
    if not path.startswith("/"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def _system_devices() -> set[int]:
    """Device numbers of what holds /: the partition, its disk, and the disks
    under device-mapper or RAID."""
    found: set[int] = set()
    todo = []
    node = _sysfs(os.stat("/").st_dev)
    if node is None:  # btrfs, overlay: ask the mount table which device it is
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                fields = line.split()
                if fields[4] == "/":
                    rdev = _rdev(fields[fields.index("-") + 2])
                    node = _sysfs(rdev) if rdev is not None else node
    if node is not None:
        todo.append(node)
    while todo:
        node = todo.pop()
        if not (node / "dev").exists():
            continue
        devnum = _devnum(node)
        if devnum in found:
            continue
        found.add(devnum)
        if (node / "partition").exists():
            todo.append(node.parent)
        todo.extend(p.resolve() for p in (node / "slaves").glob("*"))
    return found
