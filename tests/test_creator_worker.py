"""The creator worker against a live API, a real FTP server, a content server
and a local OCI registry."""

import hashlib
import json
import subprocess
import threading
import time

import pytest
import yaml
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from workers.common.bmap import load_bmap
from workers.creator.oci import export_name
from workers.creator.tests.conftest import BASE_ROOTFS_SIZE, TINY_IMAGE, publish, run
from workers.creator.tests.conftest import base_image as base_image  # fixture
from workers.creator.tests.conftest import http_server as http_server  # fixture
from workers.creator.tests.conftest import registry as registry  # fixture
from workers.creator.tests.conftest import zim_files as zim_files  # fixture
from workers.creator.worker import Creator, parser

pytestmark = pytest.mark.django_db(transaction=True)


class AnyTokenAuthorizer(DummyAuthorizer):
    """Accepts the creator's access token as password; the real warehouse checks
    its signature (tests/test_warehouse*.py), this one only stores files."""

    def validate_authentication(self, username, password, handler):
        if password.count(".") != 2:
            super().validate_authentication(username, "", handler)


@pytest.fixture
def ftp_server(tmp_path):
    root = tmp_path / "warehouse"
    root.mkdir()
    authorizer = AnyTokenAuthorizer()
    authorizer.add_user("creator", "", str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1})
    thread.start()
    yield f"ftp://127.0.0.1:{server.address[1]}", root
    server.close_all()
    thread.join(timeout=10)


@pytest.fixture
def world(ftp_server):
    from apps.scheduler.testing import World

    world = World()
    world.warehouse.ftp_url = ftp_server[0]
    world.warehouse.save()
    return world


def creator(live_server, tmp_path, *extra, allow=("127.0.0.0/8",)):
    """The creator worker, allowed to fetch from ``allow`` besides public
    addresses: the content server and the registry are on loopback."""
    from apps.accounts.testing import PASSWORD

    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    options = parser().parse_args(
        [
            "--api", live_server.url,
            "--username", "creator",
            "--password-file", str(secret),
            "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(tmp_path / "cache"),
            "--host", "builder-test",
            "--poll", "0.2",
            "--once",
            "--progress", "log",
            *(f"--outbound-allow={network}" for network in allow),
            *extra,
        ]
    )  # fmt: skip
    return Creator(options)


def place(
    world, http_server, zim_files, base_image, missing=False, image=None, extra=()
):
    """An order whose create task holds an image-creator recipe (the work the
    scheduler hands out since issue 12); ``extra`` files go after the ZIMs."""
    from apps.orders.models import Order
    from apps.scheduler.testing import configuration, order

    base_url, state = http_server
    files = []
    for zim in zim_files:
        path = publish(state, zim)
        files.append(
            {
                "to": f"/data/contents/zims/{zim.name}",
                "url": base_url + path,
                "size": zim.stat().st_size,
            }
        )
    if missing:
        files.append(
            {"to": "/data/contents/zims/gone.zim", "url": base_url + "/gone.zim"}
        )
    files.extend(extra)
    recipe = {
        "base": {"source": str(base_image), "rootfs_size": BASE_ROOTFS_SIZE},
        "output": {"size": "auto"},
        "oci_images": (
            [{"ident": image, "filesize": 20480, "fullsize": 10240}] if image else []
        ),
        "files": files,
        "offspot": {"timezone": "Africa/Dakar", "ap": {"ssid": "École 42"}},
    }
    placed = order(world.client, config=configuration(world.client), kind="download")
    # The test's own recipe, in place of the rendered one: local base and files.
    Order.objects.filter(pk=placed.pk).update(
        recipe=yaml.safe_dump(recipe, allow_unicode=True)
    )
    return placed


def test_the_creator_builds_uploads_and_reports_an_order(
    live_server, tmp_path, base_image, zim_files, http_server, ftp_server, world,
    registry,
):  # fmt: skip
    from apps.scheduler.models import Image, Task

    placed = place(world, http_server, zim_files, base_image, image=TINY_IMAGE)
    mirror = f"ghcr.io=http://{registry.host}"
    assert creator(live_server, tmp_path, "--registry-mirror", mirror).run() == 0

    task = Task.objects.get(order=placed)
    assert task.status == "succeeded", task.error
    image = Image.objects.get(order=placed)
    folder = ftp_server[1] / "orders" / str(placed.pk)
    uploaded = folder / image.file_name
    sha = hashlib.sha256()
    with open(uploaded, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            sha.update(chunk)
    assert sha.hexdigest() == image.sha256 == task.result["sha256"]
    # Sized to the content (the base and its root file system, three small ZIM
    # files and their margin), not to a card.
    assert uploaded.stat().st_size == image.size < 400 * 1024 * 1024
    bmap = load_bmap(folder / image.bmap_name)
    assert bmap.image_size == image.size
    assert 0 < bmap.mapped_bytes < 200 * 1024 * 1024

    table = json.loads(run("sfdisk", "-J", str(uploaded)).stdout)["partitiontable"]
    assert len(table["partitions"]) == 3
    boot = table["partitions"][0]["start"] * 512
    config = subprocess.run(
        ["mtype", "-i", f"{uploaded}@@{boot}", "::/offspot.yaml"],
        capture_output=True,
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout.decode()
    assert yaml.safe_load(config)["ap"]["ssid"] == "École 42"
    data = f"{uploaded}?offset={table['partitions'][2]['start'] * 512}"
    zims = run("debugfs", "-R", "ls -p /contents/zims", data).stdout
    assert all(f"/{zim.name}/" in zims for zim in zim_files)
    images = run("debugfs", "-R", "ls -p /images", data).stdout
    assert f"/{export_name(TINY_IMAGE)}/" in images
    assert not (tmp_path / "work" / str(placed.pk)).exists()  # nothing left behind
    # One claim, one success: the build was not done twice.
    assert task.events.filter(type="claimed").count() == 1
    assert task.events.filter(type="succeeded").count() == 1


def test_a_missing_content_file_fails_the_order_naming_the_url(
    live_server, tmp_path, base_image, zim_files, http_server, world
):
    from apps.scheduler.models import Image, Task

    placed = place(world, http_server, zim_files[:1], base_image, missing=True)
    assert creator(live_server, tmp_path).run() == 0
    task = Task.objects.get(order=placed)
    assert task.status == "failed"
    assert "/gone.zim" in task.error
    placed.refresh_from_db()
    assert placed.status == "failed"
    assert not Image.objects.exists()
    assert not (tmp_path / "work" / str(placed.pk)).exists()


def test_bad_options_exit_2_with_one_line(tmp_path, capsys):
    from workers.common.worker import main

    code = main(Creator, parser(), ["--username", "x"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m workers.creator: --api (or IMAGER_API_URL) is required"]


def test_a_cancel_during_the_build_stops_it_and_leaves_no_files(
    live_server, tmp_path, base_image, zim_files, http_server, ftp_server, world
):
    from apps.orders.pipeline import cancel_order
    from apps.scheduler.models import Image, Task

    http_server[1].delay = 0.2  # slow downloads: the cancel lands mid-build
    placed = place(world, http_server, zim_files, base_image)
    worker = creator(live_server, tmp_path, "--renew", "0.2")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while Task.objects.get(order=placed).phase != "downloading content":
            assert time.monotonic() < deadline, "the build never reached its content"
            time.sleep(0.05)
        cancel_order(order=placed, actor=world.client)
    finally:
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert Task.objects.get(order=placed).status == "canceled"
    assert not Image.objects.exists()
    assert not (tmp_path / "work" / str(placed.pk)).exists()
    assert not any(ftp_server[1].rglob("*.img"))


def failure_of(placed) -> tuple[str, str]:
    """(the create task's error, the order's failure reason): what the client
    reads."""
    from apps.scheduler.models import Task

    task = Task.objects.get(order=placed)
    assert task.status == "failed"
    placed.refresh_from_db()
    assert placed.status == "failed"
    assert placed.failure_reason == f"create image failed: {task.error}"
    return task.error, placed.failure_reason


def test_content_on_loopback_is_refused_unless_the_creator_allows_it(
    live_server, tmp_path, base_image, zim_files, http_server, world
):
    url, state = http_server
    placed = place(world, http_server, zim_files[:1], base_image)

    assert creator(live_server, tmp_path, allow=()).run() == 0

    error, _reason = failure_of(placed)
    assert error == f"{url}/wiki1.zim.sha256: 127.0.0.1 is not a public address"
    assert state.requests == []  # nothing reached the server


def test_a_checksum_mismatch_names_neither_digest_to_the_client(
    live_server, tmp_path, base_image, zim_files, http_server, world, caplog
):
    """The checksum URL answers 64 hex digits that are not the file's (a secret
    of the same shape): the failure reason names the URL and the mismatch, not
    what the URL said nor what the creator computed; its log has both."""
    url, state = http_server
    secret = "5ec2e7" * 10 + "abcd"
    (state.directory / "doc.txt").write_text("some content")
    (state.directory / "doc.txt.sha256").write_text(f"{secret}  doc.txt\n")
    computed = hashlib.sha256(b"some content").hexdigest()
    entry = {
        "to": "/data/doc.txt",
        "url": f"{url}/doc.txt",
        "checksum": {
            "algo": "sha-256",
            "kind": "url",
            "value": f"{url}/doc.txt.sha256",
        },
    }
    placed = place(world, http_server, [], base_image, extra=[entry])

    assert creator(live_server, tmp_path).run() == 0

    error, reason = failure_of(placed)
    assert error == (
        f"{url}/doc.txt: sha256 checksum mismatch: the file is corrupt or the "
        "checksum is outdated"
    )
    assert secret not in reason and computed not in reason
    assert f"expected {secret}, computed {computed}" in caplog.text


def test_a_checksum_url_whose_body_is_a_secret_never_reaches_the_client(
    live_server, tmp_path, base_image, zim_files, http_server, world
):
    from apps.orders.models import OrderEvent
    from apps.scheduler.models import TaskEvent

    url, state = http_server
    secret = "SECRET-TOKEN-1234 password=hunter2"
    (state.directory / "admin.sha256").write_text(f"{secret}\n")
    entry = {
        "to": "/data/doc.txt",
        "url": f"{url}/doc.txt",
        "checksum": {"algo": "sha-256", "kind": "url", "value": f"{url}/admin.sha256"},
    }
    placed = place(world, http_server, [], base_image, extra=[entry])

    assert creator(live_server, tmp_path).run() == 0

    error, reason = failure_of(placed)
    assert error == (
        f"{url}/admin.sha256: not a sha256 checksum file (it does not start with "
        "64 hexadecimal digits)"
    )
    assert secret not in reason
    for event in TaskEvent.objects.all():
        assert "SECRET" not in json.dumps(event.data)
    for event in OrderEvent.objects.all():
        assert "SECRET" not in event.message
