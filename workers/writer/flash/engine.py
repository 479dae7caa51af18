"""Writing a card: only the bmap's blocks (or the whole image), from aligned
buffers with O_DIRECT, the first MiB last, then reading it back."""

import itertools
import os
import time
from dataclasses import dataclass

from workers.common.bmap import Bmap
from workers.writer.flash.buffers import DEFAULT_BUFFER, MiB, aligned, check_buffer_size
from workers.writer.flash.device import (
    Device,
    check_target,
    open_device,
    sync,
    transfer,
)
from workers.writer.flash.errors import InvalidInput, Progress
from workers.writer.flash.image import (
    ImageCheck,
    as_bmap,
    merge,
    open_image,
    read_image,
)
from workers.writer.flash.verify import read_back

HEAD_BYTES = 1 * MiB  # written last


@dataclass(slots=True)
class FlashResult:
    bytes_written: int
    bytes_verified: int
    write_seconds: float
    verify_seconds: float
    io_retries: int = 0


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
    check_buffer_size(buffer_size)
    bmap = as_bmap(bmap)
    image_fd = open_image(image)
    try:
        image_size = os.fstat(image_fd).st_size
        if bmap is not None and bmap.image_size != image_size:
            raise InvalidInput(
                f"the bmap describes a {bmap.image_size}-byte image but {image} has "
                f"{image_size} bytes: use the bmap made for this image"
            )
        if not force:
            check_target(device)

        # Walked as they are written, never listed: the bmap's ranges of a big
        # image are many.
        def segments():
            if bmap is None:
                return iter([(0, image_size)])
            return merge((s, e) for s, e, _ in bmap.byte_ranges())

        body = ((max(s, HEAD_BYTES), e) for s, e in segments() if e > HEAD_BYTES)
        head = (
            (s, min(e, HEAD_BYTES))
            for s, e in itertools.takewhile(lambda r: r[0] < HEAD_BYTES, segments())
        )
        total = image_size if bmap is None else bmap.mapped_bytes

        with aligned(buffer_size) as buf, ImageCheck(image_fd, bmap) as checking:
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

            def write(segments, identity=None) -> tuple[tuple[int, int], int]:
                """Open the card, write ``segments``, flush and close it:
                (the card's identity, I/O retries)."""
                dev = open_device(
                    device, flags, need=image_size, identity=identity, file_ok=file_ok
                )
                try:
                    _copy(image_fd, dev, segments, buf, report)
                    sync(dev)
                finally:
                    os.close(dev.fd)
                return (dev.rdev, dev.size), dev.retries

            identity, retries = write(body)
            # A card of an image that is not what its bmap says must not boot.
            checking.result(image)
            # Reopen: a detach deferred to our close shows up now, before the head.
            _, more = write(head, identity)
            retries += more
            write_seconds = time.monotonic() - started
    finally:
        os.close(image_fd)

    verified, verify_seconds = 0, 0.0
    if verify:
        started = time.monotonic()
        verified, more = read_back(
            device, bmap, image, progress, buffer_size, identity=identity
        )
        retries += more
        verify_seconds = time.monotonic() - started
    return FlashResult(total, verified, write_seconds, verify_seconds, retries)


def _copy(image_fd: int, dev: Device, segments, view: memoryview, report) -> None:
    for start, end in segments:
        pos = start
        while pos < end:
            low = pos - pos % dev.sector
            stop = min(end, low + len(view))
            high = -(-stop // dev.sector) * dev.sector
            # O_DIRECT moves whole sectors: keep the card's bytes around an
            # unaligned piece (bmaps with blocks smaller than the sector).
            if pos != low:
                transfer(dev, os.preadv, view[: dev.sector], low, "reading")
            if stop != high:
                tail = high - dev.sector
                chunk = view[tail - low : high - low]
                transfer(dev, os.preadv, chunk, tail, "reading")
            read_image(image_fd, view[pos - low : stop - low], pos)
            transfer(dev, os.pwritev, view[: high - low], low, "writing")
            report(stop - pos)
            pos = stop
            dev.check_now_and_then()
