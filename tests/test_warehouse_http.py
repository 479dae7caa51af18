"""Download links served by the warehouse over HTTP(S), against a live API: the
link the API makes for a download order's owner downloads the image and its
bmap with curl (resumed, in ranges), with no FTP account; links of other orders,
expired, tampered or forged ones are refused; .part, pending, quarantined and
linked files are never served; memory stays flat on a large sparse file."""

import base64
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
from datetime import timedelta
from uuid import uuid4

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.utils import timezone

from apps.accounts.tokens import sign
from apps.orders.links import download_link
from apps.orders.models import Order
from apps.scheduler.models import Warehouse as WarehouseRow
from apps.scheduler.testing import api, configuration, image, order
from tests.test_warehouse import (
    MB,
    Build,
    audit_lines,
    curl,
    eventually,
    login,
    refused,
    running,
    settled,
    token_for,
    verified_build,
)

pytestmark = pytest.mark.django_db(transaction=True)

DOWNLOAD = {
    "kind": "download",
    "recipient_name": "",
    "shipping_address": "",
}


def download_build(warehouse, world, **options) -> Build:
    build = verified_build(warehouse, world, **options, **DOWNLOAD)
    eventually(lambda: _status(build.order) == "built", what="the order built")
    return build


def _status(order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def link_of(world, order) -> dict:
    answer = api(world.client).get(f"/api/v1/orders/{order.pk}/download/")
    assert answer.status_code == 200, answer.content
    return answer.json()


def token_of(url: str) -> str:
    return url.split("?token=", 1)[1]


def base_of(warehouse) -> str:
    host, port = warehouse.http_address
    return f"http://{host}:{port}"


def headers_of(text: str) -> dict[str, str]:
    """The last answer's headers from curl -D (lower-case names)."""
    block = text.strip().split("\r\n\r\n")[-1]
    lines = block.splitlines()
    found = {"status": lines[0].split()[1]}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return found


def minted(order_id: str, files: list[str], **claims) -> str:
    """A link's token signed with the API's key, as links.py makes them, for
    files the API would not sign (an unverified upload, a .part, a link)."""
    now = int(time.time())
    return sign(
        {
            "token_type": "download",
            "aud": "imager-download",
            "order": order_id,
            "files": files,
            "user_id": str(uuid4()),
            "iat": now,
            "exp": now + 600,
            "jti": uuid4().hex,
            **claims,
        }
    )


def get(url: str, **headers) -> requests.Response:
    return requests.get(url, headers=headers, timeout=30)


def raw_get(warehouse, target: str) -> tuple[int, str]:
    """GET ``target`` exactly as written (requests would remove ``..``)."""
    conn = http.client.HTTPConnection(*warehouse.http_address, timeout=10)
    try:
        conn.request("GET", target)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


# --- the download -----------------------------------------------------------------


def test_a_download_order_s_image_and_bmap_download_and_resume_with_curl(
    warehouse, world, tmp_path, caplog
):
    caplog.set_level("INFO", logger="ftp.audit")
    build = download_build(warehouse, world, size=3 * MB)
    link = link_of(world, build.order)
    assert link["image_url"].startswith(f"{base_of(warehouse)}/{build.img_path}?token=")
    assert link["bmap_url"].startswith(f"{base_of(warehouse)}/{build.bmap_path}?token=")

    fetched = tmp_path / "fetched.img"
    head = curl("-D", "-", "-o", str(fetched), link["image_url"]).stdout.decode()
    assert fetched.read_bytes() == build.data
    answer = headers_of(head)
    assert answer["status"] == "200"
    assert answer["content-length"] == str(len(build.data))
    assert answer["content-disposition"] == f'attachment; filename="{build.name}"'
    assert answer["accept-ranges"] == "bytes"
    assert "no-store" in answer["cache-control"]
    bmap = tmp_path / "fetched.bmap"
    curl("-o", str(bmap), link["bmap_url"])
    assert bmap.read_bytes() == build.bmap

    # A download cut short, resumed by curl from where the file ends (Range).
    cut = 1_234_567
    partial = tmp_path / "partial.img"
    partial.write_bytes(build.data[:cut])
    head = curl("-C", "-", "-D", "-", "-o", str(partial), link["image_url"])
    assert partial.read_bytes() == build.data
    answer = headers_of(head.stdout.decode())
    assert answer["status"] == "206"
    assert answer["content-range"] == f"bytes {cut}-{len(build.data) - 1}/3145728"

    # One range, and HEAD tells the size without a body.
    piece = curl("-r", "100-199", link["image_url"]).stdout
    assert piece == build.data[100:200]
    head = curl("-I", link["image_url"]).stdout.decode()
    assert headers_of(head)["content-length"] == str(len(build.data))

    # The audit log: every GET, with who asked for the link, never the token.
    sent = [t for t in audit_lines(caplog, "transfer") if t.get("proto") == "http"]
    assert [(t["status"], t["completed"]) for t in sent] == [
        ("200", "true"),
        ("200", "true"),
        ("206", "true"),
        ("206", "true"),
    ]
    assert int(sent[0]["bytes"]) == len(build.data)
    assert sent[2]["range"] == f"bytes={cut}-"
    assert int(sent[2]["bytes"]) == len(build.data) - cut
    assert {t["user_id"] for t in sent} == {str(world.client.pk)}
    assert token_of(link["image_url"]) not in caplog.text


def test_ranges_validators_and_conditional_requests(warehouse, world):
    build = download_build(warehouse, world, size=MB)
    url = link_of(world, build.order)["image_url"]
    whole = get(url)
    tag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]

    # Several ranges: one multipart/byteranges answer.
    answer = get(url, Range="bytes=0-9,100-109,-5")
    assert answer.status_code == 206
    kind = answer.headers["Content-Type"]
    boundary = re.fullmatch(r"multipart/byteranges; boundary=(\w+)", kind)[1]
    assert len(answer.content) == int(answer.headers["Content-Length"])
    parts = answer.content.split(f"--{boundary}".encode())[1:-1]
    bodies = [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts]
    assert bodies == [build.data[0:10], build.data[100:110], build.data[-5:]]
    assert b"Content-Range: bytes 100-109/1048576" in parts[1]

    # If-Range: the ranges apply to this very file only.
    assert get(url, Range="bytes=0-9", **{"If-Range": tag}).status_code == 206
    assert get(url, Range="bytes=0-9", **{"If-Range": modified}).status_code == 206
    other = get(url, Range="bytes=0-9", **{"If-Range": '"another-file"'})
    assert (other.status_code, other.content) == (200, build.data)
    assert get(url, **{"If-None-Match": tag}).status_code == 304
    beyond = get(url, Range=f"bytes={MB}-")
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{MB}"
    posted = requests.post(url, timeout=10)
    assert (posted.status_code, posted.headers["Allow"]) == (405, "GET, HEAD")


def test_a_link_works_without_any_ftp_account(warehouse, world, tmp_path):
    build = download_build(warehouse, world, size=512 * 1024)
    # The client's own access token opens no FTP session...
    assert "no access" in refused(login, warehouse, world.client, code="530")
    # ...and the link needs no token but its own: no account, no header.
    fetched = tmp_path / "mine.img"
    curl("-o", str(fetched), link_of(world, build.order)["image_url"])
    assert fetched.read_bytes() == build.data


# --- what is refused --------------------------------------------------------------


def test_links_of_another_order_or_file_are_refused(warehouse, world, store):
    mine = download_build(warehouse, world, size=4096)
    theirs = download_build(warehouse, world, size=4096)
    token = token_of(link_of(world, mine.order)["image_url"])
    base = base_of(warehouse)
    answer = get(f"{base}/{theirs.img_path}?token={token}")
    assert answer.status_code == 403
    assert "another order" in answer.text
    assert get(f"{base}/{mine.img_path}?token={token}").content == mine.data
    (store / mine.folder / "other.img").write_bytes(b"not covered")
    answer = get(f"{base}/{mine.folder}/other.img?token={token}")
    assert (answer.status_code, "does not cover" in answer.text) == (403, True)
    answer = get(f"{base}/{mine.img_path}")
    assert (answer.status_code, "needs the token" in answer.text) == (403, True)
    for path in (
        f"/{mine.folder}/../{theirs.folder}/{theirs.name}",
        f"/{mine.folder}//{mine.name}",
        "/.warehouse/spool",
        "/etc/passwd",
        f"/{mine.img_path}%00",
    ):
        status, text = raw_get(warehouse, f"{path}?token={token}")
        assert status == 404, path
        assert "Download links look like" in text


def test_an_expired_link_gets_410(warehouse, world):
    build = download_build(warehouse, world, size=4096)
    made = download_link(
        Order.objects.get(pk=build.order.pk),
        user=world.client,
        now=timezone.now() - timedelta(hours=settings.DOWNLOAD_LINK_HOURS, minutes=5),
    )
    answer = get(made.image_url)
    assert answer.status_code == 410
    assert "expired" in answer.text
    assert "fresh link" in answer.text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_and_forged_links_are_refused(warehouse, world, caplog):
    caplog.set_level("INFO", logger="ftp.audit")
    mine = download_build(warehouse, world, size=4096)
    theirs = download_build(warehouse, world, size=4096)
    good = token_of(link_of(world, mine.order)["image_url"])
    head, body, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    retargeted = _b64(json.dumps({**claims, "order": str(theirs.order.pk)}).encode())
    kid = jwt.get_unverified_header(good)["kid"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forgeries = {
        "order changed without re-signing": f"{head}.{retargeted}.{signature}",
        "signed by another key": jwt.encode(
            {**claims, "order": str(theirs.order.pk)},
            other,
            algorithm="RS256",
            headers={"kid": kid},
        ),
        "alg none": jwt.encode(
            {**claims, "order": str(theirs.order.pk)},
            None,
            algorithm="none",
            headers={"kid": kid},
        ),
        "an access token": token_for(world.manager),
        "truncated": good[:-10],
    }
    for what, token in forgeries.items():
        answer = get(f"{base_of(warehouse)}/{theirs.img_path}?token={token}")
        assert answer.status_code == 403, what
        assert "not valid" in answer.text, what
    refusals = [r for r in audit_lines(caplog, "refused") if r.get("proto") == "http"]
    assert len(refusals) == len(forgeries)
    assert all(r["code"] == "403" for r in refusals)
    assert all(token not in caplog.text for token in forgeries.values())


def test_part_pending_quarantined_and_linked_files_are_never_served(
    warehouse, world, store, tmp_path
):
    base = base_of(warehouse)
    # An upload not complete: only its .part exists.
    build = Build(world, size=4096, **DOWNLOAD)
    (store / build.folder).mkdir(parents=True)
    (store / f"{build.img_path}.part").write_bytes(build.data[:100])
    token = minted(str(build.order.pk), [build.name])
    assert get(f"{base}/{build.img_path}?token={token}").status_code == 404
    assert get(f"{base}/{build.img_path}.part?token={token}").status_code == 404
    # A link never names a .part (the API signs final names only).
    part = minted(str(build.order.pk), [f"{build.name}.part"])
    assert get(f"{base}/{build.img_path}.part?token={part}").status_code == 404

    # Complete but waiting for the API's verdict (declared after the upload).
    waiting = Build(world, size=4096, declare=False, **DOWNLOAD)
    with login(warehouse, world.creator_account) as creator:
        waiting.upload(creator)
    eventually(lambda: warehouse.spool.pending(waiting.img_path), what="the report")
    token = minted(str(waiting.order.pk), [waiting.name])
    answer = get(f"{base}/{waiting.img_path}?token={token}")
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "60")
    assert "being verified" in answer.text
    waiting.declare()
    settled(warehouse)
    assert get(f"{base}/{waiting.img_path}?token={token}").content == waiting.data

    # Rejected by the API: moved to quarantine/, gone from orders/.
    bad = Build(world, size=4096, **DOWNLOAD)
    with login(warehouse, world.creator_account) as creator:
        bad.upload(creator, data=bytes(4096))
    bad.wait_state("rejected")
    settled(warehouse)
    token = minted(str(bad.order.pk), [bad.name])
    assert get(f"{base}/{bad.img_path}?token={token}").status_code == 404
    kept = next((store / "quarantine" / str(bad.order.pk)).iterdir())
    quarantined = f"{base}/quarantine/{bad.order.pk}/{kept.name}?token={token}"
    assert get(quarantined).status_code == 404

    # A symbolic link in an order's folder leads nowhere.
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"outside the root")
    (store / build.folder / "link.img").symlink_to(secret)
    token = minted(str(build.order.pk), ["link.img"])
    assert get(f"{base}/{build.folder}/link.img?token={token}").status_code == 404


# --- size and memory ------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def peak_growth(call):
    """What ``call()`` returns, and how much this process's RSS grew meanwhile
    at most (sampled every 20 ms): the warehouse runs in this process."""
    before = _rss()
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        return call(), peak[0] - before
    finally:
        done.set()
        watcher.join()


def stored_download_order(world, store, data: bytes | int):
    """A built download order whose verified image is put in the store as is:
    ``data``, or a sparse file of that many bytes (with "middle" in its middle)."""
    row = WarehouseRow.objects.get(name="main")
    placed = order(
        world.client,
        configuration(world.client, name=f"Big {uuid4().hex[:8]}"),
        **DOWNLOAD,
    )
    size = data if isinstance(data, int) else len(data)
    big = image(placed, row, file_name="big.img", size=size, bmap_name="big.bmap")
    Order.objects.filter(pk=placed.pk).update(status="built", image=big)
    folder = store / "orders" / str(placed.pk)
    folder.mkdir(parents=True)
    with open(folder / "big.img", "wb") as stream:
        if isinstance(data, int):
            stream.truncate(size)
            stream.seek(size // 2)
            stream.write(b"middle")
        else:
            stream.write(data)
    (folder / "big.bmap").write_bytes(b"<bmap/>")
    return placed


def test_memory_stays_flat_while_a_large_sparse_file_is_served(
    warehouse, world, store, caplog
):
    caplog.set_level("INFO", logger="ftp.audit")
    size = 2 << 30
    placed = stored_download_order(world, store, size)
    url = link_of(world, placed)["image_url"]

    # A client that goes away after a megabyte: the transfer is logged unfinished.
    host, port = warehouse.http_address
    path = url.split(str(port), 1)[1]
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        received = 0
        while received < MB:
            received += len(conn.recv(65536))
    cut = eventually(
        lambda: [
            t
            for t in audit_lines(caplog, "transfer")
            if t.get("proto") == "http" and t["completed"] == "false"
        ],
        what="the cut transfer's line",
    )
    assert int(cut[0]["bytes"]) < size

    out, grown = peak_growth(
        lambda: curl("-o", "/dev/null", "-w", "%{size_download} %{http_code}", url)
    )
    assert out.stdout.decode().split() == [str(size), "200"]
    assert grown < 64 * MB, f"the warehouse grew by {grown / MB:.0f} MiB"
    middle = get(url, Range=f"bytes={size // 2}-{size // 2 + 5}")
    assert (middle.status_code, middle.content) == (206, b"middle")


def test_https_with_the_ftps_certificate(live_server, world, store, certificate):
    cert, key = certificate
    with running(live_server, store, tls_cert=cert, tls_key=key) as warehouse:
        host, port = warehouse.http_address
        row = WarehouseRow.objects.get(name="main")
        assert row.download_url == f"https://{host}:{port}"
        data = os.urandom(3 * MB)
        placed = stored_download_order(world, store, data)
        url = link_of(world, placed)["image_url"]
        assert url.startswith(f"https://{host}:{port}/")
        assert curl("--cacert", cert, url).stdout == data
        assert curl("--cacert", cert, "-r", "10-19", url).stdout == data[10:20]
        # Read in 1 MiB pieces under TLS (no sendfile): memory flat too.
        sparse = link_of(world, stored_download_order(world, store, 512 * MB))
        out, grown = peak_growth(
            lambda: curl(
                "--cacert",
                cert,
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                sparse["image_url"],
            )
        )
        assert (out.stdout, grown < 64 * MB) == (str(512 * MB).encode(), True), grown
        plain = curl("-o", "/dev/null", url.replace("https:", "http:"), check=False)
        assert plain.returncode != 0
        context = ssl.create_default_context(cafile=cert)
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as secure,
        ):
            assert secure.version() in {"TLSv1.2", "TLSv1.3"}


def test_the_warehouse_announces_its_download_address(live_server, world, store):
    with running(live_server, store) as warehouse:
        host, port = warehouse.http_address
        row = WarehouseRow.objects.get(name="main")
        assert row.download_url == f"http://{host}:{port}"
    public = "https://downloads.example.org/warehouse"
    with running(live_server, store, http_url=public) as warehouse:
        assert WarehouseRow.objects.get(name="main").download_url == public
        build = download_build(warehouse, world, size=1024)
        link = link_of(world, build.order)
        assert link["image_url"].startswith(f"{public}/{build.img_path}?token=")
    with running(live_server, store, http_port=None) as warehouse:
        assert warehouse.http_address is None
        assert WarehouseRow.objects.get(name="main").download_url == ""
        answer = api(world.client).get(f"/api/v1/orders/{build.order.pk}/download/")
        assert (answer.status_code, answer.json()["code"]) == (
            409,
            "no_download_server",
        )
