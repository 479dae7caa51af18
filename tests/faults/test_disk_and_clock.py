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

import contextlib
import ftplib
import io
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
from tests.test_creator_worker import creator, place
from tests.test_creator_worker import ftp_server as ftp_server  # fixture
from tests.test_creator_worker import world as world  # fixture (ftp_server)
from tests.test_warehouse import running
from workers.creator.tests.conftest import base_image as base_image  # fixture
from workers.creator.tests.conftest import http_server as http_server  # fixture
from workers.creator.tests.conftest import zim_files as zim_files  # fixture

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


# --- the creator ----------------------------------------------------------------


@NEEDS_DISK
def test_a_full_work_disk_fails_the_build_clearly_frees_it_and_the_retry_builds(
    live_server, tmp_path, base_image, zim_files, http_server, ftp_server, world
):
    from apps.scheduler.models import Image, Task

    http_server[1].delay = 0.05  # the content takes a moment: the disk fills then
    placed = place(world, http_server, zim_files, base_image)
    # The order's size estimate is for its real content; the test's recipe is
    # small, and the claim must find room on the small disk.
    Task.objects.filter(order=placed).update(needed_bytes=MiB)
    work = tmp_path / "work"
    with small_disk(work, 24 * MiB) as disk:
        ballast = fill_when(
            disk,
            lambda: Task.objects.get(order=placed).phase == "downloading content",
        )
        assert creator(live_server, tmp_path).run() == 0
        ballast.join()

        task = Task.objects.get(order=placed)
        assert task.status == "pending", task.error  # retried, not lost
        assert task.attempts == 1
        assert f"no space left on device in {work} " in task.error
        assert "Traceback" not in task.error
        (failure,) = events(task, "failed")
        assert failure.data["retryable"] is True
        assert failure.data["error"] == task.error
        # The build's files are gone: only the ballast takes room now.
        assert sorted(p.name for p in work.iterdir()) == ["ballast"]
        assert not Image.objects.exists()

        disk.make_room()  # the operator's fix
        assert creator(live_server, tmp_path).run() == 0

        task.refresh_from_db()
        assert task.status == "succeeded", task.error
        assert len(events(task, "claimed")) == 2
        assert len(events(task, "succeeded")) == 1
        image = Image.objects.get(order=placed)
        uploaded = ftp_server[1] / "orders" / str(placed.pk) / image.file_name
        assert uploaded.stat().st_size == image.size
        assert list(work.iterdir()) == []


# --- the warehouse --------------------------------------------------------------


@NEEDS_DISK
def test_a_full_warehouse_disk_fails_the_upload_clearly_and_the_retry_completes(
    live_server, tmp_path, base_image, zim_files, http_server, world, caplog
):
    from apps.scheduler.models import Image, Task

    placed = place(world, http_server, zim_files, base_image)
    Task.objects.filter(order=placed).update(needed_bytes=MiB)
    store = tmp_path / "store"
    # 100 MiB/s: the 140 MiB upload lasts long enough for the ballast to land
    # mid-transfer however loaded the machine is.
    rate = 100 * MiB
    with (
        small_disk(store, 200 * MiB) as disk,
        running(live_server, store, max_upload_rate=rate) as server,
    ):
        folder = store / "orders" / str(placed.pk)

        def uploading() -> bool:
            return any(p.stat().st_size > 4 * MiB for p in folder.glob("*.img.part"))

        ballast = fill_when(disk, uploading)
        assert creator(live_server, tmp_path).run() == 0
        ballast.join()

        task = Task.objects.get(order=placed)
        assert task.status == "pending", task.error
        assert task.attempts == 1
        assert "no space left" in task.error.lower()
        assert f"orders/{placed.pk}/" in task.error
        assert "Traceback" not in task.error
        assert events(task, "failed")[0].data["retryable"] is True
        # The warehouse kept what it received, for a resume, and still serves.
        (part,) = folder.glob("*.img.part")
        assert part.stat().st_size > 4 * MiB
        assert not list(folder.glob("*.img"))
        assert Image.objects.get(order=placed).state != "verified"
        assert f"no space left on device in {store} while receiving" in caplog.text

        disk.make_room()
        assert creator(live_server, tmp_path).run() == 0

        task.refresh_from_db()
        assert task.status == "succeeded", task.error
        image = wait_for(
            lambda: (
                (row := Image.objects.get(order=placed)).state == "verified" and row
            ),
            "the image to be verified",
        )
        assert len(events(task, "succeeded")) == 1
        # The retry built the image again and sent it whole: resuming the first
        # build's .part would have mixed two builds (rejected, built a third time).
        assert not events(task, "image_rejected")
        assert not list(folder.glob("*.part"))
        assert (folder / image.file_name).stat().st_size == image.size
        assert server.address  # the warehouse never stopped


@NEEDS_DISK
def test_the_warehouse_answers_a_disk_filled_mid_upload_with_452_and_keeps_it(
    live_server, tmp_path, world
):
    """The same fault by hand, on the warehouse's default receive path: the
    client decides when the disk fills, and resumes the .part itself."""
    from tests.test_warehouse import Build, login

    store = tmp_path / "store"
    # Claimed before the warehouse reports its small disk: the claim's own
    # room check (the order's real size estimate) is not what this tests.
    build = Build(world, size=8 * MiB)
    with small_disk(store, 24 * MiB) as disk, running(live_server, store) as server:
        part = store / f"{build.img_path}.part"
        with login(server, world.creator_account) as client:
            client.voidcmd("TYPE I")
            data = client.transfercmd(f"STOR {build.img_path}")
            data.sendall(build.data[: 2 * MiB])
            wait_for(
                lambda: part.exists() and part.stat().st_size == 2 * MiB,
                "the first bytes on the warehouse's disk",
            )
            disk.fill()
            with contextlib.suppress(OSError):  # the warehouse stops reading
                data.sendall(build.data[2 * MiB :])
            data.close()
            with pytest.raises(ftplib.error_temp) as refusal:
                client.voidresp()
        reply = str(refusal.value)
        assert reply.startswith(
            f"452 No space left on the warehouse's disk for /{build.img_path}: "
        )
        assert "bytes received are kept" in reply

        disk.make_room()
        with login(server, world.creator_account) as client:
            client.voidcmd("TYPE I")
            offset = client.size(build.img_path)
            assert offset == part.stat().st_size >= 2 * MiB
            client.storbinary(f"APPE {build.img_path}", io.BytesIO(build.data[offset:]))
            client.storbinary(f"STOR {build.bmap_path}", io.BytesIO(build.bmap))
        # What the full disk cut short (a write half done) joins up exactly.
        assert build.wait_state("verified").received_sha256 == build.sha256


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

    # A lease shorter than the downloader's pauses before it resumes a broken
    # transfer (2 s, then 4 s): only renewals, timed by the API's clock, keep
    # it. Renewals every 0.3 s leave it room on a loaded machine.
    settings.LEASE_SECONDS = 4
    world = World()
    files = make_image(tmp_path / "built", size=32 * MiB, data=16 * MiB)
    with ftp_warehouse(tmp_path / "warehouse", live_server.url) as ftp:
        placed = place_order(world.client, quantity=2)
        publish(ftp.root, placed.pk, files)
        verified_image(world, placed, files, ftp_url=ftp.url)
        # The transfer breaks twice: each resume logs in to the warehouse again
        # with a token the worker judged fresh by its own clock.
        ftp.cut_after = 8 * MiB

        def cut_again():
            wait_for(lambda: ftp.cuts == 1, "the first cut", timeout=60, every=0.02)
            ftp.cut_after = 4 * MiB  # the resume's RETR, 2 s later

        recut = threading.Thread(target=cut_again, name="cut-again")
        recut.start()
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
        recut.join()
        assert done.returncode == 0, done.stderr

    task = Task.objects.get(order=placed, kind=TaskKind.DOWNLOAD)
    assert task.status == "succeeded", f"{task.error}\n{done.stderr}"
    assert len(events(task, "claimed")) == 1
    assert len(events(task, "succeeded")) == 1
    assert ftp.cuts == 2
    writes = Task.objects.filter(order=placed, kind=TaskKind.WRITE)
    assert writes.count() == 2
    # The worker kept the token the API gave it (60 minutes by the API's
    # clock): no refresh and no second login in a run of seconds.
    assert RevokedToken.objects.count() == 0
    folder = tmp_path / "images" / str(placed.pk)
    assert (folder / "image.img").read_bytes() == files.image.read_bytes()
