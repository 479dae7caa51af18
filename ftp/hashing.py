"""SHA-256 computed while a file is received, so no upload is read twice.

An interrupted upload keeps its running hash in memory (``HashStates``), so a
resume at the end of the ``.part`` goes on hashing where it stopped. Only after
a restart of the warehouse (or a resume at another offset) is the kept prefix
read once to rebuild the hash.
"""

import errno
import hashlib
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable

from workers.common.hashing import sha256_of

# Free space is looked at every this many bytes written, not at every write.
ROOM_CHECK_EVERY = 64 << 20
# Received chunks waiting for the hashing thread (up to about this many MiB).
QUEUED_CHUNKS = 32
# Receive buffers per upload (made as needed): the socket reads into one while
# others wait to be hashed. More buffers only add memory per upload.
BUFFER_SIZE = 1 << 20
BUFFERS = 4


class HashStates:
    """Running hashes of unfinished uploads, by ``.part`` path and size."""

    def __init__(self, limit: int = 256):
        self._states: OrderedDict[str, tuple[int, object]] = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def keep(self, path: str, size: int, hasher) -> None:
        with self._lock:
            self._states[path] = (size, hasher.copy())
            self._states.move_to_end(path)
            while len(self._states) > self.limit:
                self._states.popitem(last=False)

    def take(self, path: str, size: int):
        """The kept hash of ``path`` if it covers exactly ``size`` bytes."""
        with self._lock:
            kept = self._states.pop(path, None)
        if kept is None or kept[0] != size:
            return None
        return kept[1]

    def drop(self, path: str) -> None:
        with self._lock:
            self._states.pop(path, None)

    def resume(self, path: str, offset: int):
        """A hash of the first ``offset`` bytes of ``path``: kept, or read once."""
        if offset == 0:
            return hashlib.sha256()
        kept = self.take(path, offset)
        return kept if kept is not None else sha256_of(path, limit=offset)


class HashingFile:
    """A file being received: every write is counted and hashed, and free disk
    space is checked as it grows. pyftpdlib's data channel only calls ``write``,
    ``close``, ``closed`` and ``name``.

    Hashing runs in a helper thread fed in order with the received chunks: the
    session's thread receives and writes the next chunk while the previous one
    is hashed on another core (hashlib releases the GIL on large buffers).
    ``close`` waits for the hash to catch up; ``hasher`` is complete only after
    it. The server receives straight into the file's few reusable buffers
    (``buffer``/``write_from``), so no new object is made per chunk; ``write``
    takes any bytes (ASCII mode, TLS).
    """

    def __init__(
        self,
        raw,
        name: str,
        hasher,
        offset: int,
        *,
        has_room: Callable[[], bool] | None = None,
        background: bool = True,
    ):
        self._raw = raw
        self.name = name
        self.hasher = hasher
        self.size = offset
        self.received = 0
        self._has_room = has_room
        self._next_check = ROOM_CHECK_EVERY
        self._queue = None
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._buffers = 0
        if background:
            self._queue = queue.Queue(maxsize=QUEUED_CHUNKS)
            self._thread = threading.Thread(
                target=self._hash_chunks, name="sha256", daemon=True
            )
            self._thread.start()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def _hash_chunks(self) -> None:
        update = self.hasher.update
        while (chunk := self._queue.get()) is not None:
            if isinstance(chunk, tuple):
                buffer, length = chunk
                with memoryview(buffer) as view:
                    update(view[:length])
                self._free.put(buffer)
            else:
                update(chunk)

    def _write_all(self, data) -> None:
        with memoryview(data) as view:
            while view:
                # A raw file may write less than asked; the rest is written next.
                view = view[self._raw.write(view) :]

    def write(self, data) -> int:
        self._write_all(data)
        if self._queue is not None:
            self._queue.put(data if isinstance(data, bytes) else bytes(data))
        else:
            self.hasher.update(data)
        self._count(len(data))
        return len(data)

    def buffer(self) -> bytearray:
        """A free receive buffer; waits for the hash to free one if all are busy."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            if self._buffers < BUFFERS:
                self._buffers += 1
                return bytearray(BUFFER_SIZE)
            return self._free.get()

    def give_back(self, buffer: bytearray) -> None:
        self._free.put(buffer)

    def write_from(self, buffer: bytearray, length: int) -> None:
        """Write and hash the first ``length`` bytes of a ``buffer()``."""
        with memoryview(buffer) as view:
            self._write_all(view[:length])
            if self._queue is None:
                self.hasher.update(view[:length])
        if self._queue is not None:
            self._queue.put((buffer, length))
        else:
            self._free.put(buffer)
        self._count(length)

    def _count(self, length: int) -> None:
        self.size += length
        self.received += length
        if self.received >= self._next_check:
            self._next_check += ROOM_CHECK_EVERY
            if self._has_room is not None and not self._has_room():
                raise OSError(errno.ENOSPC, "The warehouse's disk reserve is reached")

    def _drain(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def hexdigest(self) -> str:
        self._drain()
        return self.hasher.hexdigest()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            self._drain()


def open_part(path: str, offset: int, *, truncate: bool):
    """Open ``path`` for writing at ``offset`` without following a symlink.

    Bytes after ``offset`` are cut, so the file always holds exactly what was
    hashed."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if truncate:
        flags |= os.O_TRUNC
    fd = os.open(path, flags, 0o644)
    try:
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        return os.fdopen(fd, "wb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
