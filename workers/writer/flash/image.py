"""The image side: opening and reading the image, its bmap, and checking the
image against the bmap's checksums while a card is written."""

import hashlib
import os
import threading

from workers.common.bmap import Bmap, load_bmap
from workers.writer.flash.buffers import DEFAULT_BUFFER, aligned
from workers.writer.flash.errors import FlashError, InvalidInput


def open_image(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(f"cannot open image {path}: {exc.strerror}") from None


def read_image(fd: int, view: memoryview, offset: int) -> None:
    pos = 0
    while pos < len(view):
        got = os.preadv(fd, [view[pos:]], offset + pos)
        if not got:  # the image's fault, not the card's
            raise InvalidInput(f"the image ended early at byte {offset + pos}")
        pos += got


def as_bmap(bmap) -> Bmap | None:
    if bmap is None or isinstance(bmap, Bmap):
        return bmap
    try:
        return load_bmap(bmap)
    except FileNotFoundError:
        raise InvalidInput(f"bmap file {os.fspath(bmap)} does not exist") from None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def merge(ranges):
    """Join touching byte ranges so the card gets fewer, larger writes (a
    generator: the ranges of a big image are never copied into a list)."""
    current = None
    for start, end in ranges:
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
        else:
            if current is not None:
                yield current
            current = (start, end)
    if current is not None:
        yield current


# Images whose ranges matched their bmap in this process: a writer writes many
# cards of one image and checks it once. Keyed by what changes with the file.
_checked_images: set[tuple] = set()


class ImageCheck:
    """Hash the image's mapped ranges against the bmap's checksums in a thread
    while the card is written (the image is in the page cache; sha256 runs on
    another core). ``result`` waits for it and raises InvalidInput."""

    def __init__(self, image_fd: int, bmap: Bmap | None):
        self.fd = image_fd
        self.bmap = bmap
        self.key = None
        checked = 0  # ranges with a checksum
        if bmap is not None:
            # What the check depends on, hashed as the ranges go by (a list or
            # a repr of them would grow with the image).
            ranges = hashlib.sha256()
            for start, end, checksum in self.ranges():
                ranges.update(f"{start}-{end}:{checksum};".encode())
                checked += 1
            st = os.fstat(image_fd)
            self.key = (
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                bmap.checksum_type,
                ranges.hexdigest(),
            )
        self.needed = checked > 0 and self.key not in _checked_images
        self.bad: tuple[int, int] | None = None
        self.error: Exception | None = None  # the image could not be read
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def ranges(self):
        return ((s, e, c) for s, e, c in self.bmap.byte_ranges() if c)

    def __enter__(self):
        if self.needed:
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
        with aligned(DEFAULT_BUFFER) as buffer:
            for start, end, checksum in self.ranges():
                digest = hashlib.new(self.bmap.checksum_type)
                for pos in range(start, end, DEFAULT_BUFFER):
                    if self.stop.is_set():
                        return
                    piece = buffer[: min(end - pos, DEFAULT_BUFFER)]
                    read_image(self.fd, piece, pos)
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
