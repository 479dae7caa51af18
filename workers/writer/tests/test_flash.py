"""The flash engine on real loop devices: what reaches the card, in which
order, and how the card is verified against the image and its bmap."""

import hashlib
import os
import random
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from workers.common.bmap import Bmap, data_extents, load_bmap
from workers.writer import flash as flash_module
from workers.writer.flash import (
    VerifyMismatch,
    flash,
    verify,
)
from workers.writer.flash.image import read_image
from workers.writer.tests.flashkit import (
    OLD,
    MiB,
    bad_blocks,
    needs_loop,
    run,
)
from workers.writer.tests.flashkit import attach as attach  # fixture
from workers.writer.tests.flashkit import image as image  # fixture


@needs_loop
def test_a_real_ext4_image_is_written_verified_and_mounts_with_its_files(
    image, attach, tmp_path
):
    card = attach()

    result = flash(image.path, card.device, image.bmap)

    assert result.bytes_written == image.bmap.mapped_bytes
    assert result.bytes_verified == image.bmap.mapped_bytes
    part = run("losetup", "-r", "-o", str(MiB), "-f", "--show", card.device)
    try:
        fsck = subprocess.run(["e2fsck", "-fn", part], capture_output=True, check=False)
        assert fsck.returncode == 0, fsck.stdout
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        run("mount", "-o", "ro", part, str(mountpoint))
        try:
            for source in image.content.iterdir():
                assert (mountpoint / source.name).read_bytes() == source.read_bytes()
        finally:
            run("umount", str(mountpoint))
    finally:
        run("losetup", "-d", part)


@needs_loop
def test_only_the_blocks_the_bmap_marks_as_used_are_written(image, attach):
    card = attach()

    result = flash(image.path, card.device, image.bmap_path, verify=False)

    assert bad_blocks(card, image.path, image.bmap) == []
    assert result.bytes_written == image.bmap.mapped_bytes
    content = card.content()
    changed = sum(
        content[i : i + 4096] != OLD * 4096 for i in range(0, len(content), 4096)
    )
    assert changed == image.bmap.mapped_blocks < image.bmap.blocks_count // 2


@needs_loop
def test_without_a_bmap_the_whole_image_is_written_holes_included(image, attach):
    card = attach()

    result = flash(image.path, card.device)

    data = image.path.read_bytes()
    assert result.bytes_written == result.bytes_verified == len(data)
    assert card.content() == data + OLD * (16 * MiB)


@needs_loop
def test_the_first_mib_reaches_the_card_only_after_everything_else(image, attach):
    card = attach()
    head = sum(min(e, MiB) - s for s, e, _ in image.bmap.byte_ranges() if s < MiB)
    seen, snapshot = [], {}

    def watch(phase, done, total):
        with open(card.backing, "rb") as backing:
            seen.append((done, backing.read(MiB) == OLD * MiB))
        if done == total - head:
            snapshot["body written"] = card.content()

    flash(
        image.path,
        card.device,
        image.bmap,
        verify=False,
        progress=watch,
        buffer_size=64 * 1024,
    )

    total = image.bmap.mapped_bytes
    writing = seen
    assert len(writing) > 10
    assert all(old for done, old in writing if done <= total - head)
    assert writing[-1] == (total, False)
    body = snapshot["body written"]
    data = image.path.read_bytes()
    for start, end, _ in image.bmap.byte_ranges():
        if start >= MiB:
            assert body[start:end] == data[start:end]


@needs_loop
def test_verify_catches_a_single_corrupted_byte_on_the_card(image, attach):
    card = attach()
    flash(image.path, card.device)  # the whole image: both kinds of verify apply
    assert verify(card.device, image.bmap) == image.bmap.mapped_bytes
    assert verify(card.device, image.path) == image.path.stat().st_size
    # A byte inside the biggest file's data, as a worn-out card would lose it.
    first, last, _ = max(image.bmap.ranges, key=lambda r: r[1] - r[0])
    offset = (first + (last - first) // 2) * 4096 + 123
    with open(card.backing, "r+b") as backing:
        byte = backing.read()[offset]
        backing.seek(offset)
        backing.write(bytes([byte ^ 0x01]))

    with pytest.raises(VerifyMismatch, match=f"blocks {first}-{last}"):
        verify(card.device, image.bmap_path)
    with pytest.raises(VerifyMismatch) as against_image:
        verify(card.device, image.path)
    assert against_image.value.offset == offset
    # The bmap's ranges compared with the image: what flash() does.
    with pytest.raises(VerifyMismatch) as ranges_against_image:
        verify(card.device, image.bmap, image=image.path)
    assert ranges_against_image.value.offset == offset


@needs_loop
def test_without_a_bmap_the_holes_of_the_image_must_be_zeros_on_the_card(image, attach):
    card = attach()
    flash(image.path, card.device)  # no bmap: holes are written as zeros
    with open(image.path, "rb") as handle:
        extents = list(data_extents(handle.fileno(), image.path.stat().st_size))
    hole = extents[0][1] + 4096 * 3 + 7  # inside the first hole
    assert hole < extents[1][0]
    with open(card.backing, "r+b") as backing:
        backing.seek(hole)
        backing.write(b"\x01")

    with pytest.raises(VerifyMismatch) as whole:
        verify(card.device, image.path)
    assert whole.value.offset == hole
    # A bmap says holes are free: the card passes against it.
    assert verify(card.device, image.bmap) == image.bmap.mapped_bytes


@needs_loop
def test_an_image_that_does_not_match_its_bmap_never_gets_a_bootable_card(
    image, attach, tmp_path
):
    copy = tmp_path / "copy.img"
    shutil.copyfile(image.path, copy)
    assert flash(copy, attach().device, image.bmap).bytes_verified > 0
    # The image rots on the host's disk after a first good card: the check is
    # remembered per image, but a changed file is checked again.
    first, last, _ = image.bmap.ranges[-1]
    with open(copy, "r+b") as damaged:
        damaged.seek(first * 4096 + 10)
        damaged.write(b"rot")
    card = attach()

    with pytest.raises(flash_module.InvalidInput, match=f"blocks {first}-{last}"):
        flash(copy, card.device, image.bmap)
    assert card.content()[:MiB] == OLD * MiB  # the head is never written


def test_a_regular_file_stands_in_for_a_card_only_when_asked(image, tmp_path):
    card = tmp_path / "card.img"
    with open(card, "wb") as out:
        out.truncate(64 * MiB)  # sparse: an empty card costs no disk

    with pytest.raises(flash_module.InvalidInput, match="regular file"):
        flash(image.path, card, image.bmap)
    result = flash(image.path, card, image.bmap, file_ok=True)

    assert result.bytes_verified == image.bmap.mapped_bytes
    data, got = image.path.read_bytes(), card.read_bytes()
    for start, end, _ in image.bmap.byte_ranges():
        assert got[start:end] == data[start:end]
    # Only the mapped blocks were written: the card file stays sparse.
    assert card.stat().st_blocks * 512 <= image.bmap.mapped_bytes + MiB
    assert verify(card, image.bmap_path) == image.bmap.mapped_bytes


def test_an_image_that_ends_early_is_the_images_fault_not_the_cards(tmp_path):
    path = tmp_path / "short.img"
    path.write_bytes(b"x" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        # InvalidInput fails the copy (no card would do better), where another
        # FlashError would fail only the card.
        with pytest.raises(flash_module.InvalidInput, match="ended early at byte 4096"):
            read_image(fd, memoryview(bytearray(8192)), 0)
    finally:
        os.close(fd)


def test_a_card_file_of_an_odd_size_is_refused_with_what_to_do(image, tmp_path):
    card = tmp_path / "card.img"
    card.write_bytes(b"x" * (64 * MiB + 100))

    with pytest.raises(flash_module.InvalidInput, match="multiple of 4096"):
        flash(image.path, card, file_ok=True)


@needs_loop
def test_bmaptool_copy_writes_a_card_with_our_bmap_that_our_verify_accepts(
    image, attach
):
    card = attach()

    run(
        "bmaptool", "copy", "--bmap", str(image.bmap_path), str(image.path), card.device
    )

    assert bad_blocks(card, image.path, image.bmap) == []
    assert verify(card.device, image.bmap) == image.bmap.mapped_bytes


@needs_loop
def test_a_bmap_made_by_bmaptool_create_flashes_correctly(image, attach, tmp_path):
    card = attach()
    theirs = tmp_path / "theirs.bmap"
    run("bmaptool", "create", "-o", str(theirs), str(image.path))

    result = flash(image.path, card.device, theirs)

    assert result.bytes_verified == load_bmap(theirs).mapped_bytes
    assert bad_blocks(card, image.path, load_bmap(theirs)) == []


@needs_loop
def test_two_cards_are_flashed_at_the_same_time_in_two_threads(image, attach):
    cards = [attach(), attach()]
    halfway = threading.Barrier(2, timeout=60)

    def write(card):
        met = []

        def meet(phase, done, total):
            # Neither flash can finish before the other is half-way through.
            if phase == "writing" and done >= 32 * MiB and not met:
                met.append(halfway.wait())

        return flash(image.path, card.device, progress=meet, buffer_size=MiB)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(write, cards))

    data = image.path.read_bytes()
    for card, result in zip(cards, results, strict=True):
        assert result.bytes_verified == len(data)
        assert card.content()[: len(data)] == data


@needs_loop
def test_blocks_smaller_than_the_card_sector_keep_the_bytes_around_them(
    attach, tmp_path
):
    path = tmp_path / "odd.img"
    data = random.Random(3).randbytes(4 * MiB)
    path.write_bytes(data)
    # 512-byte blocks on a card with 4096-byte sectors: each range shares its
    # sectors with bytes the card must keep.
    ranges = [(1, 1), (4099, 4101), (8191, 8191)]
    sums = [
        hashlib.sha256(data[a * 512 : (b + 1) * 512]).hexdigest() for a, b in ranges
    ]
    bmap = Bmap(
        image_size=len(data),
        block_size=512,
        blocks_count=len(data) // 512,
        mapped_blocks=5,
        checksum_type="sha256",
        ranges=[(a, b, c) for (a, b), c in zip(ranges, sums, strict=True)],
    )
    card = attach(8 * MiB, sector=4096)

    result = flash(path, card.device, bmap)

    assert result.bytes_verified == 5 * 512
    assert bad_blocks(card, path, bmap) == []
    # A byte the card lost in a range that starts mid-sector: the compare
    # with the image names it exactly.
    offset = 4100 * 512 + 5
    with open(card.backing, "r+b") as backing:
        backing.seek(offset)
        byte = backing.read(1)
        backing.seek(offset)
        backing.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(VerifyMismatch) as mismatch:
        verify(card.device, bmap, image=path)
    assert mismatch.value.offset == offset
