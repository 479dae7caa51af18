"""Flash engine of the writer: copy a disk image to an SD card, then verify it.

Why it looks like this:

- With a bmap only the mapped blocks are written; without one the whole image is
  written byte for byte, like ``dd``, and verified against the image itself. Holes
  are only skipped when a bmap vouches for the image: nobody else says they are
  unused.
- The card is opened with ``O_DIRECT`` and written from page-aligned (mmap) buffers:
  the page cache neither delays write errors until close nor fills the writer
  host's memory, and the process stays small however big the image is.
- The first MiB (partition table, boot code) is written last, after a flush, so a
  card pulled half-way never looks bootable.
- Verification reads the card back with ``O_DIRECT`` (the cache would only prove
  that we remember what we wrote). With the image at hand (always, in ``flash``)
  the card is compared with it byte for byte (libc memcmp against the
  memory-mapped image, no copy); the image itself is checked against the bmap's
  range checksums while the card is written, once per image and process (a
  writer writes many cards of one image). So the card's ranges match the
  checksums, as bmaptool would check them, without hashing every card: sha256
  (about 1.8 GB/s on one core here) would be slower than reading a fast card.
  ``verify(device, bmap)`` without the image hashes the card's ranges instead.
- A regular file can stand in for a card (``file_ok``): the demo and tests
  without root write into sparse files; the card is "removed" when its file is
  deleted or replaced.

How a removed card is detected: an I/O error ENODEV/ENXIO/ENOENT/ENOMEDIUM means
removal. Any other error or short transfer triggers a probe, and so does the
passing time (``PROBE_INTERVAL``): the device node is gone or points to another
device, its /sys entry is gone, or its capacity changed (0: a USB reader with no
medium). EIO on a present card is retried (``RETRY_DELAYS``), then fails. The
device is closed and reopened between the body, the first MiB and verification,
because Linux defers a detach of a busy device (``losetup -d``) to its last close:
the reopen then sees capacity 0 (or another device) before the first MiB.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from workers.common.bmap import Bmap, data_extents, load_bmap

MiB = 1024 * 1024
HEAD_BYTES = 1 * MiB  # written last
DEFAULT_BUFFER = 4 * MiB
READ_DEPTH = 2  # reads of the card in flight while verifying
RING = 4  # card buffers while verifying: those in flight and those compared
HUGE_PAGE = 2 * MiB
RETRY_DELAYS = (0.1, 0.5, 1.5)  # seconds before each retry of a transient EIO
PROBE_INTERVAL = 0.25  # seconds between removal probes while all goes well

_BLKSSZGET = 0x1268  # logical sector size, the O_DIRECT alignment unit
FILE_SECTOR = 4096  # O_DIRECT alignment that suits every file system for files
_REMOVED_ERRNOS = {errno.ENODEV, errno.ENXIO, errno.ENOENT, errno.ENOMEDIUM}
_ZEROS = "zeros"  # in a verify plan: a hole of the image, zeros on the card

Progress = Callable[[str, int, int], None]


class FlashError(Exception):
    """The card could not be written or verified."""


class InvalidInput(FlashError, ValueError):
    """The image, bmap or device argument cannot be used."""


class CardTooSmall(FlashError):
    """The card is smaller than the image."""


class CardRemoved(FlashError):
    """The card (or its reader) went away."""


class VerifyMismatch(FlashError):
    """What was read back differs from the image."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


class UnsafeTarget(FlashError):
    """The device is mounted, in use or holds the running system."""


@dataclass(slots=True)
class FlashResult:
    bytes_written: int
    bytes_verified: int
    write_seconds: float
    verify_seconds: float
    io_retries: int = 0


@dataclass(slots=True)
class _Device:
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


def flash(
    image: str | os.PathLike,
    device: str | os.PathLike,
    bmap: Bmap | str | os.PathLike | None = None,
    *,
    verify: bool = True,
    force: bool = False,
    file_ok: bool = False,
    progress: Progress | None = None,
    buffer_size: int = DEFAULT_BUFFER,
) -> FlashResult:
    """Write ``image`` to ``device`` (only the mapped blocks with a bmap), verify.

    ``force`` skips the safety checks (mounted, in use, system disk), never the
    size check. ``file_ok`` lets a regular file stand in for the card.
    ``progress(phase, done_bytes, total_bytes)`` is called with phase "writing"
    then "verifying". The image is checked against the bmap's checksums while
    the card is written: a mismatch raises InvalidInput before the first MiB.
    """
    image, device = os.fspath(image), os.fspath(device)
    _check_buffer_size(buffer_size)
    bmap = _load(bmap)
    image_fd = _open_image(image)
    try:
        image_size = os.fstat(image_fd).st_size
        if bmap is not None and bmap.image_size != image_size:
            raise InvalidInput(
                f"the bmap describes a {bmap.image_size}-byte image but {image} has "
                f"{image_size} bytes: use the bmap made for this image"
            )
        if not force:
            check_target(device)
        if bmap is None:
            segments = [(0, image_size)]
        else:
            segments = _merge((s, e) for s, e, _ in bmap.byte_ranges())
        body = [(max(s, HEAD_BYTES), e) for s, e in segments if e > HEAD_BYTES]
        head = [(s, min(e, HEAD_BYTES)) for s, e in segments if s < HEAD_BYTES]
        total = sum(e - s for s, e in segments)

        with _aligned(buffer_size) as buf, _ImageCheck(image_fd, bmap) as checking:
            started = time.monotonic()
            done = 0

            def report(n: int) -> None:
                nonlocal done
                done += n
                if progress:
                    progress("writing", done, total)

            if progress:
                progress("writing", 0, total)
            flags = os.O_RDWR | (0 if force else os.O_EXCL)
            dev = _open_device(device, flags, need=image_size, file_ok=file_ok)
            identity = dev.rdev, dev.size
            retries = 0
            try:
                _copy(image_fd, dev, body, buf, report)
                _sync(dev)
            finally:
                retries += dev.retries
                os.close(dev.fd)
            # A card of an image that is not what its bmap says must not boot.
            checking.result(image)
            # Reopen: a detach deferred to our close shows up now, before the head.
            dev = _open_device(
                device, flags, need=image_size, identity=identity, file_ok=file_ok
            )
            try:
                _copy(image_fd, dev, head, buf, report)
                _sync(dev)
            finally:
                retries += dev.retries
                os.close(dev.fd)
            write_seconds = time.monotonic() - started
    finally:
        os.close(image_fd)

    verified, verify_seconds = 0, 0.0
    if verify:
        started = time.monotonic()
        verified, more = _verify(
            device, bmap, image, progress, buffer_size, identity=identity
        )
        retries += more
        verify_seconds = time.monotonic() - started
    return FlashResult(total, verified, write_seconds, verify_seconds, retries)


def verify(
    device: str | os.PathLike,
    reference: Bmap | str | os.PathLike,
    *,
    image: str | os.PathLike | None = None,
    progress: Progress | None = None,
    buffer_size: int = DEFAULT_BUFFER,
) -> int:
    """Read the card back and compare; return the bytes checked.

    ``reference`` is a Bmap or a ``.bmap`` path, or an image path (the whole
    image compared). With a bmap and no ``image`` the card's ranges are hashed
    and checked against the bmap's checksums; with ``image`` too, the bmap's
    ranges of the card are compared with the image byte for byte (faster; the
    image is trusted as it is: ``flash`` checks it against the bmap while it
    writes). Raises VerifyMismatch.
    A regular file is read like a card.
    """
    _check_buffer_size(buffer_size)
    if isinstance(reference, Bmap) or os.fspath(reference).endswith(".bmap"):
        bmap = _load(reference)
    else:
        bmap, image = None, reference
    image = os.fspath(image) if image is not None else None
    return _verify(os.fspath(device), bmap, image, progress, buffer_size)[0]


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


# -- writing ------------------------------------------------------------------


def _copy(image_fd: int, dev: _Device, segments, view: memoryview, report) -> None:
    for start, end in segments:
        pos = start
        while pos < end:
            low = pos - pos % dev.sector
            stop = min(end, low + len(view))
            high = -(-stop // dev.sector) * dev.sector
            # O_DIRECT moves whole sectors: keep the card's bytes around an
            # unaligned piece (bmaps with blocks smaller than the sector).
            if pos != low:
                _transfer(dev, os.preadv, view[: dev.sector], low, "reading")
            if stop != high:
                tail = high - dev.sector
                chunk = view[tail - low : high - low]
                _transfer(dev, os.preadv, chunk, tail, "reading")
            _read_image(image_fd, view[pos - low : stop - low], pos)
            _transfer(dev, os.pwritev, view[: high - low], low, "writing")
            report(stop - pos)
            pos = stop
            dev.check_now_and_then()


def _merge(ranges) -> list[tuple[int, int]]:
    """Join touching byte ranges so the card gets fewer, larger writes."""
    merged: list[list[int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _read_image(fd: int, view: memoryview, offset: int) -> None:
    pos = 0
    while pos < len(view):
        got = os.preadv(fd, [view[pos:]], offset + pos)
        if not got:
            raise FlashError(f"the image ended early at byte {offset + pos}")
        pos += got


def _transfer(dev: _Device, op, view: memoryview, offset: int, what: str) -> None:
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


def _sync(dev: _Device) -> None:
    try:
        os.fsync(dev.fd)
    except OSError as exc:
        dev.check()
        raise FlashError(f"cannot flush {dev.path}: {exc.strerror}") from None


# -- verifying ----------------------------------------------------------------


def _verify(device, bmap, image, progress, buffer_size, identity=None):
    """Return (bytes checked, I/O retries)."""
    if bmap is None:
        if image is None:
            raise InvalidInput("verify needs a bmap or the image")
        size = os.stat(image).st_size
        plan = _whole_image(image, size)
    else:
        size = bmap.image_size
        plan = list(bmap.byte_ranges())
        if image is None and any(c is None for _, _, c in plan):
            raise InvalidInput("the bmap has ranges without checksum: pass the image")
        if image is not None:  # compared with the image: no checksum is needed
            plan = [(s, e, None) for s, e in _merge((s, e) for s, e, _ in plan)]
    total = sum(e - s for s, e, _ in plan)
    done = 0
    with contextlib.ExitStack() as stack:
        image_map, image_at = None, 0
        if image is not None:
            image_fd = _open_image(image)
            stack.callback(os.close, image_fd)
            if os.fstat(image_fd).st_size != size:
                raise InvalidInput(
                    f"{image} has {os.fstat(image_fd).st_size} bytes, the bmap "
                    f"describes {size}: use the bmap made for this image"
                )
            image_map, image_at = stack.enter_context(_mapped(image_fd, size))
        dev = _open_device(
            device, os.O_RDONLY, need=size, identity=identity, file_ok=True
        )
        stack.callback(os.close, dev.fd)
        # Reader threads keep READ_DEPTH reads of the card in flight (a card
        # reader, like a disk, delivers more with a queue than with one request
        # at a time, which is what dd does) while this thread compares or
        # hashes the oldest piece (memcmp and sha256 release the GIL).
        cards = [stack.enter_context(_aligned(buffer_size)) for _ in range(RING)]
        card_at = [_address(view) for view in cards]
        # Never written, so it reads as zeros from the kernel's shared zero page.
        zeros_at = _address(stack.enter_context(_aligned(buffer_size)))
        reader = stack.enter_context(ThreadPoolExecutor(READ_DEPTH, "verify-read"))

        def pieces():
            for index, (start, end, _) in enumerate(plan):
                pos = start
                while pos < end:
                    stop = min(end, pos - pos % dev.sector + buffer_size)
                    yield index, pos, stop
                    pos = stop

        def read(index: int, pos: int, stop: int, slot: int) -> int:
            low = pos - pos % dev.sector
            high = -(-stop // dev.sector) * dev.sector
            _transfer(dev, os.preadv, cards[slot][: high - low], low, "reading")
            return low

        if progress:
            progress("verifying", 0, total)
        queue = pieces()
        free = list(range(RING))
        window: collections.deque = collections.deque()

        def fill() -> None:
            while free and (piece := next(queue, None)):
                slot = free.pop()
                window.append((piece, slot, reader.submit(read, *piece, slot)))

        fill()
        digest = None
        while window:
            (index, pos, stop), current, pending = window.popleft()
            low = pending.result()
            start, end, checksum = plan[index]
            if checksum is None or checksum == _ZEROS:
                got = card_at[current] + pos - low
                want = zeros_at if checksum else image_at + pos
                if _memcmp(got, want, stop - pos):
                    at = pos + _first_difference(got, want, stop - pos)
                    raise VerifyMismatch(
                        f"the card differs from the image at byte {at}: "
                        "write it again or use another card",
                        at,
                    )
                if not checksum:
                    _forget(image_map, pos, stop)
            else:
                if pos == start:
                    digest = hashlib.new(bmap.checksum_type)
                digest.update(cards[current][pos - low : stop - low])
                if stop == end and digest.hexdigest() != checksum:
                    first = start // bmap.block_size
                    last = (end - 1) // bmap.block_size
                    raise VerifyMismatch(
                        f"the card differs from the image in blocks {first}-{last} "
                        f"(bytes {start}-{end - 1}): write it again or use another "
                        "card",
                        start,
                    )
            free.append(current)
            fill()
            done += stop - pos
            if progress:
                progress("verifying", done, total)
            dev.check_now_and_then()
    return done, dev.retries


def _whole_image(image: str, size: int) -> list[tuple[int, int, str | None]]:
    """A plan covering every byte: the image's data compared with the image,
    its holes with zeros (mapping a hole would fill the page cache with them)."""
    fd = _open_image(image)
    try:
        plan, pos = [], 0
        for start, end in data_extents(fd, size):
            if start > pos:
                plan.append((pos, start, _ZEROS))
            plan.append((start, end, None))
            pos = end
    finally:
        os.close(fd)
    if pos < size:
        plan.append((pos, size, _ZEROS))
    return plan


# libc's memcmp through ctypes: it releases the GIL and runs at memory speed,
# far faster than comparing memoryviews in Python.
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int


def _first_difference(a: int, b: int, length: int) -> int:
    """Offset of the first differing byte of two buffers that differ."""
    equal, differ = 0, length  # the first `equal` bytes match; `differ` do not
    while differ - equal > 1:
        middle = (equal + differ) // 2
        if _memcmp(a, b, middle):
            differ = middle
        else:
            equal = middle
    return equal


def _address(buffer) -> int:
    """Where a writable buffer (mmap, memoryview of one) starts in memory."""
    anchor = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # it holds an export that would keep the map from closing


@contextlib.contextmanager
def _mapped(fd: int, size: int):
    """The whole image mapped in memory and its address (private, never
    written: writable only so ctypes can take its address). Only the pages that
    are compared are ever read, so holes cost nothing. A page that cannot be
    read would kill the process (SIGBUS), but flash() has just read each of
    them with pread to write the card, where an error is an OSError."""
    if size == 0:
        yield None, 0
        return
    data = mmap.mmap(fd, size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        yield data, _address(data)
    finally:
        data.close()


def _forget(data: mmap.mmap | None, start: int, end: int) -> None:
    """Unmap pages we are done with (they stay in the page cache): otherwise
    the process's resident size grows to the size of the image."""
    if data is not None:
        low = start - start % mmap.PAGESIZE
        data.madvise(mmap.MADV_DONTNEED, low, end - low)


# Images whose ranges matched their bmap in this process: a writer writes many
# cards of one image and checks it once. Keyed by what changes with the file.
_checked_images: set[tuple] = set()


class _ImageCheck:
    """Hash the image's mapped ranges against the bmap's checksums in a thread
    while the card is written (the image is in the page cache; sha256 runs on
    another core). ``result`` waits for it and raises InvalidInput."""

    def __init__(self, image_fd: int, bmap: Bmap | None):
        self.fd = image_fd
        self.bmap = bmap
        self.ranges = []
        self.key = None
        if bmap is not None:
            self.ranges = [(s, e, c) for s, e, c in bmap.byte_ranges() if c]
            st = os.fstat(image_fd)
            self.key = (
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                bmap.checksum_type,
                hashlib.sha256(repr(self.ranges).encode()).hexdigest(),
            )
        self.bad: tuple[int, int] | None = None
        self.error: Exception | None = None  # the image could not be read
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self):
        if self.ranges and self.key not in _checked_images:
            self.thread = threading.Thread(target=self.run, name="image-check")
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def run(self) -> None:
        try:
            self.hash_ranges()
        except (OSError, FlashError) as exc:  # unreadable or shorter: not checked
            self.error = exc

    def hash_ranges(self) -> None:
        # pread, not mmap: a read error of the image is then an OSError, where
        # a mapped page that cannot be read would kill the process (SIGBUS).
        with _aligned(DEFAULT_BUFFER) as buffer:
            for start, end, checksum in self.ranges:
                digest = hashlib.new(self.bmap.checksum_type)
                for pos in range(start, end, DEFAULT_BUFFER):
                    if self.stop.is_set():
                        return
                    piece = buffer[: min(end - pos, DEFAULT_BUFFER)]
                    _read_image(self.fd, piece, pos)
                    digest.update(piece)
                if digest.hexdigest() != checksum:
                    self.bad = (start, end)
                    return

    def result(self, image: str) -> None:
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        if self.error is not None:
            # The image's fault, not the card's: InvalidInput fails the copy.
            why = getattr(self.error, "strerror", None) or self.error
            raise InvalidInput(
                f"cannot read {image} to check it against its bmap: {why}"
            )
        if self.bad is not None:
            start, end = self.bad
            block = self.bmap.block_size
            raise InvalidInput(
                f"{image} does not match its bmap in blocks {start // block}-"
                f"{(end - 1) // block} (bytes {start}-{end - 1}): the image is "
                "damaged or the bmap is another image's; download both again"
            )
        _checked_images.add(self.key)


@contextlib.contextmanager
def _aligned(size: int):
    """A page-aligned buffer (anonymous mmap), as O_DIRECT requires.

    It also starts on a 2 MiB boundary and asks for huge pages: each O_DIRECT
    transfer then pins a couple of pages instead of a thousand (10-20% faster
    on a fast device; the spare 2 MiB are never touched, so cost no memory).
    """
    buf = mmap.mmap(-1, size + HUGE_PAGE)
    skip = -_address(buf) % HUGE_PAGE
    with contextlib.suppress(AttributeError, OSError):  # no THP: small pages
        buf.madvise(mmap.MADV_HUGEPAGE)
    view = memoryview(buf)[skip : skip + size]
    try:
        yield view
    finally:
        # Slices kept alive by a traceback pin the map; then GC unmaps it later.
        with contextlib.suppress(BufferError):
            view.release()
            buf.close()


# -- opening ------------------------------------------------------------------


def _check_buffer_size(size: int) -> None:
    if size % 4096 or not 64 * 1024 <= size <= 64 * MiB:
        raise InvalidInput(f"buffer size must be 64 KiB-64 MiB in 4 KiB steps: {size}")


def _load(bmap) -> Bmap | None:
    if bmap is None or isinstance(bmap, Bmap):
        return bmap
    try:
        return load_bmap(bmap)
    except FileNotFoundError:
        raise InvalidInput(f"bmap file {os.fspath(bmap)} does not exist") from None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _open_image(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(f"cannot open image {path}: {exc.strerror}") from None


def _open_device(
    path: str, flags: int, *, need: int, identity=None, file_ok: bool = False
) -> _Device:
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
            dev = _Device(path, fd, st.st_ino, st.st_size, FILE_SECTOR, is_file=True)
        elif stat.S_ISBLK(st.st_mode):
            size = os.lseek(fd, 0, os.SEEK_END)
            sector = struct.unpack("i", fcntl.ioctl(fd, _BLKSSZGET, b"\0" * 4))[0]
            dev = _Device(path, fd, st.st_rdev, size, sector)
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


# -- command line -------------------------------------------------------------

EXIT_CODES = (
    (InvalidInput, 2),
    (CardTooSmall, 3),
    (CardRemoved, 4),
    (VerifyMismatch, 5),
    (UnsafeTarget, 6),
    (FlashError, 1),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One line, like every other failure of this tool.
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m workers.writer.flash",
        description="Write a disk image to a card (only mapped blocks with a bmap, "
        "first MiB last) and verify it by reading the card back.",
        epilog="exit codes: 0 ok, 1 other error, 2 bad arguments, 3 card too small, "
        "4 card removed, 5 verification failed, 6 unsafe target (mounted, in use, "
        "system disk)",
    )
    parser.add_argument("image", help="raw image file (may be sparse)")
    parser.add_argument("device", help="block device of the card, e.g. /dev/sdb")
    parser.add_argument("--bmap", help="block map; without it all the image is written")
    parser.add_argument(
        "--force", action="store_true", help="write even if mounted or a system disk"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip reading the card back"
    )
    parser.add_argument(
        "--to-file",
        action="store_true",
        help="DEVICE may be a regular file standing in for a card (tests, demos)",
    )
    parser.add_argument(
        "--buffer-mib", type=int, default=4, choices=range(1, 17), metavar="1-16"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def show(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            bars[phase] = tqdm(
                total=total, desc=phase, unit="B", unit_scale=True, unit_divisor=1024
            )
        bar = bars[phase]
        bar.update(done - bar.n)

    try:
        result = flash(
            args.image,
            args.device,
            args.bmap,
            verify=not args.no_verify,
            force=args.force,
            file_ok=args.to_file,
            progress=None if args.quiet else show,
            buffer_size=args.buffer_mib * MiB,
        )
    except FlashError as exc:
        _close(bars)
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return next(code for cls, code in EXIT_CODES if isinstance(exc, cls))
    except KeyboardInterrupt:
        _close(bars)
        print("error: interrupted; the card is incomplete", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. the image's disk failing while it is read
        _close(bars)
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _close(bars)
    rate = result.bytes_written / MiB / max(result.write_seconds, 1e-9)
    line = (
        f"wrote {result.bytes_written / MiB:.1f} MiB in "
        f"{result.write_seconds:.1f} s ({rate:.1f} MiB/s)"
    )
    if not args.no_verify:
        line += (
            f", verified {result.bytes_verified / MiB:.1f} MiB in "
            f"{result.verify_seconds:.1f} s"
        )
    print(line)
    return 0


def _close(bars) -> None:
    for bar in bars.values():
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
