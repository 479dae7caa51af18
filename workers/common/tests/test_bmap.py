"""Block maps: what create_bmap maps, what load_bmap accepts, bmaptool agreement."""

import hashlib
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workers.common.bmap import create_bmap, load_bmap, map_image, parse_bmap

MiB = 1024 * 1024


def make_ext4_image(folder: Path, size: int = 64 * MiB, seed: int = 1) -> Path:
    """A sparse disk image as the creator makes them: one partition, ext4 with
    files of random bytes, built by mke2fs -d without root."""
    for tool in ("sfdisk", "mke2fs"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (Debian fdisk / e2fsprogs) to build an image")
    content = folder / "content"
    content.mkdir(parents=True)
    rng = random.Random(seed)
    for index, length in enumerate((3_000_000, 1_500_000, 700_000, 5_000, 1)):
        (content / f"file{index}.bin").write_bytes(rng.randbytes(length))
    image = folder / "disk.img"
    with open(image, "wb") as out:
        out.truncate(size)
    subprocess.run(
        ["sfdisk", "-q", str(image)], input=b"start=2048, type=83\n", check=True
    )
    fs_kib = (size - MiB) // 1024
    command = ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(content)]
    command += ["-E", f"offset={MiB}", str(image), f"{fs_kib}k"]
    subprocess.run(command, check=True)
    return image


def resign(text: str, checksum_type: str = "sha256", tag: str = "BmapFileChecksum"):
    """Recompute the file checksum after a test edited the text on purpose."""
    found = re.search(rf"<{tag}>\s*([0-9a-f]+)\s*</{tag}>", text)
    start, end = found.span(1)
    zeroed = text[:start] + "0" * (end - start) + text[end:]
    digest = hashlib.new(checksum_type, zeroed.encode()).hexdigest()
    return text[:start] + digest + text[end:]


@pytest.fixture(scope="module")
def ext4_image(tmp_path_factory):
    return make_ext4_image(tmp_path_factory.mktemp("bmap"))


@pytest.fixture
def sparse_file(tmp_path):
    """10 MiB + 1000 bytes, data in blocks 1, 256-257 and the partial last block."""
    path = tmp_path / "sparse.img"
    with open(path, "wb") as out:
        out.truncate(10 * MiB + 1000)
        out.seek(5000)
        out.write(b"hello")
        out.seek(MiB)
        out.write(os.urandom(8192))
        out.seek(10 * MiB + 900)
        out.write(b"z" * 100)
    return path


def test_create_bmap_maps_exactly_the_blocks_that_hold_data(sparse_file, tmp_path):
    bmap = create_bmap(sparse_file, tmp_path / "sparse.bmap")

    data = sparse_file.read_bytes()
    last = (10 * MiB + 1000) // 4096
    assert [(first, end) for first, end, _ in bmap.ranges] == [
        (1, 1),
        (256, 257),
        (last, last),
    ]
    for first, end, checksum in bmap.ranges:
        chunk = data[first * 4096 : (end + 1) * 4096]
        assert checksum == hashlib.sha256(chunk).hexdigest()
    assert bmap.blocks_count == last + 1
    assert bmap.mapped_blocks == 4
    assert bmap.mapped_bytes == 4096 + 8192 + 1000
    assert bmap.image_size == len(data)


def test_a_written_bmap_loads_back_identical_next_to_the_image(sparse_file):
    bmap = create_bmap(sparse_file)

    written = sparse_file.with_suffix(".bmap")
    assert load_bmap(written) == bmap
    assert written.stat().st_mode & 0o777 == 0o644


def test_rewriting_a_bmap_replaces_it_whole_and_leaves_no_temporary_file(
    sparse_file, tmp_path
):
    target = tmp_path / "sparse.bmap"
    target.write_text("an old bmap")
    create_bmap(sparse_file, target)
    with open(sparse_file, "r+b") as image:
        image.seek(3 * MiB)
        image.write(b"more data")
    bmap = create_bmap(sparse_file, target)

    assert load_bmap(target).ranges == bmap.ranges
    assert len(bmap.ranges) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse.bmap", "sparse.img"]


def test_an_empty_image_is_refused(tmp_path):
    (tmp_path / "empty.img").touch()
    with pytest.raises(ValueError, match="empty"):
        create_bmap(tmp_path / "empty.img")
    assert not (tmp_path / "empty.bmap").exists()


def test_our_map_of_an_ext4_image_equals_bmaptool_create_checksums_included(
    ext4_image, tmp_path
):
    if shutil.which("bmaptool") is None:
        pytest.skip("needs bmaptool (Debian bmap-tools)")
    theirs = tmp_path / "theirs.bmap"
    subprocess.run(
        ["bmaptool", "create", "-o", str(theirs), str(ext4_image)],
        check=True,
        capture_output=True,
    )

    ours = map_image(ext4_image)
    assert load_bmap(theirs).ranges == ours.ranges
    # mke2fs zeroes the journal as an *unwritten* extent: it must be in the map
    # although SEEK_DATA calls it a hole (else the card keeps old bytes there).
    assert ours.mapped_blocks > 1024


def test_bmaptool_copy_accepts_our_bmap(ext4_image, tmp_path):
    if shutil.which("bmaptool") is None:
        pytest.skip("needs bmaptool (Debian bmap-tools)")
    ours = tmp_path / "ours.bmap"
    create_bmap(ext4_image, ours)
    copy = tmp_path / "copy.img"

    subprocess.run(
        ["bmaptool", "copy", "--bmap", str(ours), str(ext4_image), str(copy)],
        check=True,
        capture_output=True,
    )
    assert copy.read_bytes() == ext4_image.read_bytes()


def test_a_bmap_edited_by_hand_is_rejected_as_damaged(sparse_file, tmp_path):
    path = tmp_path / "sparse.bmap"
    create_bmap(sparse_file, path)
    path.write_text(path.read_text().replace("> 256-257 <", "> 256-258 <"))

    with pytest.raises(ValueError, match="damaged or was edited"):
        load_bmap(path)


def test_a_missing_element_is_named_in_the_error(sparse_file):
    text = map_image(sparse_file).to_xml()
    text = resign(re.sub(r"<BlockSize>.*</BlockSize>", "", text))

    with pytest.raises(ValueError, match="no <BlockSize> element"):
        parse_bmap(text.encode())


def test_a_future_major_version_is_refused_by_name(sparse_file):
    text = map_image(sparse_file).to_xml().replace('version="2.0"', 'version="3.0"')

    with pytest.raises(ValueError, match=r"format 3\.0; only 1\.x and 2\.x"):
        parse_bmap(resign(text).encode())


def test_mapped_blocks_count_must_agree_with_the_ranges(sparse_file):
    text = map_image(sparse_file).to_xml()
    text = text.replace("<MappedBlocksCount> 4 <", "<MappedBlocksCount> 5 <")

    with pytest.raises(ValueError, match="MappedBlocksCount says 5 but the ranges"):
        parse_bmap(resign(text).encode())


def test_overlapping_ranges_are_refused(sparse_file):
    text = map_image(sparse_file).to_xml().replace("> 256-257 <", "> 1-257 <")
    text = text.replace("<MappedBlocksCount> 4 <", "<MappedBlocksCount> 259 <")

    with pytest.raises(ValueError, match="overlaps or is out of order"):
        parse_bmap(resign(text).encode())


def test_text_that_is_not_a_bmap_is_refused(tmp_path):
    with pytest.raises(ValueError, match="invalid XML"):
        parse_bmap(b"\x00\x01 not xml")
    with pytest.raises(ValueError, match="root element is <html>"):
        parse_bmap(b"<html/>")
    with pytest.raises(ValueError, match="DOCTYPE"):
        parse_bmap(b'<!DOCTYPE bmap [<!ENTITY a "b">]><bmap version="2.0"/>')


def test_format_1_3_with_sha1_checksums_loads(sparse_file):
    data = sparse_file.read_bytes()
    sha1 = hashlib.sha1(data[4096:8192]).hexdigest()  # noqa: S324 (the format's)
    text = f"""<?xml version="1.0" ?>
<bmap version="1.3">
    <ImageSize> {len(data)} </ImageSize>
    <BlockSize> 4096 </BlockSize>
    <BlocksCount> 2561 </BlocksCount>
    <MappedBlocksCount> 1 </MappedBlocksCount>
    <BmapFileSHA1> {"0" * 40} </BmapFileSHA1>
    <BlockMap>
        <Range sha1="{sha1}"> 1 </Range>
    </BlockMap>
</bmap>
"""
    bmap = parse_bmap(resign(text, "sha1", "BmapFileSHA1").encode())

    assert bmap.checksum_type == "sha1"
    assert bmap.ranges == [(1, 1, sha1)]
    with pytest.raises(ValueError, match="BmapFileSHA1 does not match"):
        parse_bmap(text.encode())


def test_format_1_0_without_checksums_loads():
    text = b"""<bmap version="1.0">
    <ImageSize> 8192 </ImageSize> <BlockSize> 4096 </BlockSize>
    <BlocksCount> 2 </BlocksCount> <MappedBlocksCount> 2 </MappedBlocksCount>
    <BlockMap> <Range> 0-1 </Range> </BlockMap>
</bmap>"""
    bmap = parse_bmap(text)

    assert bmap.checksum_type is None
    assert bmap.ranges == [(0, 1, None)]
    assert bmap.mapped_bytes == 8192
