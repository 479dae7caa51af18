"""Debian's bmaptool accepts our block map: copying a built image with it onto a
loop device gives the image's bytes on every mapped block."""

import os
import shutil
import subprocess

import pytest

from workers.common.bmap import create_bmap
from workers.creator.tests.test_image import build, content_of

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control"),
    reason="losetup needs root and /dev/loop-control",
)


@needs_root
@pytest.mark.skipif(shutil.which("bmaptool") is None, reason="bmap-tools missing")
def test_bmaptool_copy_of_a_built_image_matches_it_on_every_mapped_block(
    tmp_path, base_image, zim_files
):
    image = build(tmp_path, base_image, content_of(zim_files)).path
    bmap = create_bmap(image, tmp_path / "image.bmap")
    card = tmp_path / "card"
    with open(card, "wb") as handle:
        handle.truncate(image.stat().st_size)
    device = subprocess.run(
        ["losetup", "-f", "--show", str(card)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        subprocess.run(
            [
                "bmaptool",
                "copy",
                "--bmap",
                str(tmp_path / "image.bmap"),
                str(image),
                device,
            ],
            capture_output=True,
            check=True,
        )
        checked = 0
        with open(image, "rb") as source, open(device, "rb") as target:
            for first, last, _checksum in bmap.ranges:
                start = first * bmap.block_size
                length = (last - first + 1) * bmap.block_size
                source.seek(start)
                target.seek(start)
                assert source.read(length) == target.read(length), (
                    f"blocks {first}-{last}"
                )
                checked += length
        assert checked >= bmap.mapped_bytes > 0
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
