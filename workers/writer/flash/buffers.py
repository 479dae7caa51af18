"""Memory the engine moves data through: page-aligned buffers, as O_DIRECT
requires, and the image mapped read-only for comparisons."""

import contextlib
import ctypes
import mmap

from workers.writer.flash.errors import InvalidInput

MiB = 1024 * 1024
DEFAULT_BUFFER = 4 * MiB
HUGE_PAGE = 2 * MiB


def check_buffer_size(size: int) -> None:
    if size % 4096 or not 64 * 1024 <= size <= 64 * MiB:
        raise InvalidInput(f"buffer size must be 64 KiB-64 MiB in 4 KiB steps: {size}")


@contextlib.contextmanager
def aligned(size: int):
    """A page-aligned buffer (anonymous mmap), as O_DIRECT requires.

    It also starts on a 2 MiB boundary and asks for huge pages: each O_DIRECT
    transfer then pins a couple of pages instead of a thousand (10-20% faster
    on a fast device; the spare 2 MiB are never touched, so cost no memory).
    """
    buf = mmap.mmap(-1, size + HUGE_PAGE)
    skip = -address(buf) % HUGE_PAGE
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


def address(buffer) -> int:
    """Where a writable buffer (mmap, memoryview of one) starts in memory."""
    anchor = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # it holds an export that would keep the map from closing


@contextlib.contextmanager
def mapped(fd: int, size: int):
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
        yield data, address(data)
    finally:
        data.close()


def forget(data: mmap.mmap | None, start: int, end: int) -> None:
    """Unmap pages we are done with (they stay in the page cache): otherwise
    the process's resident size grows to the size of the image."""
    if data is not None:
        low = start - start % mmap.PAGESIZE
        data.madvise(mmap.MADV_DONTNEED, low, end - low)
