"""Hashes of files: one implementation for the creator (its image, its
content's sha256 and md5), the downloader (what it received), the writer (a
bmap), the warehouse (the prefix of a resumed upload) and the demo (its catalog).

Holes of a sparse file are hashed as the zeros they read as, without reading
them (SEEK_DATA): an image the size of a card that is mostly holes hashes at the
speed of its data.
"""

import hashlib
import os
import zlib
from collections.abc import Callable

from workers.common.bmap import data_extents

CHUNK = 4 * 1024 * 1024
#: progress(bytes hashed, bytes to hash)
Progress = Callable[[int, int], None]

_ZEROS = memoryview(bytes(CHUNK))


class Adler32:
    """adler32 with hashlib's interface: one of the checksums image-creator's
    recipes may give (aria2 prints it as 8 hexadecimal digits)."""

    name = "adler32"

    def __init__(self) -> None:
        self.value = 1

    def update(self, data) -> None:
        self.value = zlib.adler32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def hashers(algorithms=("sha256",)) -> dict:
    """New hash objects by name, e.g. ("sha256", "md5"); md5, sha1 and adler32
    only as checksums against damage, not as proof of origin."""
    return {name: _new(name) for name in algorithms}


def _new(name: str):
    if name == "adler32":
        return Adler32()
    return hashlib.new(name, usedforsecurity=False)


def hash_file(
    path: str | os.PathLike,
    algorithms=("sha256",),
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Hash objects (by algorithm) over the first ``limit`` bytes of ``path``
    (all if None), ready to go on hashing what follows; ValueError if the file
    is shorter. One read serves every algorithm."""
    found = hashers(algorithms)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)

    def update(data) -> None:
        for digest in found.values():
            digest.update(data)

    with open(path, "rb", buffering=0) as stream:
        fd = stream.fileno()
        size = os.fstat(fd).st_size
        if limit is not None:
            if limit > size:
                raise ValueError(f"{os.fspath(path)} is shorter than {limit} bytes")
            size = limit
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        position = 0
        for start, end in data_extents(fd, size):
            _hash_zeros(update, start - position)
            position = start
            while position < end:
                count = os.preadv(fd, [view[: min(CHUNK, end - position)]], position)
                if count == 0:
                    raise OSError(f"{os.fspath(path)} shrank while being hashed")
                update(view[:count])
                position += count
                if progress:
                    progress(position, size)
        _hash_zeros(update, size - position)
    if progress:
        progress(size, size)
    return found


def sha256_of(
    path: str | os.PathLike,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
):
    """A sha256 object over the first ``limit`` bytes of ``path`` (all if None),
    ready to go on hashing what follows; ValueError if the file is shorter."""
    return hash_file(path, limit=limit, progress=progress)["sha256"]


def sha256_file(path: str | os.PathLike, progress: Progress | None = None) -> str:
    """The sha256 hex digest of a whole file."""
    return sha256_of(path, progress=progress).hexdigest()


def _hash_zeros(update, count: int) -> None:
    while count:
        step = min(count, CHUNK)
        update(_ZEROS[:step])
        count -= step
