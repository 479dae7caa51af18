"""Transfers through the warehouse against a live API: cut and resumed uploads
(ftplib, curl, lftp, across a restart), corrupted and undeclared uploads, fifty
clients at once, FTPS, the disk reserve, deletions, limits, and the command line
as a real process."""

import contextlib
import ftplib
import functools
import io
import os
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.accounts.models import Role
from apps.accounts.testing import PASSWORD, make_user
from apps.scheduler.models import Image, Task
from apps.scheduler.models import Warehouse as WarehouseRow
from tests.test_warehouse import (
    MB,
    Build,
    audit_lines,
    connect,
    curl,
    download,
    eventually,
    login,
    refused,
    running,
    settled,
    token_for,
    verified_build,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- cut and resumed uploads ----------------------------------------------------


def test_an_upload_cut_at_a_random_offset_and_resumed_ends_verified(
    warehouse, world, store, caplog
):
    caplog.set_level("INFO", logger="ftp.audit")
    build = Build(world, size=5 * MB)
    cut = random.randrange(1, len(build.data) - 1)
    with login(warehouse, world.creator_account) as client:
        # The data connection closes normally but short of the declared size:
        # the warehouse keeps the .part instead of taking it for the image.
        client.storbinary(f"STOR {build.img_path}", io.BytesIO(build.data[:cut]))
        assert not (store / build.img_path).exists()
        assert (store / f"{build.img_path}.part").stat().st_size == cut
        client.voidcmd("TYPE I")
        assert client.size(build.img_path) == cut
        client.storbinary(f"APPE {build.img_path}", io.BytesIO(build.data[cut:]))
        client.storbinary(f"STOR {build.bmap_path}", io.BytesIO(build.bmap))
    image = build.wait_state("verified")
    assert image.received_sha256 == build.sha256
    assert image.received_size == len(build.data)
    assert (store / build.img_path).read_bytes() == build.data
    assert not (store / f"{build.img_path}.part").exists()
    results = [(u["path"], u["result"]) for u in audit_lines(caplog, "upload")]
    assert results[:2] == [
        ("/" + build.img_path, "incomplete"),
        ("/" + build.img_path, "complete"),
    ]


def _cut_abruptly(client: ftplib.FTP, path: str, data: bytes, store) -> None:
    """Send ``data`` then reset the data connection, like a crashed client."""
    client.voidcmd("TYPE I")
    conn = client.transfercmd(f"STOR {path}")
    conn.sendall(data)
    # Reset only once the server is receiving: a connection reset before the
    # server accepted it leaves pyftpdlib waiting for another one.
    part = store / f"{path}.part"
    eventually(lambda: part.exists() and part.stat().st_size > 0, what="bytes")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    with contextlib.suppress(ftplib.Error):
        client.voidresp()  # 426: the server saw the transfer break


def test_an_upload_reset_mid_transfer_resumes_with_rest_after_a_restart(
    live_server, world, store
):
    with running(live_server, store) as warehouse:
        build = Build(world, size=4 * MB)
        cut = random.randrange(MB, 3 * MB)
        with login(warehouse, world.creator_account) as client:
            _cut_abruptly(client, build.img_path, build.data[:cut], store)
        part = store / f"{build.img_path}.part"
        eventually(part.exists, what="the .part")
    # A new process: the running hash is gone, the kept prefix is read once.
    with running(live_server, store) as warehouse:
        with login(warehouse, world.creator_account) as client:
            client.voidcmd("TYPE I")
            offset = client.size(build.img_path)
            assert 0 < offset <= cut
            client.storbinary(
                f"STOR {build.img_path}", io.BytesIO(build.data[offset:]), rest=offset
            )
            client.storbinary(f"STOR {build.bmap_path}", io.BytesIO(build.bmap))
        assert build.wait_state("verified").received_sha256 == build.sha256


def test_curl_resumes_a_reset_upload_and_downloads_the_verified_image(
    warehouse, world, store, tmp_path
):
    build = Build(world, size=3 * MB)
    with login(warehouse, world.creator_account) as client:
        cut = random.randrange(1, MB)
        _cut_abruptly(client, build.img_path, build.data[:cut], store)
    local = tmp_path / build.name
    local.write_bytes(build.data)
    (tmp_path / build.bmap_name).write_bytes(build.bmap)
    host, port = warehouse.address
    folder = f"ftp://{host}:{port}/{build.folder}/"
    user = f"creator:{token_for(world.creator_account)}"
    curl("--user", user, "-C", "-", "-T", str(local), folder)
    curl("--user", user, "-T", str(tmp_path / build.bmap_name), folder)
    assert build.wait_state("verified").received_sha256 == build.sha256
    settled(warehouse)
    reader = make_user(Role.DOWNLOADER, "reader")
    fetched = tmp_path / "fetched.img"
    curl(
        "--user",
        f"reader:{token_for(reader)}",
        "-o",
        str(fetched),
        f"ftp://{host}:{port}/{build.img_path}",
    )
    assert fetched.read_bytes() == build.data
    reader_login = f"reader:{token_for(reader)}"
    denied = curl("--user", reader_login, "-T", str(local), folder, check=False)
    assert denied.returncode != 0


def lftp(warehouse, user, token, *commands) -> subprocess.CompletedProcess:
    if shutil.which("lftp") is None:
        pytest.skip("lftp is missing: apt-get install lftp")
    host, port = warehouse.address
    script = "; ".join(
        [
            "set cmd:fail-exit true",
            "set ftp:ssl-allow false",
            "set net:max-retries 1",
            "set net:timeout 20",
            f"open -u {user},{token} -p {port} {host}",
            *commands,
        ]
    )
    return subprocess.run(["lftp", "-c", script], capture_output=True, timeout=120)


def test_lftp_resumes_an_upload_with_put_c_and_gets_the_image(
    warehouse, world, store, tmp_path
):
    build = Build(world, size=3 * MB)
    cut = random.randrange(1, len(build.data))
    with login(warehouse, world.creator_account) as client:
        client.storbinary(f"STOR {build.img_path}", io.BytesIO(build.data[:cut]))
    local = tmp_path / build.name
    local.write_bytes(build.data)
    (tmp_path / build.bmap_name).write_bytes(build.bmap)
    token = token_for(world.creator_account)
    done = lftp(
        warehouse,
        "creator",
        token,
        f"put -c {local} -o {build.img_path}",
        f"put {tmp_path / build.bmap_name} -o {build.bmap_path}",
    )
    assert done.returncode == 0, done.stderr.decode()
    assert build.wait_state("verified").received_sha256 == build.sha256
    settled(warehouse)
    reader = make_user(Role.DOWNLOADER, "reader")
    fetched = tmp_path / "fetched.img"
    done = lftp(
        warehouse, "reader", token_for(reader), f"get {build.img_path} -o {fetched}"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert fetched.read_bytes() == build.data
    denied = lftp(warehouse, "reader", token_for(reader), f"rm {build.img_path}")
    assert denied.returncode != 0
    assert (store / build.img_path).exists()


# --- what the API decides -------------------------------------------------------


def test_a_corrupted_upload_is_rejected_kept_aside_and_never_served(
    warehouse, world, store
):
    build = Build(world, size=2 * MB)
    corrupted = bytearray(build.data)
    corrupted[random.randrange(len(corrupted))] ^= 0xFF
    with login(warehouse, world.creator_account) as client:
        build.upload(client, data=bytes(corrupted))
    image = build.wait_state("rejected")
    settled(warehouse)
    assert image.received_sha256 != build.sha256
    assert not (store / build.img_path).exists()
    kept = {p.name: p for p in (store / "quarantine" / str(build.order.pk)).iterdir()}
    image_copy = next(p for name, p in kept.items() if name.startswith(build.name))
    assert image_copy.read_bytes() == bytes(corrupted)
    reader = make_user(Role.DOWNLOADER, "reader")
    with login(warehouse, reader) as client:
        refused(download, client, build.img_path)
        refused(client.nlst, "quarantine")
    with login(warehouse, world.manager) as client:
        assert image_copy.name in client.nlst(f"quarantine/{build.order.pk}")
    task = Task.objects.get(pk=build.task["id"])
    assert task.status == "pending"  # built again, within the attempt budget


def test_an_upload_before_the_declaration_is_reported_again_until_accepted(
    warehouse, world
):
    build = Build(world, size=MB, declare=False)
    with login(warehouse, world.creator_account) as client:
        build.upload(client)
    eventually(
        lambda: any(r.attempts >= 2 for r in warehouse.spool.all()),
        what="retried reports",
    )
    reader = make_user(Role.DOWNLOADER, "reader")
    with login(warehouse, reader) as client:
        message = refused(download, client, build.img_path)
        assert "being verified" in message
    build.declare()
    build.wait_state("verified")
    settled(warehouse)
    with login(warehouse, reader) as client:
        assert download(client, build.img_path) == build.data


def test_files_the_api_marks_deletable_are_deleted_and_reported(
    warehouse, world, store
):
    build = verified_build(warehouse, world, size=4096)
    Image.objects.filter(order=build.order).update(state="deletable")
    eventually(lambda: build.image().state == "deleted", what="the deletion")
    assert not (store / build.folder).exists()


# --- load -----------------------------------------------------------------------


def test_fifty_clients_upload_and_download_at_once(warehouse, world):
    source = verified_build(warehouse, world, size=2 * MB)
    builds = [Build(world, size=512 * 1024 + i) for i in range(25)]
    readers = [make_user(Role.DOWNLOADER, f"reader-{i}") for i in range(25)]
    creator_token = token_for(world.creator_account)
    reader_tokens = [(r.username, token_for(r)) for r in readers]
    start = threading.Barrier(50)

    def upload(build):
        start.wait()
        with connect(warehouse, "creator", creator_token) as client:
            build.upload(client)

    def fetch(credentials):
        start.wait()
        with connect(warehouse, *credentials) as client:
            return download(client, source.img_path)

    with ThreadPoolExecutor(50) as pool:
        uploads = [pool.submit(upload, b) for b in builds]
        downloads = [pool.submit(fetch, c) for c in reader_tokens]
        for future in uploads:
            future.result(timeout=120)
        assert all(f.result(timeout=120) == source.data for f in downloads)
    ids = [b.order.pk for b in builds]
    eventually(
        lambda: Image.objects.filter(order__in=ids, state="verified").count() == 25,
        timeout=60,
        what="25 verified images",
    )
    for build in builds:
        assert build.image().received_sha256 == build.sha256


# --- TLS ------------------------------------------------------------------------


def test_login_and_transfers_over_tls(live_server, world, store, certificate, tmp_path):
    cert, key = certificate
    context = ssl.create_default_context(cafile=cert)
    secure = functools.partial(ftplib.FTP_TLS, context=context)
    with running(live_server, store, tls_cert=cert, tls_key=key) as warehouse:
        host, port = warehouse.address
        assert WarehouseRow.objects.get(name="main").ftp_url == f"ftps://{host}:{port}"
        build = Build(world, size=MB)
        token = token_for(world.creator_account)
        with connect(warehouse, "creator", token, cls=secure, tls=True) as client:
            build.upload(client)
        build.wait_state("verified")
        settled(warehouse)

        message = refused(connect, warehouse, "creator", token, code="550")
        assert "SSL/TLS required on the control channel" in message
        client = secure()
        client.connect(host, port, timeout=15)
        client.login("creator", token)  # TLS on the control channel only
        message = refused(client.nlst, build.folder)
        assert "SSL/TLS required on the data channel" in message
        client.quit()

        reader = make_user(Role.DOWNLOADER, "reader")
        fetched = tmp_path / "fetched.img"
        curl(
            "--ssl-reqd",
            "--cacert",
            cert,
            "--user",
            f"reader:{token_for(reader)}",
            "-o",
            str(fetched),
            f"ftp://{host}:{port}/{build.img_path}",
        )
        assert fetched.read_bytes() == build.data


# --- disk and limits ------------------------------------------------------------


def test_uploads_are_refused_when_free_space_would_fall_below_the_reserve(
    live_server, world, store, caplog
):
    caplog.set_level("INFO", logger="ftp.audit")
    with running(live_server, store, reserve=1 << 60) as warehouse:
        build = Build(world, size=1024)
        with login(warehouse, world.creator_account) as client:
            message = refused(
                client.storbinary,
                f"STOR {build.img_path}",
                io.BytesIO(build.data),
                code="452",
            )
        assert "Not enough disk space" in message
        assert "must stay free" in message
        assert not (store / f"{build.img_path}.part").exists()
        refusal = audit_lines(caplog, "refused")[-1]
        assert (refusal["cmd"], refusal["code"]) == ("STOR", "452")


def test_an_upload_larger_than_the_free_space_is_refused_up_front(warehouse, world):
    build = Build(world, size=1024, declare=False)
    response = build.creator_api.post(
        f"/api/v1/tasks/{build.task['id']}/image/",
        {
            "lease_id": build.task["lease_id"],
            "file_name": build.name,
            "size": 10**15,
            "sha256": build.sha256,
            "bmap_name": build.bmap_name,
            "bmap_size": len(build.bmap),
            "bmap_sha256": build.sha256,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    with login(warehouse, world.creator_account) as client:
        message = refused(
            client.storbinary, f"STOR {build.img_path}", io.BytesIO(b"x"), code="452"
        )
    assert f"needs {10**15} more" in message


def test_connections_beyond_the_limit_per_address_are_turned_away(
    live_server, world, store
):
    with running(live_server, store, max_connections_per_ip=2) as warehouse:
        host, port = warehouse.address
        first, second, third = (ftplib.FTP() for _ in range(3))  # noqa: S321
        first.connect(host, port, timeout=10)
        second.connect(host, port, timeout=10)
        with pytest.raises(ftplib.error_temp, match="421"):
            third.connect(host, port, timeout=10)
        first.close()
        second.close()


# --- the command line as a real process -----------------------------------------


def test_python_m_ftp_serves_with_settings_from_the_environment(
    live_server, world, tmp_path
):
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "WAREHOUSE_API_URL": live_server.url,
        "WAREHOUSE_USERNAME": "warehouse",
        "WAREHOUSE_PASSWORD": PASSWORD,
        "WAREHOUSE_ROOT": str(tmp_path / "store"),
        "WAREHOUSE_NAME": "main",
        "WAREHOUSE_PORT": "0",
        "WAREHOUSE_HTTP_PORT": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ftp", "--reserve", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("warehouse listening on 127.0.0.1:"), (
            line + process.stderr.read()
        )
        port = int(line.split()[3].rsplit(":", 1)[1])
        token = token_for(world.warehouse_account)
        listing = curl("--user", f"warehouse:{token}", f"ftp://127.0.0.1:{port}/")
        assert b"orders" in listing.stdout
        row = WarehouseRow.objects.get(name="main")
        assert row.ftp_url == f"ftp://127.0.0.1:{port}"
        # The download server answers on the address it announced.
        assert row.download_url.startswith("http://127.0.0.1:")
        nothing = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", row.download_url)
        assert nothing.stdout == b"404"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    log = process.stderr.read()
    assert "event=login result=ok user=warehouse" in log
