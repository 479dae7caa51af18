"""An image bigger than the machine's memory, written and verified onto a loop
device as big, by the command line in a child process whose peak memory is
measured: the engine's memory must not grow with the image.

The image and the card are sparse files (a few GB of data scattered over
64 GB or more); the test skips without root or the disk space for the data,
and deletes both files whatever happens.
"""

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.common.bmap import create_bmap
from workers.writer.tests.loopcards import loop_card_slots as loop_card_slots
from workers.writer.tests.loopcards import needs_loop

MiB = 1024 * 1024
GiB = 1024 * MiB
ROOT = Path(__file__).resolve().parents[3]
POOL = 64 * MiB  # random bytes the extents are cut from
ZONES = 256  # one extent of data in each zone of the image
LENGTHS = (4096, 4 * MiB, 12 * MiB, 16 * MiB, 32 * MiB)  # about 3.2 GiB in all
PEAK_BOUND = 100 * MiB  # the same bound as for a 256 MiB image (test_flash_cli)

# The children report their own peak: ru_maxrss of a child would include the
# memory of this pytest process it was forked from.
PEAK = "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]);"
FLASH_CLI = (
    "import sys; from workers.writer.flash.__main__ import main;"
    f"code = main(sys.argv[1:]); {PEAK} sys.exit(code)"
)
VERIFY_WHOLE = (
    "import sys; from workers.writer.flash import verify;"
    f"print(verify(sys.argv[1], sys.argv[2])); {PEAK}"
)


def memory() -> int:
    """RAM and swap of this machine, in bytes."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in meminfo}
    return (kib["MemTotal"] + kib.get("SwapTotal", 0)) * 1024


def image_size() -> int:
    """64 GiB, or twice the memory of a bigger machine: the old engine mapped
    the whole image private and writable, which Linux refuses past RAM + swap."""
    return -(-max(64 * GiB, 2 * memory()) // GiB) * GiB


def make_image(path: Path, size: int) -> list[tuple[int, int, int]]:
    """A sparse image with an extent of data in each zone, the first at byte 0
    (the partition table, written last) and the last ending at the image's end.
    Returns (offset, length, where in the pool) of each extent."""
    rng = random.Random(12)
    pool = memoryview(rng.randbytes(POOL))
    zone = size // ZONES
    extents = []
    with open(path, "wb") as out:
        out.truncate(size)
        for index in range(ZONES):
            length = rng.choice(LENGTHS)
            if index == 0:
                offset = 0
            elif index == ZONES - 1:
                offset = size - length
            else:
                offset = index * zone + rng.randrange(0, zone - length, 4096)
            source = rng.randrange(0, POOL - length)
            out.seek(offset)
            out.write(pool[source : source + length])
            extents.append((offset, length, source))
    return extents


@pytest.fixture
def scratch(tmp_path):
    """A folder for the image and the card, emptied afterwards whatever
    happens (pytest keeps the last runs' tmp_path: not gigabytes of them)."""
    folder = tmp_path / "big"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_loop
def test_an_image_bigger_than_memory_is_written_and_verified_in_flat_memory(
    scratch, loop_card_slots, record_property
):
    size = image_size()
    need = 2 * sum(LENGTHS) * ZONES // len(LENGTHS) + 2 * GiB  # image + card data
    free = shutil.disk_usage(scratch).free
    if free < need:
        pytest.skip(f"needs {need / GiB:.0f} GiB free in {scratch}: {free / GiB:.0f}")
    started = time.monotonic()
    image = scratch / "big.img"
    extents = make_image(image, size)
    bmap = create_bmap(image)
    assert size > memory()
    assert 2.5 * GiB < bmap.mapped_bytes < 4 * GiB
    card = scratch / "card.raw"
    with open(card, "wb") as out:
        out.truncate(size)  # sparse: an empty card costs no disk
    slot = loop_card_slots()
    slot.insert(card)
    # The card file's holes then read as zeros without filling the page cache:
    # the whole card is read back below (where it fails, that only costs time).
    subprocess.run(["losetup", "--direct-io=on", slot.device], check=False)

    flashing = time.monotonic()
    command = [sys.executable, "-c", FLASH_CLI, str(image), slot.device]
    command += ["--bmap", str(image.with_suffix(".bmap")), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    flash_seconds = time.monotonic() - flashing

    assert done.returncode == 0, done.stderr
    wrote, peak_kib = done.stdout.splitlines()
    peak = int(peak_kib) * 1024
    record_property("image_bytes", size)
    record_property("flash_seconds", round(flash_seconds, 1))
    record_property("peak_rss_mib", round(peak / MiB, 1))
    mapped_mib = f"{bmap.mapped_bytes / MiB:.1f} MiB"
    assert f"wrote {mapped_mib}" in wrote
    assert f"verified {mapped_mib}" in wrote
    assert peak < PEAK_BOUND, f"peak RSS {peak / MiB:.1f} MiB for {size / GiB} GiB"
    # The card holds each extent where the image has it (the engine's own
    # verify said so; this looks without it), zeros between them.
    pool = random.Random(12).randbytes(POOL)
    starts = {offset for offset, _, _ in extents}
    with open(card, "rb") as got:
        for offset, length, source in extents:
            for at in {0, length // 2 // 4096 * 4096, length - 4096}:
                got.seek(offset + at)
                want = pool[source + at : source + at + 4096]
                assert got.read(4096) == want, f"extent at byte {offset}"
            if offset + length < size and offset + length not in starts:
                got.seek(offset + length)
                assert got.read(4096) == b"\0" * 4096, f"after byte {offset}"
    # Without the bmap every byte of the card is compared: the image's data
    # with the image, its holes with zeros.
    verifying = time.monotonic()
    command = [sys.executable, "-c", VERIFY_WHOLE, slot.device, str(image)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    verify_seconds = time.monotonic() - verifying

    assert done.returncode == 0, done.stderr
    verified, whole_kib = done.stdout.splitlines()
    whole_peak = int(whole_kib) * 1024
    record_property("verify_whole_seconds", round(verify_seconds, 1))
    record_property("verify_whole_peak_rss_mib", round(whole_peak / MiB, 1))
    assert int(verified) == size
    assert whole_peak < PEAK_BOUND, f"peak RSS {whole_peak / MiB:.1f} MiB"
    print(
        f"\n{size / GiB:.0f} GiB image, {mapped_mib} mapped: flashed and verified "
        f"in {flash_seconds:.1f} s, peak RSS {peak / MiB:.1f} MiB; the whole card "
        f"verified in {verify_seconds:.1f} s, peak RSS {whole_peak / MiB:.1f} MiB "
        f"(bound {PEAK_BOUND / MiB:.0f} MiB); test {time.monotonic() - started:.0f} s"
    )
