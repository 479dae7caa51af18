"""Faults on real parts: a full disk on the creator, the warehouse and the
downloader, and a worker whose clock is an hour off.

Each full disk is a small tmpfs mounted on the folder the part writes to, filled
by a ballast file once the work is under way (another process's data: the
claim's own free-disk check passed). Every fault must end in a clear failure
naming "no space left" and where, no crash; the partial files are removed (the
creator's build) or kept for a resume (uploads, downloads: DESIGN 6); once room
is made, the task (retried, not lost) completes once.

They need the live-server API, not a particular database: they run once, in the
SQLite pass of scripts/test.sh, and skip on the other backends.
"""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.faults.disks import MiB, missing, small_disk
from tests.hosting import make_image, publish, verified_image, wait_for
from tests.hosting import warehouse as ftp_warehouse

ROOT = Path(__file__).resolve().parents[2]
BACKEND = os.environ.get("IMAGER_TEST_DB", "sqlite")
ON_OTHER_BACKEND = pytest.mark.skipif(
    BACKEND != "sqlite",
    reason="runs once, in the SQLite pass: the faults are the workers' and the "
    "warehouse's, not the database's",
)
NO_DISK = missing()
NEEDS_DISK = pytest.mark.skipif(NO_DISK is not None, reason=f"needs {NO_DISK}")

pytestmark = [pytest.mark.django_db(transaction=True), ON_OTHER_BACKEND]


def events(task, type_: str) -> list:
    return list(task.events.filter(type=type_).order_by("at"))


def fill_when(disk, ready, leave: int = 0) -> threading.Thread:
    """Fill ``disk`` from another thread once ``ready()`` is true: the disk
    gets full while the part is at work, not before its claim."""

    def fill():
        wait_for(ready, "the work to be under way", timeout=60, every=0.02)
        disk.fill(leave=leave)

    thread = threading.Thread(target=fill, name="ballast")
    thread.start()
    return thread


# --- the downloader -------------------------------------------------------------


def downloader_of(url: str, image_dir: Path, *options: str):
    from apps.accounts.testing import PASSWORD
    from workers.common.api import ApiClient
    from workers.downloader.worker import Downloader, parser

    args = ["--api", url, "--username", "writer-host", "--host", "host-1"]
    args += ["--image-dir", str(image_dir), "--progress", "log", "--reserve", "0"]
    api = ApiClient(url, "writer-host", PASSWORD, backoff=0.01)
    downloader = Downloader(parser().parse_args([*args, *options]), api=api)
    downloader.ftp_pause = 0.01
    downloader.register()
    return downloader


@NEEDS_DISK
def test_a_full_image_disk_fails_the_download_clearly_and_it_resumes_after(
    live_server, tmp_path
):
    from apps.scheduler.models import Task, TaskKind
    from apps.scheduler.testing import World
    from apps.scheduler.testing import order as place_order

    world = World()
    files = make_image(tmp_path / "built", size=32 * MiB, data=16 * MiB)
    images = tmp_path / "images"
    # Room for the image with its 16 MiB of data twice: the claim asks for the
    # whole image's room, even of a host that resumes a part of it.
    with (
        ftp_warehouse(tmp_path / "warehouse", live_server.url) as ftp,
        small_disk(images, 56 * MiB) as disk,
    ):
        placed = place_order(world.client, quantity=2)
        publish(ftp.root, placed.pk, files)
        verified_image(world, placed, files, ftp_url=ftp.url)
        downloader = downloader_of(live_server.url, images)
        try:
            claimed = downloader.claim()
            assert claimed is not None, "the downloader claimed nothing"
            folder = images / str(placed.pk)
            part = folder / "image.img.part"
            ballast = fill_when(
                disk, lambda: part.exists() and part.stat().st_size > 2 * MiB
            )
            downloader.execute(claimed)
            ballast.join()

            task = Task.objects.get(order=placed, kind=TaskKind.DOWNLOAD)
            assert task.status == "pending", task.error
            assert task.attempts == 1
            assert f"no space left on device in {folder}" in task.error.lower()
            assert "Traceback" not in task.error
            # One try, not six: retrying the connection cannot make room.
            tries = [r for r in ftp.retrievals if r[0] == "image.img"]
            assert len(tries) == 1
            kept = part.stat().st_size
            assert kept > 2 * MiB
            assert not Task.objects.filter(order=placed, kind=TaskKind.WRITE).exists()

            disk.make_room()
            again = downloader.claim()
            assert again is not None and again["id"] == claimed["id"]
            downloader.execute(again)
        finally:
            downloader.api.session.close()

        task.refresh_from_db()
        assert task.status == "succeeded", task.error
        assert [r for r in ftp.retrievals if r[0] == "image.img"][1] == (
            "image.img",
            kept,
        )  # resumed where the disk filled up
        assert (folder / "image.img").read_bytes() == files.image.read_bytes()
        assert len(events(task, "succeeded")) == 1
        writes = Task.objects.filter(order=placed, kind=TaskKind.WRITE)
        assert writes.count() == 2  # one per copy, made once


# --- a worker's clock an hour off -----------------------------------------------


# libfaketime 0.9.10 (Debian 12) makes Python 3.11's time.sleep fail with EINVAL
# when the monotonic clock is left alone (it shifts sleep's absolute monotonic
# deadline by the offset); a relative wait sleeps the same and works.
SLEEP_SHIM = """\
import threading
import time

_pause = threading.Event()
time.sleep = lambda seconds: _pause.wait(max(0.0, seconds))
"""


def faketime_missing() -> str | None:
    if shutil.which("faketime") is None:
        return "faketime (apt-get install faketime)"
    return None


@pytest.mark.skipif(
    faketime_missing() is not None, reason=f"needs {faketime_missing()}"
)
@pytest.mark.parametrize("offset", ["+1h", "-1h"])
def test_a_worker_an_hour_off_keeps_its_lease_and_does_the_task_once(
    live_server, tmp_path, offset, settings
):
    from apps.accounts.models import RevokedToken
    from apps.accounts.testing import PASSWORD
    from apps.scheduler.models import Task, TaskKind
    from apps.scheduler.testing import World
    from apps.scheduler.testing import order as place_order

    # A lease shorter than the downloader's pause before it resumes a broken
    # transfer (2 s): only renewals, timed by the API's clock, keep it.
    settings.LEASE_SECONDS = 1.5
    world = World()
    files = make_image(tmp_path / "built", size=32 * MiB, data=16 * MiB)
    with ftp_warehouse(tmp_path / "warehouse", live_server.url) as ftp:
        placed = place_order(world.client, quantity=2)
        publish(ftp.root, placed.pk, files)
        verified_image(world, placed, files, ftp_url=ftp.url)
        # The transfer breaks once: the resume logs in to the warehouse again
        # with a token the worker judged fresh by its own clock.
        ftp.cut_after = 8 * MiB
        shim = tmp_path / "shim"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(SLEEP_SHIM)
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": f"{shim}:{ROOT}",
            "IMAGER_PASSWORD": PASSWORD,
        }
        # Only the wall clock is off, as on a machine whose clock is wrong: its
        # monotonic clock (time since boot) is not.
        command = ["faketime", "--exclude-monotonic", "-f", offset]
        command += [sys.executable, "-m"]
        command += ["workers.downloader", "--api", live_server.url]
        command += ["--username", "writer-host", "--host", "host-1"]
        command += ["--image-dir", str(tmp_path / "images"), "--reserve", "0"]
        command += ["--once", "--poll", "0.2", "--renew", "0.3", "--progress", "log"]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr

    task = Task.objects.get(order=placed, kind=TaskKind.DOWNLOAD)
    assert task.status == "succeeded", f"{task.error}\n{done.stderr}"
    assert len(events(task, "claimed")) == 1
    assert len(events(task, "succeeded")) == 1
    assert ftp.cuts == 1
    writes = Task.objects.filter(order=placed, kind=TaskKind.WRITE)
    assert writes.count() == 2
    # The worker kept the token the API gave it (60 minutes by the API's
    # clock): no refresh and no second login in a run of seconds.
    assert RevokedToken.objects.count() == 0
    folder = tmp_path / "images" / str(placed.pk)
    assert (folder / "image.img").read_bytes() == files.image.read_bytes()
