"""Base images: fetched and verified through the content cache, decompressed sparse."""

from __future__ import annotations

import gzip
import logging
import lzma
import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import zstandard

from workers.common.progress import Cancel, Canceled, Progress
from workers.creator.cache import ContentCache
from workers.creator.download import ContentError

BLOCK = 4096
CHUNK = 4 * 1024 * 1024
ZERO_BLOCK = bytes(BLOCK)
#: magic bytes -> compression, so a misnamed file is still read right
MAGIC = {
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x1f\x8b": "gzip",
}
SUFFIXES = (".xz", ".zst", ".zstd", ".gz")

log = logging.getLogger(__name__)


def compression_of(path: Path) -> str | None:
    """ "xz", "zstd", "gzip" or None (raw image), from the file's first bytes."""
    with path.open("rb") as stream:
        head = stream.read(8)
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def prepare_base_image(
    source: str | os.PathLike,
    *,
    cache: ContentCache,
    checksums: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Raw sparse base image for `source` (URL, file:// URL or path), cached.

    `checksums` (hashlib names to hex digests) are those of the published
    (compressed) file; without any, ``<url>.sha256`` or ``.md5`` is used when
    published. The decompressed raw image is a cache entry of its own, pinned
    like fetched content: release it with `cache.unpin(path)` once the build is
    done.
    """
    fetched = cache.fetch(
        source,
        checksums=checksums,
        require_checksum=False,
        progress=_phase(progress, "downloading base"),
        cancel=cancel,
    )
    kind = compression_of(fetched)
    if kind is None:
        return fetched  # already raw: stays pinned for the build
    try:
        meta = cache.metadata(fetched) or {}
        given = dict(checksums or {})
        identity = next(
            (
                f"{algo}:{value}"
                for algo, value in (*meta.items(), *given.items())
                if algo in ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")
            ),
            None,
        )
        if identity is None:
            # A local file without checksum: its path, size and mtime identify it.
            stat = fetched.stat()
            identity = f"{fetched.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        name = fetched.name.split("-", 1)[-1] if meta else fetched.name
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        return cache.produce(
            f"base-raw:{identity}",
            name,
            lambda part: decompress_to_sparse(
                fetched,
                part,
                progress=_phase(progress, "decompressing base"),
                cancel=cancel,
            ),
            meta={"source": str(source), "compression": kind},
        )
    finally:
        # Only the raw image is needed from here on.
        cache.unpin(fetched)


def decompress_to_sparse(
    src: Path,
    dest: Path,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> int:
    """Decompress `src` (xz, zstd, gzip or raw) into a sparse `dest`; its size."""
    kind = compression_of(src)
    total_in = src.stat().st_size
    with (
        src.open("rb") as raw,
        _reader(raw, kind, src) as stream,
        dest.open("wb") as out,
    ):
        writer = SparseWriter(out)
        while True:
            if cancel and cancel():
                raise Canceled(f"decompression of {src} canceled")
            try:
                chunk = stream.read(CHUNK)
            except (lzma.LZMAError, zstandard.ZstdError, OSError, EOFError) as exc:
                raise ContentError(f"{src}: {_read_error(exc, kind)}") from exc
            if not chunk:
                break
            writer.write(chunk)
            if progress and total_in:
                progress(None, min(100.0, raw.tell() * 100.0 / total_in))
        return writer.finish()


def _read_error(exc: BaseException, kind: str | None) -> str:
    """Why decompressing failed: the system's reason (a full disk), or "corrupt
    data", not the decompressor's words (gzip quotes the checksums it read and
    computed); the log has them."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read: {exc.strerror}"
    log.warning("corrupt %s data: %s", kind, exc)
    return f"corrupt {kind} data"


def _reader(raw: BinaryIO, kind: str | None, src: Path) -> BinaryIO:
    if kind == "xz":
        return lzma.open(raw)
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if kind == "gzip":
        return gzip.open(raw)
    if kind is None:
        return open(raw.fileno(), "rb", closefd=False)
    raise ContentError(f"{src}: unsupported compression {kind}")


class SparseWriter:
    """Writes a stream to a file, seeking over all-zero 4 KiB blocks (holes)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.position = 0  # bytes of the stream handled so far
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data
        whole = len(self.pending) - len(self.pending) % BLOCK
        if whole:
            self._write_blocks(memoryview(self.pending)[:whole])
            del self.pending[:whole]

    def finish(self) -> int:
        """Flush the tail and set the final size (a trailing hole included)."""
        if self.pending:
            tail = bytes(self.pending)
            if tail.count(0) != len(tail):
                self.out.seek(self.position)
                self.out.write(tail)
            self.position += len(tail)
            self.pending.clear()
        self.out.truncate(self.position)
        self.out.flush()
        return self.position

    def _write_blocks(self, view: memoryview) -> None:
        run_start = None  # start of the current run of data blocks in `view`
        for offset in range(0, len(view), BLOCK):
            # bytes == bytes is a memcmp; memoryview == bytes compares item by item.
            if bytes(view[offset : offset + BLOCK]) == ZERO_BLOCK:
                if run_start is not None:
                    self._flush(view, run_start, offset)
                    run_start = None
            elif run_start is None:
                run_start = offset
        if run_start is not None:
            self._flush(view, run_start, len(view))
        self.position += len(view)

    def _flush(self, view: memoryview, start: int, end: int) -> None:
        self.out.seek(self.position + start)
        self.out.write(view[start:end])


def _phase(progress: Progress | None, phase: str) -> Progress | None:
    if progress is None:
        return None
    return lambda _phase, percent: progress(phase, percent)
