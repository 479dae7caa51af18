"""The flash engine on real loop devices: what reaches the card, in which order,
and how a bad card, a pulled card or a wrong target shows up."""

import fcntl
import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.cards import loop_missing
from workers.common.bmap import Bmap, create_bmap, data_extents, load_bmap
from workers.common.tests.test_bmap import make_ext4_image
from workers.writer import flash as flash_module
from workers.writer.flash import (
    CardRemoved,
    CardTooSmall,
    FlashError,
    UnsafeTarget,
    VerifyMismatch,
    check_target,
    flash,
    verify,
)
from workers.writer.flash import device as device_module

MiB = 1024 * 1024
OLD = b"\xaa"  # what the card holds before we write: unwritten blocks keep it
ROOT = Path(__file__).resolve().parents[3]


def _missing() -> str | None:
    if missing := loop_missing():
        return missing
    for tool in ("partx", "mount", "e2fsck", "bmaptool"):
        if shutil.which(tool) is None:
            return f"the {tool} command"
    return None


MISSING = _missing()
needs_loop = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")


@dataclass
class Card:
    device: str
    backing: Path

    def content(self) -> bytes:
        # The loop driver writes through the backing file's page cache, so
        # reading the file shows what the "card" holds right now.
        return self.backing.read_bytes()


@dataclass
class Image:
    path: Path
    bmap_path: Path
    bmap: Bmap
    content: Path


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flash")
    path = make_ext4_image(folder)
    bmap = create_bmap(path)
    return Image(path, path.with_suffix(".bmap"), bmap, folder / "content")


@pytest.fixture
def attach(tmp_path):
    """attach(size) -> a Card: a loop device over a file filled with OLD."""
    attached = []

    def attach(size=80 * MiB, *, backing=None, sector=None, partitions=False):
        if backing is None:
            backing = tmp_path / f"card{len(attached)}.raw"
            with open(backing, "wb") as out:
                for _ in range(size // MiB):
                    out.write(OLD * MiB)
        command = ["losetup", "-f", "--show"]
        command += ["-b", str(sector)] if sector else []
        command += ["-P"] if partitions else []
        device = _run(*command, str(backing))
        attached.append(device)
        return Card(device, Path(backing))

    yield attach
    for device in reversed(attached):
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout.strip()


def _bad_blocks(card: Card, image_path: Path, bmap: Bmap) -> list[int]:
    """Blocks where the card is not: image bytes if mapped, else still OLD."""
    data, got = image_path.read_bytes(), card.content()
    mapped = {b for first, last, _ in bmap.ranges for b in range(first, last + 1)}
    size = bmap.block_size
    bad = []
    for block in range(bmap.blocks_count):
        start, end = block * size, min((block + 1) * size, len(data))
        want = data[start:end] if block in mapped else OLD * (end - start)
        if got[start:end] != want:
            bad.append(block)
    if got[len(data) :] != OLD * (len(got) - len(data)):
        bad.append(-1)  # something was written past the image
    return bad


def _set_sizelimit(device: str, limit: int) -> None:
    """Change a live loop device's size limit (0: the whole backing file)."""
    loop_get_status64, loop_set_status64 = 0x4C05, 0x4C04
    fd = os.open(device, os.O_RDONLY)
    try:
        info = bytearray(232)  # struct loop_info64
        fcntl.ioctl(fd, loop_get_status64, info, True)
        info[32:40] = limit.to_bytes(8, "little")  # lo_sizelimit
        fcntl.ioctl(fd, loop_set_status64, bytes(info))
    finally:
        os.close(fd)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.writer.flash", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@needs_loop
def test_a_real_ext4_image_is_written_verified_and_mounts_with_its_files(
    image, attach, tmp_path
):
    card = attach()

    result = flash(image.path, card.device, image.bmap)

    assert result.bytes_written == image.bmap.mapped_bytes
    assert result.bytes_verified == image.bmap.mapped_bytes
    part = _run("losetup", "-r", "-o", str(MiB), "-f", "--show", card.device)
    try:
        fsck = subprocess.run(["e2fsck", "-fn", part], capture_output=True, check=False)
        assert fsck.returncode == 0, fsck.stdout
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        _run("mount", "-o", "ro", part, str(mountpoint))
        try:
            for source in image.content.iterdir():
                assert (mountpoint / source.name).read_bytes() == source.read_bytes()
        finally:
            _run("umount", str(mountpoint))
    finally:
        _run("losetup", "-d", part)


@needs_loop
def test_only_the_blocks_the_bmap_marks_as_used_are_written(image, attach):
    card = attach()

    result = flash(image.path, card.device, image.bmap_path, verify=False)

    assert _bad_blocks(card, image.path, image.bmap) == []
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


def test_a_card_file_that_is_deleted_mid_write_is_a_removed_card(image, tmp_path):
    card = tmp_path / "card.img"
    with open(card, "wb") as out:
        out.truncate(64 * MiB)

    def pull(phase, done, total):
        if phase == "writing" and done >= MiB and card.exists():
            card.unlink()

    with pytest.raises(CardRemoved, match="card file disappeared"):
        flash(image.path, card, file_ok=True, progress=pull, buffer_size=MiB)


def test_a_card_file_of_an_odd_size_is_refused_with_what_to_do(image, tmp_path):
    card = tmp_path / "card.img"
    card.write_bytes(b"x" * (64 * MiB + 100))

    with pytest.raises(flash_module.InvalidInput, match="multiple of 4096"):
        flash(image.path, card, file_ok=True)


def test_the_command_line_writes_into_a_file_with_to_file(image, tmp_path):
    card = tmp_path / "card.img"
    with open(card, "wb") as out:
        out.truncate(64 * MiB)

    refused = _cli(str(image.path), str(card), "--quiet")
    done = _cli(str(image.path), str(card), "--bmap", str(image.bmap_path), "--to-file")

    assert refused.returncode == 2
    assert "--to-file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout


@needs_loop
def test_detaching_the_loop_device_mid_write_raises_card_removed(image, attach):
    card = attach()
    detached, phases = [], []

    def detach(phase, done, total):
        phases.append(phase)
        if phase == "writing" and done >= 8 * MiB and not detached:
            _run("losetup", "-d", card.device)
            detached.append(done)

    with pytest.raises(CardRemoved, match="capacity is 0"):
        flash(image.path, card.device, progress=detach, buffer_size=MiB)

    assert detached
    assert "verifying" not in phases
    # The kernel finished the detach when we closed the device after the body,
    # so the first MiB was never written: the card cannot look bootable.
    assert card.content()[:MiB] == OLD * MiB


@needs_loop
def test_a_card_pulled_from_its_reader_mid_write_raises_card_removed(image, attach):
    card = attach()
    progress = []

    def pull(phase, done, total):
        progress.append(done)
        if done >= 8 * MiB and card.backing.stat().st_size:
            os.truncate(card.backing, 0)  # the reader now reports no medium
            _run("losetup", "-c", card.device)

    with pytest.raises(CardRemoved, match="capacity is 0"):
        flash(image.path, card.device, progress=pull, buffer_size=MiB)

    assert 8 * MiB <= max(progress) < 64 * MiB


@needs_loop
def test_a_transient_read_error_is_retried_and_the_card_still_verifies(image, attach):
    inner = attach()
    # Stacked loops: reads past the inner device's end fail with a real EIO on
    # the outer one, and the inner size can be given back a moment later.
    outer = attach(backing=inner.device)

    def hiccup(phase, done, total):
        if phase == "verifying" and done == 0:
            # The very next read fails; retries come at 0.1 s, 0.6 s and 2.1 s.
            _set_sizelimit(inner.device, 512)
            threading.Timer(0.3, _set_sizelimit, (inner.device, 0)).start()

    result = flash(image.path, outer.device, image.bmap, progress=hiccup)

    assert result.io_retries >= 1
    assert result.bytes_verified == image.bmap.mapped_bytes


@needs_loop
def test_a_read_error_that_persists_fails_after_a_few_retries(
    image, attach, monkeypatch
):
    monkeypatch.setattr(device_module, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    inner = attach()
    outer = attach(backing=inner.device)

    def broken(phase, done, total):
        if phase == "verifying" and done == 0:
            _set_sizelimit(inner.device, 512)

    try:
        with pytest.raises(FlashError, match="after 4 tries") as failure:
            flash(image.path, outer.device, image.bmap, progress=broken)
    finally:
        _set_sizelimit(inner.device, 0)
    assert not isinstance(failure.value, CardRemoved)


@needs_loop
def test_a_card_smaller_than_the_image_is_refused_before_writing(image, attach):
    card = attach(32 * MiB)

    with pytest.raises(CardTooSmall, match="use a bigger card"):
        flash(image.path, card.device, image.bmap, force=True)

    assert card.content() == OLD * (32 * MiB)


@needs_loop
def test_a_card_whose_partition_is_mounted_is_refused(image, attach, tmp_path):
    card = attach(backing=make_ext4_image(tmp_path / "other", seed=2), partitions=True)
    partition = f"{card.device}p1"
    if not Path(partition).exists():
        _run("partx", "-a", card.device)  # losetup -P does not always scan
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    _run("mount", partition, str(mountpoint))
    try:
        before = card.content()[:512]
        with pytest.raises(UnsafeTarget, match=f"mounted on {mountpoint}"):
            flash(image.path, card.device, image.bmap)
        assert card.content()[:512] == before
    finally:
        _run("umount", str(mountpoint))


@needs_loop
def test_a_mounted_card_is_refused(image, attach, tmp_path):
    card = attach()
    _run("mke2fs", "-q", "-F", "-t", "ext4", card.device)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    _run("mount", card.device, str(mountpoint))
    try:
        with pytest.raises(UnsafeTarget, match="unmount it first"):
            flash(image.path, card.device, image.bmap)
    finally:
        _run("umount", str(mountpoint))


@needs_loop
def test_a_card_another_writer_holds_open_is_refused(image, attach):
    card = attach()
    holder = os.open(card.device, os.O_RDONLY | os.O_EXCL)
    try:
        with pytest.raises(UnsafeTarget, match="busy"):
            flash(image.path, card.device, image.bmap)
    finally:
        os.close(holder)
    assert card.content() == OLD * (80 * MiB)


def test_the_disk_holding_the_running_system_is_refused():
    st_dev = os.stat("/").st_dev
    node = Path(f"/sys/dev/block/{os.major(st_dev)}:{os.minor(st_dev)}")
    if not node.exists():
        pytest.skip("needs / on a block device (it is on overlay, btrfs or similar)")
    node = node.resolve()
    disk = node.parent if (node / "partition").exists() else node
    name = dict(
        line.split("=", 1) for line in (disk / "uevent").read_text().splitlines()
    )["DEVNAME"]

    with pytest.raises(UnsafeTarget, match="holds the running system"):
        check_target(f"/dev/{name}")


@needs_loop
def test_bmaptool_copy_writes_a_card_with_our_bmap_that_our_verify_accepts(
    image, attach
):
    card = attach()

    _run(
        "bmaptool", "copy", "--bmap", str(image.bmap_path), str(image.path), card.device
    )

    assert _bad_blocks(card, image.path, image.bmap) == []
    assert verify(card.device, image.bmap) == image.bmap.mapped_bytes


@needs_loop
def test_a_bmap_made_by_bmaptool_create_flashes_correctly(image, attach, tmp_path):
    card = attach()
    theirs = tmp_path / "theirs.bmap"
    _run("bmaptool", "create", "-o", str(theirs), str(image.path))

    result = flash(image.path, card.device, theirs)

    assert result.bytes_verified == load_bmap(theirs).mapped_bytes
    assert _bad_blocks(card, image.path, load_bmap(theirs)) == []


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
    assert _bad_blocks(card, path, bmap) == []


@needs_loop
def test_the_command_line_flashes_and_verifies_with_progress_bars(image, attach):
    card = attach()

    done = _cli(str(image.path), card.device, "--bmap", str(image.bmap_path))

    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert "verifying" in done.stderr  # the tqdm bar
    assert _bad_blocks(card, image.path, image.bmap) == []


@needs_loop
def test_the_command_line_reports_a_too_small_card_in_one_line_with_exit_3(
    image, attach
):
    card = attach(32 * MiB)

    done = _cli(str(image.path), card.device, "--quiet")

    assert done.returncode == 3
    assert done.stderr.startswith("error: the card in")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_command_line_rejects_bad_arguments_in_one_line_with_exit_2(tmp_path):
    missing = _cli(str(tmp_path / "nope.img"), "/dev/null", "--quiet")
    incomplete = _cli(str(tmp_path / "nope.img"))

    for done in (missing, incomplete):
        assert done.returncode == 2
        assert done.stderr.startswith("error: ")
        assert len(done.stderr.strip().splitlines()) == 1
    assert "nope.img" in missing.stderr


@needs_loop
def test_flashing_a_big_image_stays_well_under_100_mb_of_memory(attach, tmp_path):
    path = tmp_path / "big.img"
    with open(path, "wb") as out:
        out.truncate(256 * MiB)
        for offset in range(0, 256 * MiB, 16 * MiB):  # 10 MiB of every 16: 160 MiB
            out.seek(offset)
            out.write(os.urandom(10 * MiB))
    create_bmap(path)
    card = attach(256 * MiB)

    # The child reports its own peak: ru_maxrss of a child would include the
    # memory of this (big) pytest process it was forked from.
    report_peak = (
        "import sys; from workers.writer.flash.__main__ import main;"
        "code = main(sys.argv[1:]);"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]);"
        "sys.exit(code)"
    )
    command = [sys.executable, "-c", report_peak, str(path), card.device]
    command += ["--bmap", str(path.with_suffix(".bmap")), "--quiet"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    wrote, peak_kib = done.stdout.splitlines()
    assert "verified 160.0 MiB" in wrote
    assert int(peak_kib) < 100 * 1024
