"""The flash engine and a card that goes wrong: pulled out, failing reads,
too small, mounted or in use, or the disk the system runs from."""

import os
import threading
from pathlib import Path

import pytest

from workers.common.tests.test_bmap import make_ext4_image
from workers.writer.flash import (
    CardRemoved,
    CardTooSmall,
    FlashError,
    UnsafeTarget,
    check_target,
    flash,
)
from workers.writer.flash import device as device_module
from workers.writer.tests.flashkit import (
    OLD,
    MiB,
    needs_loop,
    run,
    set_sizelimit,
)
from workers.writer.tests.flashkit import attach as attach  # fixture
from workers.writer.tests.flashkit import image as image  # fixture


@needs_loop
def test_detaching_the_loop_device_mid_write_raises_card_removed(image, attach):
    card = attach()
    detached, phases = [], []

    def detach(phase, done, total):
        phases.append(phase)
        if phase == "writing" and done >= 8 * MiB and not detached:
            run("losetup", "-d", card.device)
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
            run("losetup", "-c", card.device)

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
            set_sizelimit(inner.device, 512)
            threading.Timer(0.3, set_sizelimit, (inner.device, 0)).start()

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
            set_sizelimit(inner.device, 512)

    try:
        with pytest.raises(FlashError, match="after 4 tries") as failure:
            flash(image.path, outer.device, image.bmap, progress=broken)
    finally:
        set_sizelimit(inner.device, 0)
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
        run("partx", "-a", card.device)  # losetup -P does not always scan
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    run("mount", partition, str(mountpoint))
    try:
        before = card.content()[:512]
        with pytest.raises(UnsafeTarget, match=f"mounted on {mountpoint}"):
            flash(image.path, card.device, image.bmap)
        assert card.content()[:512] == before
    finally:
        run("umount", str(mountpoint))


@needs_loop
def test_a_mounted_card_is_refused(image, attach, tmp_path):
    card = attach()
    run("mke2fs", "-q", "-F", "-t", "ext4", card.device)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    run("mount", card.device, str(mountpoint))
    try:
        with pytest.raises(UnsafeTarget, match="unmount it first"):
            flash(image.path, card.device, image.bmap)
    finally:
        run("umount", str(mountpoint))


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


def test_a_card_file_that_is_deleted_mid_write_is_a_removed_card(image, tmp_path):
    card = tmp_path / "card.img"
    with open(card, "wb") as out:
        out.truncate(64 * MiB)

    def pull(phase, done, total):
        if phase == "writing" and done >= MiB and card.exists():
            card.unlink()

    with pytest.raises(CardRemoved, match="card file disappeared"):
        flash(image.path, card, file_ok=True, progress=pull, buffer_size=MiB)
