"""Reading the card back: compared with the image byte for byte (memcmp
against pieces of the image read with pread), or hashed against the bmap's
checksums. Memory stays the same whatever the image size: a few buffers of
``buffer_size``, never a mapping of the image."""

import collections
import contextlib
import ctypes
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from workers.common.bmap import Bmap, data_extents
from workers.writer.flash.buffers import (
    DEFAULT_BUFFER,
    address,
    aligned,
    check_buffer_size,
)
from workers.writer.flash.device import open_device, transfer
from workers.writer.flash.errors import InvalidInput, Progress, VerifyMismatch
from workers.writer.flash.image import as_bmap, merge, open_image, read_image

READ_DEPTH = 2  # reads of the card in flight while verifying
RING = 4  # card buffers while verifying: those in flight and those compared
_ZEROS = "zeros"  # in a verify plan: a hole of the image, zeros on the card


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
    check_buffer_size(buffer_size)
    if isinstance(reference, Bmap) or os.fspath(reference).endswith(".bmap"):
        bmap = as_bmap(reference)
    else:
        bmap, image = None, reference
    image = os.fspath(image) if image is not None else None
    return read_back(os.fspath(device), bmap, image, progress, buffer_size)[0]


def read_back(device, bmap, image, progress, buffer_size, identity=None):
    """Return (bytes checked, I/O retries)."""
    if bmap is None:
        if image is None:
            raise InvalidInput("verify needs a bmap or the image")
        size = total = os.stat(image).st_size
    else:
        size, total = bmap.image_size, bmap.mapped_bytes
        if image is None and any(c is None for _, _, c in bmap.ranges):
            raise InvalidInput("the bmap has ranges without checksum: pass the image")
    done = 0
    with contextlib.ExitStack() as stack:
        image_fd = -1
        if image is not None:
            image_fd = open_image(image)
            stack.callback(os.close, image_fd)
            if os.fstat(image_fd).st_size != size:
                raise InvalidInput(
                    f"{image} has {os.fstat(image_fd).st_size} bytes, the bmap "
                    f"describes {size}: use the bmap made for this image"
                )
        # The plan is walked as the card is read, never held as a list: its
        # length grows with the image (its extents, the bmap's ranges).
        if bmap is None:
            plan = _whole_image(image_fd, size)
        elif image is not None:  # compared with the image: no checksum is needed
            plan = ((s, e, None) for s, e in merge(_spans(bmap)))
        else:
            plan = bmap.byte_ranges()
        dev = open_device(
            device, os.O_RDONLY, need=size, identity=identity, file_ok=True
        )
        stack.callback(os.close, dev.fd)
        # Reader threads keep READ_DEPTH reads of the card in flight (a card
        # reader, like a disk, delivers more with a queue than with one request
        # at a time, which is what dd does) while this thread reads the same
        # piece of the image (pread: from the page cache after flash() wrote
        # the card) and compares or hashes the oldest piece (pread, memcmp and
        # sha256 release the GIL).
        cards = [stack.enter_context(aligned(buffer_size)) for _ in range(RING)]
        card_at = [address(view) for view in cards]
        reference = stack.enter_context(aligned(buffer_size))
        reference_at = address(reference)
        # Never written, so it reads as zeros from the kernel's shared zero page.
        zeros_at = address(stack.enter_context(aligned(buffer_size)))
        reader = stack.enter_context(ThreadPoolExecutor(READ_DEPTH, "verify-read"))

        def pieces():
            for start, end, checksum in plan:
                pos = start
                while pos < end:
                    stop = min(end, pos - pos % dev.sector + buffer_size)
                    yield start, end, checksum, pos, stop
                    pos = stop

        def read(pos: int, stop: int, slot: int) -> int:
            low = pos - pos % dev.sector
            high = -(-stop // dev.sector) * dev.sector
            transfer(dev, os.preadv, cards[slot][: high - low], low, "reading")
            return low

        if progress:
            progress("verifying", 0, total)
        queue = pieces()
        free = list(range(RING))
        window: collections.deque = collections.deque()

        def fill() -> None:
            while free and (piece := next(queue, None)):
                slot = free.pop()
                window.append((piece, slot, reader.submit(read, *piece[3:], slot)))

        fill()
        digest = None
        while window:
            (start, end, checksum, pos, stop), current, pending = window.popleft()
            if checksum is None:  # the image's piece, read while the card's is
                read_image(image_fd, reference[: stop - pos], pos)
            low = pending.result()
            if checksum is None or checksum == _ZEROS:
                got = card_at[current] + pos - low
                want = zeros_at if checksum else reference_at
                if _memcmp(got, want, stop - pos):
                    at = pos + _first_difference(got, want, stop - pos)
                    raise VerifyMismatch(
                        f"the card differs from the image at byte {at}: "
                        "write it again or use another card",
                        at,
                    )
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


def _spans(bmap: Bmap):
    return ((start, end) for start, end, _ in bmap.byte_ranges())


def _whole_image(fd: int, size: int):
    """A plan covering every byte: the image's data compared with the image,
    its holes with zeros (reading a hole would only copy zeros)."""
    pos = 0
    for start, end in data_extents(fd, size):
        if start > pos:
            yield pos, start, _ZEROS
        yield start, end, None
        pos = end
    if pos < size:
        yield pos, size, _ZEROS


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
