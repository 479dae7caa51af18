"""Block maps in the bmaptool format (version 2.0).

A bmap lists the blocks of a sparse disk image that hold data, with a checksum per
range. The writer copies only those blocks to a card and verifies them by reading
the card back, so a 32 GiB image holding 5 GiB of content costs 5 GiB of writing.
Files written here are accepted by Debian's ``bmaptool copy``; files written by
``bmaptool create`` load here. Standard library only: the creator, the warehouse
and the writer all use it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import struct
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = "2.0"
DEFAULT_BLOCK_SIZE = 4096
DEFAULT_CHECKSUM = "sha256"

# (first_block, last_block, hex checksum or None), both ends inclusive as in the file.
Range = tuple[int, int, str | None]

_READ_CHUNK = 1 << 20

# FIEMAP (linux/fiemap.h) is only used to find *unwritten* extents, see
# unwritten_extents().
_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_EXTENT_LAST = 0x1
_FIEMAP_EXTENT_UNWRITTEN = 0x800
_FIEMAP_HEAD = struct.Struct("=QQLLLL")
_FIEMAP_EXTENT = struct.Struct("=QQQQQLLLL")
_FIEMAP_BATCH = 256


@dataclass(slots=True)
class Bmap:
    """A parsed or freshly computed block map."""

    image_size: int
    block_size: int
    blocks_count: int
    mapped_blocks: int
    checksum_type: str | None
    ranges: list[Range]
    version: str = FORMAT_VERSION

    @property
    def mapped_bytes(self) -> int:
        """Bytes of the image covered by ranges (a partial last block counts short)."""
        return sum(end - start for start, end, _ in self.byte_ranges())

    def byte_ranges(self) -> Iterator[tuple[int, int, str | None]]:
        """Yield ``(start, end, checksum)`` byte ranges, ``end`` exclusive."""
        for first, last, checksum in self.ranges:
            start = first * self.block_size
            end = min((last + 1) * self.block_size, self.image_size)
            yield start, end, checksum

    def to_xml(self) -> str:
        """Render as a version 2.0 bmap file, BmapFileChecksum included."""
        checksum_type = self.checksum_type or DEFAULT_CHECKSUM
        zeros = "0" * len(hashlib.new(checksum_type).hexdigest())
        percent = 100.0 * self.mapped_blocks / self.blocks_count
        lines = [
            '<?xml version="1.0" ?>',
            "<!-- Block map (bmaptool format) of a sparse disk image: the blocks",
            "     listed in BlockMap hold data and must be copied to the card, the",
            "     others are holes and may be skipped. Each range carries the",
            "     checksum of its bytes, so the copy can be verified. -->",
            "",
            f'<bmap version="{FORMAT_VERSION}">',
            f"    <!-- Image size in bytes: {_human(self.image_size)} -->",
            f"    <ImageSize> {self.image_size} </ImageSize>",
            "",
            "    <!-- Size of a block in bytes -->",
            f"    <BlockSize> {self.block_size} </BlockSize>",
            "",
            "    <!-- Count of blocks in the image file -->",
            f"    <BlocksCount> {self.blocks_count} </BlocksCount>",
            "",
            f"    <!-- Count of mapped blocks: {_human(self.mapped_bytes)}"
            f" or {percent:.1f}% -->",
            f"    <MappedBlocksCount> {self.mapped_blocks} </MappedBlocksCount>",
            "",
            "    <!-- Type of checksum used in this file -->",
            f"    <ChecksumType> {checksum_type} </ChecksumType>",
            "",
            "    <!-- Checksum of this file, computed with this value set to zeros -->",
            f"    <BmapFileChecksum> {zeros} </BmapFileChecksum>",
            "",
            "    <!-- Mapped block ranges; 'chksum' is the checksum of the range -->",
            "    <BlockMap>",
        ]
        for first, last, checksum in self.ranges:
            attr = f' chksum="{checksum}"' if checksum else ""
            blocks = f"{first}-{last}" if first != last else f"{first}"
            lines.append(f"        <Range{attr}> {blocks} </Range>")
        lines += ["    </BlockMap>", "</bmap>", ""]
        text = "\n".join(lines)
        # Signing: hash the text with zeros in place, then put the digest there.
        digest = hashlib.new(checksum_type, text.encode()).hexdigest()
        marker = f"<BmapFileChecksum> {zeros} "
        return text.replace(marker, f"<BmapFileChecksum> {digest} ", 1)


def map_image(
    image_path: str | os.PathLike,
    block_size: int = DEFAULT_BLOCK_SIZE,
    checksum_type: str = DEFAULT_CHECKSUM,
) -> Bmap:
    """Compute the block map of a sparse image (nothing is written)."""
    if block_size <= 0 or block_size % 512:
        raise ValueError(f"block size must be a multiple of 512, not {block_size}")
    hashlib.new(checksum_type)  # fails early with ValueError for an unknown name
    with open(image_path, "rb", buffering=0) as image:
        size = os.fstat(image.fileno()).st_size
        if size == 0:
            raise ValueError(f"{image_path} is empty: there is nothing to map")
        extents = list(data_extents(image.fileno(), size))
        extents += unwritten_extents(image.fileno(), 0, size)
        blocks = _to_blocks(extents, block_size)
        # One pass over the data: each range is read once, in file order.
        buf = bytearray(_READ_CHUNK)
        view = memoryview(buf)
        ranges: list[Range] = []
        for first, last in blocks:
            start = first * block_size
            end = min((last + 1) * block_size, size)
            digest = hashlib.new(checksum_type)
            image.seek(start)
            while start < end:
                got = image.readinto(view[: min(_READ_CHUNK, end - start)])
                if not got:
                    raise ValueError(f"{image_path} shrank while it was mapped")
                digest.update(view[:got])
                start += got
            ranges.append((first, last, digest.hexdigest()))
    blocks_count = -(-size // block_size)
    return Bmap(
        image_size=size,
        block_size=block_size,
        blocks_count=blocks_count,
        mapped_blocks=sum(last - first + 1 for first, last, _ in ranges),
        checksum_type=checksum_type,
        ranges=ranges,
    )


def create_bmap(
    image_path: str | os.PathLike,
    bmap_path: str | os.PathLike | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Bmap:
    """Map ``image_path`` and write its bmap (default: the image name with .bmap)."""
    bmap = map_image(image_path, block_size)
    if bmap_path is None:
        bmap_path = Path(image_path).with_suffix(".bmap")
        if bmap_path == Path(image_path):  # an image named *.bmap: never overwrite it
            bmap_path = Path(f"{image_path}.bmap")
    write_bmap(bmap, bmap_path)
    return bmap


def write_bmap(bmap: Bmap, path: str | os.PathLike) -> None:
    """Write atomically: readers see the old file or the complete new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(bmap.to_xml())
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the bmap is shipped to others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_bmap(path: str | os.PathLike) -> Bmap:
    """Read and validate a bmap file (formats 1.x and 2.x); ValueError if unusable."""
    return parse_bmap(Path(path).read_bytes(), source=str(path))


def parse_bmap(raw: bytes, source: str = "bmap") -> Bmap:
    """Parse and validate the bytes of a bmap file; ``source`` names it in errors."""
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        # bmap files never need them; refusing them rules out entity expansion.
        raise ValueError(f"{source} is not a bmap file: it declares a DOCTYPE")
    try:
        root = ET.fromstring(raw)  # noqa: S314 (no DOCTYPE/entities, checked above)
    except ET.ParseError as exc:
        raise ValueError(f"{source} is not a bmap file: invalid XML ({exc})") from None
    if root.tag != "bmap":
        raise ValueError(f"{source} is not a bmap file: root element is <{root.tag}>")
    version = (root.get("version") or "").strip()
    match = re.fullmatch(r"(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"{source} has no valid version attribute on <bmap>")
    major, minor = int(match[1]), int(match[2])
    if major not in (1, 2):
        raise ValueError(
            f"{source} uses bmap format {version}; only 1.x and 2.x are supported"
        )

    image_size = _int_element(root, "ImageSize", source)
    block_size = _int_element(root, "BlockSize", source)
    blocks_count = _int_element(root, "BlocksCount", source)
    mapped_blocks = _int_element(root, "MappedBlocksCount", source)
    if image_size <= 0 or block_size <= 0:
        raise ValueError(f"{source}: ImageSize and BlockSize must be positive")
    if blocks_count != -(-image_size // block_size):
        raise ValueError(
            f"{source}: BlocksCount {blocks_count} does not match ImageSize "
            f"{image_size} with BlockSize {block_size}"
        )

    # 1.3 had SHA1 only; 1.4 was a mistaken name for 2.0; 1.0-1.2 had no checksums.
    if major == 2 or (major, minor) == (1, 4):
        checksum_type = _text_element(root, "ChecksumType", source).lower()
        range_attr, file_tag = "chksum", "BmapFileChecksum"
    elif (major, minor) == (1, 3):
        checksum_type, range_attr, file_tag = "sha1", "sha1", "BmapFileSHA1"
    else:
        checksum_type, range_attr, file_tag = None, None, None

    hex_len = 0
    if checksum_type is not None:
        try:
            hex_len = len(hashlib.new(checksum_type).hexdigest())
        except ValueError:
            raise ValueError(
                f"{source}: unknown ChecksumType {checksum_type!r}"
            ) from None
        _check_file_checksum(raw, root, file_tag, checksum_type, hex_len, source)

    block_map = root.find("BlockMap")
    if block_map is None:
        raise ValueError(f"{source} has no <BlockMap> element")
    ranges: list[Range] = []
    previous_last = -1
    for element in block_map.findall("Range"):
        text = (element.text or "").strip()
        found = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", text)
        if not found:
            raise ValueError(f"{source}: bad <Range> {text!r}, expected 'N' or 'N-M'")
        first = int(found[1])
        last = int(found[2]) if found[2] is not None else first
        if first > last or last >= blocks_count:
            raise ValueError(
                f"{source}: <Range> {text} is outside blocks 0-{blocks_count - 1}"
            )
        if first <= previous_last:
            raise ValueError(f"{source}: <Range> {text} overlaps or is out of order")
        previous_last = last
        checksum = element.get(range_attr) if range_attr else None
        if checksum is not None:
            checksum = checksum.strip().lower()
            if not re.fullmatch(f"[0-9a-f]{{{hex_len}}}", checksum):
                raise ValueError(f"{source}: <Range> {text} has a malformed checksum")
        ranges.append((first, last, checksum))

    counted = sum(last - first + 1 for first, last, _ in ranges)
    if counted != mapped_blocks:
        raise ValueError(
            f"{source}: MappedBlocksCount says {mapped_blocks} but the ranges "
            f"hold {counted} blocks"
        )
    return Bmap(
        image_size=image_size,
        block_size=block_size,
        blocks_count=blocks_count,
        mapped_blocks=mapped_blocks,
        checksum_type=checksum_type,
        ranges=ranges,
        version=version,
    )


def _check_file_checksum(raw, root, tag, checksum_type, hex_len, source) -> None:
    stored = _text_element(root, tag, source).lower()
    if not re.fullmatch(f"[0-9a-f]{{{hex_len}}}", stored):
        raise ValueError(f"{source}: <{tag}> is not a {checksum_type} hex digest")
    # The digest was computed with its own value replaced by zeros.
    element_at = raw.find(f"<{tag}".encode())
    value_at = raw.lower().find(stored.encode(), element_at)
    zeroed = raw[:value_at] + b"0" * hex_len + raw[value_at + hex_len :]
    if hashlib.new(checksum_type, zeroed).hexdigest() != stored:
        raise ValueError(
            f"{source}: {tag} does not match the content, the file is damaged "
            "or was edited; create it again from the image"
        )


def _text_element(root: ET.Element, tag: str, source: str) -> str:
    element = root.find(tag)
    if element is None or not (element.text or "").strip():
        raise ValueError(f"{source} has no <{tag}> element")
    return element.text.strip()


def _int_element(root: ET.Element, tag: str, source: str) -> int:
    text = _text_element(root, tag, source)
    if not text.isdigit():
        raise ValueError(f"{source}: <{tag}> must be a whole number, not {text!r}")
    return int(text)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Byte extents holding data, from SEEK_DATA/SEEK_HOLE; holes are skipped."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after offset
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield offset, size  # no hole support: all data
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


def unwritten_extents(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """Byte extents of ``[start, end)`` allocated as *unwritten* (FIEMAP); none
    where the file system has no FIEMAP (tmpfs and others: there SEEK_DATA
    alone is right).

    SEEK_DATA calls these holes because they read as zeros, but mke2fs creates
    them on purpose (fallocate zero-range for the journal): the card must get
    zeros there, not whatever an earlier image left. bmaptool maps them too,
    and the creator writes real zeros into them.
    """
    found: list[tuple[int, int]] = []
    position = start
    buf = bytearray(_FIEMAP_HEAD.size + _FIEMAP_EXTENT.size * _FIEMAP_BATCH)
    while position < end:
        _FIEMAP_HEAD.pack_into(
            buf, 0, position, end - position, _FIEMAP_FLAG_SYNC, 0, _FIEMAP_BATCH, 0
        )
        try:
            fcntl.ioctl(fd, _FS_IOC_FIEMAP, buf, True)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
                return []
            raise
        mapped = _FIEMAP_HEAD.unpack_from(buf, 0)[3]
        if not mapped:
            break
        for index in range(mapped):
            offset = _FIEMAP_HEAD.size + index * _FIEMAP_EXTENT.size
            logical, _, length, _, _, flags, *_ = _FIEMAP_EXTENT.unpack_from(
                buf, offset
            )
            if flags & _FIEMAP_EXTENT_UNWRITTEN and logical < end:
                found.append((max(logical, start), min(logical + length, end)))
            position = logical + length
            if flags & _FIEMAP_EXTENT_LAST:
                return found
    return found


def _to_blocks(extents: list[tuple[int, int]], block_size: int) -> list[list[int]]:
    """Round byte extents out to whole blocks and merge touching ones."""
    blocks: list[list[int]] = []
    for start, end in sorted(extents):
        first, last = start // block_size, (end - 1) // block_size
        if blocks and first <= blocks[-1][1] + 1:
            blocks[-1][1] = max(blocks[-1][1], last)
        else:
            blocks.append([first, last])
    return blocks


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
