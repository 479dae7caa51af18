"""The flash engine's command line (python -m workers.writer.flash): exit
codes, one-line errors, progress bars, and a flat memory use."""

import os
import subprocess
import sys

from workers.common.bmap import create_bmap
from workers.writer.tests.flashkit import (
    ROOT,
    MiB,
    bad_blocks,
    cli,
    needs_loop,
)
from workers.writer.tests.flashkit import attach as attach  # fixture
from workers.writer.tests.flashkit import image as image  # fixture


def test_the_command_line_writes_into_a_file_with_to_file(image, tmp_path):
    card = tmp_path / "card.img"
    with open(card, "wb") as out:
        out.truncate(64 * MiB)

    refused = cli(str(image.path), str(card), "--quiet")
    done = cli(str(image.path), str(card), "--bmap", str(image.bmap_path), "--to-file")

    assert refused.returncode == 2
    assert "--to-file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout


@needs_loop
def test_the_command_line_flashes_and_verifies_with_progress_bars(image, attach):
    card = attach()

    done = cli(str(image.path), card.device, "--bmap", str(image.bmap_path))

    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert "verifying" in done.stderr  # the tqdm bar
    assert bad_blocks(card, image.path, image.bmap) == []


@needs_loop
def test_the_command_line_reports_a_too_small_card_in_one_line_with_exit_3(
    image, attach
):
    card = attach(32 * MiB)

    done = cli(str(image.path), card.device, "--quiet")

    assert done.returncode == 3
    assert done.stderr.startswith("error: the card in")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_command_line_rejects_bad_arguments_in_one_line_with_exit_2(tmp_path):
    missing = cli(str(tmp_path / "nope.img"), "/dev/null", "--quiet")
    incomplete = cli(str(tmp_path / "nope.img"))

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
