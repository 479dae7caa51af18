"""The downloader against a live API and a real FTP server: resume, hash check,
free disk, and which images it keeps."""

import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apps.accounts.testing import PASSWORD
from apps.scheduler.models import Task, TaskEvent, TaskKind, TaskStatus
from apps.scheduler.testing import World
from apps.scheduler.testing import order as place_order
from tests.hosting import (
    ImageFiles,
    MiB,
    Warehouse,
    make_image,
    publish,
    verified_image,
    warehouse,
)
from workers.common.api import ApiClient
from workers.downloader.worker import Downloader, parser

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Site:
    url: str
    world: World
    files: ImageFiles
    ftp: Warehouse
    image_dir: Path
    clients: list = field(default_factory=list)

    def order(self, quantity=2, **wrong):
        order = place_order(self.world.client, quantity=quantity)
        publish(self.ftp.root, order.pk, self.files)
        verified_image(self.world, order, self.files, ftp_url=self.ftp.url, **wrong)
        return order

    def downloader(self, *options: str) -> Downloader:
        args = ["--api", self.url, "--username", "writer-host", "--host", "host-1"]
        args += ["--image-dir", str(self.image_dir), "--progress", "log"]
        args += ["--reserve", "0", *options]
        api = ApiClient(self.url, "writer-host", PASSWORD, backoff=0.01)
        self.clients.append(api)
        downloader = Downloader(parser().parse_args(args), api=api)
        downloader.ftp_pause = 0.01
        downloader.register()
        return downloader


@pytest.fixture
def site(live_server, tmp_path):
    world = World()
    files = make_image(tmp_path / "built", size=16 * MiB, data=8 * MiB)
    with warehouse(tmp_path / "warehouse", live_server.url) as ftp:
        site = Site(live_server.url, world, files, ftp, tmp_path / "images")
        yield site
    # A kept-alive connection holds a live-server thread and its database session.
    for api in site.clients:
        api.session.close()


def download_task(order) -> Task:
    return Task.objects.get(order=order, kind=TaskKind.DOWNLOAD)


def run_one(downloader: Downloader) -> dict:
    task = downloader.claim()
    assert task is not None, "the downloader claimed nothing"
    downloader.execute(task)
    return task


def test_a_download_interrupted_mid_transfer_resumes_where_it_stopped(site):
    order = site.order(quantity=2)
    site.ftp.cut_after = 6 * MiB
    downloader = site.downloader()

    run_one(downloader)

    task = download_task(order)
    assert task.status == TaskStatus.SUCCEEDED, task.error
    assert site.ftp.cuts == 1
    images = [offset for name, offset in site.ftp.retrievals if name == "image.img"]
    assert len(images) == 2
    assert images[0] == 0
    assert 0 < images[1] <= 6 * MiB  # the second RETR began where the first broke
    folder = site.image_dir / str(order.pk)
    assert (folder / "image.img").read_bytes() == site.files.image.read_bytes()
    assert (folder / "image.bmap").read_bytes() == site.files.bmap.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["image.bmap", "image.img"]
    writes = Task.objects.filter(order=order, kind=TaskKind.WRITE)
    assert [(t.host, t.status) for t in writes] == [("host-1", "pending")] * 2


def test_a_part_file_left_by_a_stopped_downloader_is_resumed_not_restarted(site):
    order = site.order()
    folder = site.image_dir / str(order.pk)
    folder.mkdir(parents=True)
    with open(site.files.image, "rb") as image:
        (folder / "image.img.part").write_bytes(image.read(5 * MiB))

    run_one(site.downloader())

    assert download_task(order).status == TaskStatus.SUCCEEDED
    assert [r for r in site.ftp.retrievals if r[0] == "image.img"] == [
        ("image.img", 5 * MiB)
    ]
    assert (folder / "image.img").read_bytes() == site.files.image.read_bytes()


def test_an_image_whose_hash_is_wrong_is_refused_deleted_and_retried(site):
    order = site.order(sha256="0" * 64)

    run_one(site.downloader())

    task = download_task(order)
    assert task.status == TaskStatus.PENDING  # back in the queue for a new try
    assert task.attempts == 1
    assert "not the file the creator declared" in task.error
    failed = TaskEvent.objects.get(task=task, type="failed")
    assert failed.data["retryable"] is True
    assert not (site.image_dir / str(order.pk) / "image.img").exists()
    assert not Task.objects.filter(order=order, kind=TaskKind.WRITE).exists()


def test_a_wrong_block_map_is_refused_too(site):
    order = site.order(bmap_sha256="1" * 64)

    run_one(site.downloader())

    task = download_task(order)
    assert task.status == TaskStatus.PENDING
    assert "image.bmap is not the file" in task.error
    assert not (site.image_dir / str(order.pk) / "image.bmap").exists()


def test_no_download_is_claimed_when_the_disk_lacks_room_for_the_image(site):
    order = site.order()
    downloader = site.downloader("--reserve", "100000T")

    answer = downloader.api.post("api/v1/tasks/claim/", downloader.claim_body())

    assert answer["task"] is None
    assert "Not enough free disk" in answer["reason"]
    assert download_task(order).status == TaskStatus.PENDING


def test_an_idle_downloader_deletes_images_no_copy_needs_and_keeps_the_rest(site):
    order = site.order()
    downloader = site.downloader()
    run_one(downloader)  # its copies are still to be written: keep it
    done = site.image_dir / str(uuid.uuid4())  # an order finished long ago
    done.mkdir()
    (done / "image.img").write_bytes(b"old")
    other = site.image_dir / "lost+found"  # not ours: never touched
    other.mkdir()

    assert downloader.claim() is None  # idle: the time to clean up

    assert sorted(p.name for p in site.image_dir.iterdir()) == sorted(
        [str(order.pk), "lost+found"]
    )
    Task.objects.filter(order=order, kind=TaskKind.WRITE).update(
        status=TaskStatus.SUCCEEDED
    )
    assert downloader.claim() is None
    assert sorted(p.name for p in site.image_dir.iterdir()) == ["lost+found"]


def test_the_command_line_says_in_one_line_what_is_missing():
    done = subprocess.run(
        [sys.executable, "-m", "workers.downloader", "--username", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m workers.downloader: --api (or IMAGER_API_URL) is required"
    ]
