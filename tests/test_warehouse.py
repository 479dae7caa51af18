"""The warehouse as a real FTP server on loopback, talking to a live API: an image
through the whole path, logins with real tokens (good, bad, expired, forged, of a
disabled account), each role's allowed and refused commands, path traversal.

The helpers here are shared by the other ``test_warehouse_*`` modules."""

import base64
import ftplib
import hashlib
import hmac
import io
import json
import os
import random
import shutil
import subprocess
import time
from contextlib import contextmanager
from uuid import uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import get_user_model

from apps.accounts.models import Role
from apps.accounts.testing import PASSWORD, make_user
from apps.accounts.tokens import RefreshToken
from apps.scheduler.models import Image
from apps.scheduler.models import Warehouse as WarehouseRow
from apps.scheduler.testing import api, configuration, order
from ftp import audit
from ftp.app import Warehouse
from ftp.config import Config

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1 << 20


# --- set-up ---------------------------------------------------------------------


def config_for(live_server, root, **options) -> Config:
    values = {
        "api_url": live_server.url,
        "username": "warehouse",
        "password": PASSWORD,
        "root": str(root),
        "name": "main",
        "port": 0,
        "http_port": 0,
        "reserve": 0,
        "heartbeat_interval": 0.5,
        "deletions_interval": 0.3,
        "account_check_interval": 0.5,
        "report_retry_max": 0.3,
        "login_failure_delay": 0.05,
        **options,
    }
    return Config(**values)


@contextmanager
def running(live_server, root, **options):
    warehouse = Warehouse(config_for(live_server, root, **options))
    warehouse.start()
    try:
        yield warehouse
    finally:
        warehouse.stop()


def token_for(user, **claims) -> str:
    token = RefreshToken.for_user(user).access_token
    for key, value in claims.items():
        token[key] = value
    return str(token)


def connect(warehouse, username, password, cls=ftplib.FTP, tls=False):
    host, port = warehouse.address
    client = cls()
    client.connect(host, port, timeout=15)
    if tls:
        client.auth()
    client.login(username, password)
    if tls:
        client.prot_p()
    return client


def login(warehouse, user, **claims) -> ftplib.FTP:
    return connect(warehouse, user.username, token_for(user, **claims))


def eventually(check, timeout=10.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def settled(warehouse):
    """Wait until the warehouse heard the API's answer to every report."""
    eventually(lambda: not warehouse.spool.all(), what="the reports to be answered")


class Build:
    """An order whose create task the creator claimed, with its image bytes."""

    def __init__(self, world, size=3 * MB, declare=True, **order_fields):
        self.world = world
        config = configuration(world.client, name=f"Kit {uuid4().hex[:8]}")
        self.order = order(world.client, config, **order_fields)
        self.creator_api = api(world.creator_account)
        claimed = self.creator_api.post(
            "/api/v1/tasks/claim/", {"worker": str(world.creator.pk)}, format="json"
        )
        assert claimed.status_code == 200, claimed.content
        self.task = claimed.json()["task"]
        assert self.task["order"] == str(self.order.pk), claimed.json()
        self.data = random.randbytes(size)
        self.bmap = b"<bmap/>\n" * 40 + os.urandom(8)
        # Image names are unique per warehouse: the order id keeps them apart.
        self.name = f"{self.order.pk}.img"
        self.bmap_name = f"{self.order.pk}.bmap"
        self.folder = f"orders/{self.order.pk}"
        self.img_path = f"{self.folder}/{self.name}"
        self.bmap_path = f"{self.folder}/{self.bmap_name}"
        if declare:
            self.declare()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def declare(self, sha256=None):
        response = self.creator_api.post(
            f"/api/v1/tasks/{self.task['id']}/image/",
            {
                "lease_id": self.task["lease_id"],
                "file_name": self.name,
                "size": len(self.data),
                "sha256": sha256 or self.sha256,
                "bmap_name": self.bmap_name,
                "bmap_size": len(self.bmap),
                "bmap_sha256": hashlib.sha256(self.bmap).hexdigest(),
            },
            format="json",
        )
        assert response.status_code == 200, response.content

    def upload(self, client: ftplib.FTP, data=None):
        client.storbinary(f"STOR {self.img_path}", io.BytesIO(data or self.data))
        client.storbinary(f"STOR {self.bmap_path}", io.BytesIO(self.bmap))

    def image(self) -> Image:
        return Image.objects.get(order=self.order)

    def wait_state(self, state, timeout=10.0) -> Image:
        return eventually(
            lambda: (image := self.image()).state == state and image,
            timeout,
            f"image state {state}",
        )


def verified_build(warehouse, world, **options) -> Build:
    build = Build(world, **options)
    with login(warehouse, world.creator_account) as creator:
        build.upload(creator)
    build.wait_state("verified")
    settled(warehouse)
    return build


def download(client: ftplib.FTP, path: str) -> bytes:
    chunks = []
    client.retrbinary(f"RETR {path}", chunks.append)
    return b"".join(chunks)


def refused(call, *args, code="550") -> str:
    """Run an ftplib call that must fail with ``code``; return the reply."""
    with pytest.raises(ftplib.Error) as error:
        call(*args)
    message = str(error.value)
    assert message.startswith(code), message
    return message


def audit_lines(caplog, event):
    return [
        audit.parse_line(r.getMessage())
        for r in caplog.records
        if r.name == "ftp.audit" and r.getMessage().startswith(f"event={event} ")
    ]


def curl(*args, check=True) -> subprocess.CompletedProcess:
    if shutil.which("curl") is None:
        pytest.skip("curl is missing: apt-get install curl")
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "60", *args],
        capture_output=True,
        timeout=90,
    )
    if check:
        assert done.returncode == 0, done.stderr.decode()
    return done


# --- a whole image through the warehouse ----------------------------------------


def test_an_uploaded_image_is_verified_then_served_to_a_downloader(
    warehouse, world, store, caplog
):
    caplog.set_level("INFO", logger="ftp.audit")
    build = Build(world)
    with login(warehouse, world.creator_account) as creator:
        build.upload(creator)
    image = build.wait_state("verified")
    settled(warehouse)
    assert image.received_sha256 == build.sha256
    assert (store / build.img_path).read_bytes() == build.data
    assert not (store / (build.img_path + ".part")).exists()
    build.order.refresh_from_db()
    assert build.order.status == "built"

    reader = make_user(Role.DOWNLOADER, "downloader-1")
    with login(warehouse, reader) as client:
        assert download(client, build.img_path) == build.data
        assert download(client, build.bmap_path) == build.bmap

    logins = audit_lines(caplog, "login")
    assert {(x["user"], x["role"], x["result"]) for x in logins} == {
        ("creator", "creator", "ok"),
        ("downloader-1", "downloader", "ok"),
    }
    transfers = audit_lines(caplog, "transfer")
    stored = [t for t in transfers if t["cmd"] == "STOR"]
    assert {t["path"] for t in stored} == {"/" + build.img_path, "/" + build.bmap_path}
    assert all(t["completed"] == "true" for t in transfers)
    sent = next(t for t in transfers if t["cmd"] == "RETR" and "img" in t["path"])
    assert (int(sent["bytes"]), sent["user"]) == (len(build.data), "downloader-1")
    assert float(sent["seconds"]) >= 0
    uploads = audit_lines(caplog, "upload")
    assert {u["sha256"] for u in uploads} == {
        build.sha256,
        hashlib.sha256(build.bmap).hexdigest(),
    }


def test_the_warehouse_reports_its_address_and_free_space(warehouse, world):
    row = WarehouseRow.objects.get(name="main")
    host, port = warehouse.address
    assert row.ftp_url == f"ftp://{host}:{port}"
    capacity, free = warehouse.storage.usage()
    assert row.capacity_bytes == capacity
    assert abs(row.free_bytes - free) < 1 << 30
    before = row.last_seen
    eventually(
        lambda: WarehouseRow.objects.get(pk=row.pk).last_seen > before,
        what="a periodic heartbeat",
    )


# --- logins ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forgeries(user) -> dict[str, str]:
    """Tokens that must all be refused, made for real (no mocked verifier)."""
    good = token_for(user)
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = settings.JWT_PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    promoted = _b64(json.dumps({**claims, "role": "admin"}).encode())
    g_head, _g_body, g_sig = good.split(".")
    return {
        "not a token": "hunter2",
        "expired": token_for(user, exp=int(time.time()) - 60),
        "signed by another key": jwt.encode(
            claims, other, algorithm="RS256", headers={"kid": kid}
        ),
        "unknown key id": jwt.encode(
            claims, other, algorithm="RS256", headers={"kid": "rogue"}
        ),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),
        "HS256 keyed with the public key": f"{head}.{body}.{_b64(mac)}",
        "role changed without re-signing": f"{g_head}.{promoted}.{g_sig}",
        "refresh token": str(RefreshToken.for_user(user)),
    }


def test_a_valid_access_token_logs_in_and_the_role_comes_from_it(warehouse, world):
    with login(warehouse, world.creator_account) as client:
        assert "creator" in client.welcome or client.lastresp == "230"
        assert client.pwd() == "/"


def test_bad_expired_forged_and_wrong_kind_tokens_get_530(warehouse, world, caplog):
    caplog.set_level("INFO", logger="ftp.audit")
    user = make_user(Role.DOWNLOADER, "reader")
    for what, token in _forgeries(user).items():
        message = refused(connect, warehouse, "reader", token, code="530")
        assert "Login refused" in message, what
    expired = refused(
        connect, warehouse, "reader", _forgeries(user)["expired"], code="530"
    )
    assert "expired" in expired
    lines = audit_lines(caplog, "login")
    assert len(lines) >= 8
    assert all(x["result"] == "refused" and x["reason"] for x in lines)


def test_a_token_of_a_client_account_is_refused(warehouse, world):
    message = refused(login, warehouse, world.client, code="530")
    assert "client has no access" in message


def test_an_unknown_key_id_makes_the_warehouse_fetch_the_keys_again(warehouse, world):
    before = warehouse.keys.fetched_at
    warehouse.keys.fetched_at -= warehouse.keys.min_interval
    forged = _forgeries(world.creator_account)["unknown key id"]
    refused(connect, warehouse, "creator", forged, code="530")
    eventually(lambda: warehouse.keys.fetched_at > before, what="a key refresh")


def test_a_disabled_account_is_closed_out_and_its_tokens_refused(warehouse, world):
    user = make_user(Role.DOWNLOADER, "reader")
    token = token_for(user)
    client = connect(warehouse, "reader", token)
    eventually(lambda: warehouse.accounts.state(str(user.pk)) == "ok")
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    def closed():
        try:
            client.voidcmd("NOOP")
        except (ftplib.Error, EOFError, OSError) as exc:
            return str(exc) or "closed"
        return False

    assert "disabled" in eventually(closed, what="the session to be closed")
    message = refused(connect, warehouse, "reader", token, code="530")
    assert "disabled" in message


def test_a_disabled_account_never_seen_before_is_closed_out_right_after_login(
    warehouse, world
):
    user = make_user(Role.CREATOR, "gone", is_active=False)
    client = connect(warehouse, "gone", token_for(user))  # accepted: no waiting
    eventually(lambda: warehouse.accounts.state(str(user.pk)) == "denied")
    with pytest.raises((ftplib.Error, EOFError, OSError)):
        for _ in range(100):
            client.voidcmd("NOOP")
            time.sleep(0.05)
    refused(login, warehouse, user, code="530")


def test_a_user_name_that_is_not_the_token_s_account_is_refused(warehouse, world):
    token = token_for(world.creator_account)
    connect(warehouse, "creator", token).quit()
    eventually(lambda: warehouse.accounts.state(str(world.creator_account.pk)) == "ok")
    message = refused(connect, warehouse, "admin", token, code="530")
    assert "user name does not match" in message


def test_curl_logs_in_with_a_token_and_is_refused_with_a_bad_one(warehouse, world):
    host, port = warehouse.address
    token = token_for(world.warehouse_account)
    listing = curl("--user", f"warehouse:{token}", f"ftp://{host}:{port}/")
    assert b"orders" in listing.stdout
    bad = curl(
        "--user", f"warehouse:{token[:-4]}AAAA", f"ftp://{host}:{port}/", check=False
    )
    assert bad.returncode == 67, bad.stderr  # curl: "login denied"


# --- roles ----------------------------------------------------------------------


def test_a_creator_uploads_only_into_orders_whose_create_task_it_holds(
    warehouse, world, store
):
    verified = verified_build(warehouse, world, size=1024)
    mine = Build(world, size=64 * 1024)
    other_order = order(world.client, configuration(world.client, name="Other"))
    (store / "orders" / str(other_order.pk)).mkdir(parents=True)
    with login(warehouse, world.creator_account) as client:
        client.mkd(mine.folder)  # its own order's folder
        mine.upload(client)
        other = f"orders/{other_order.pk}/{other_order.pk}.img"
        message = refused(client.storbinary, f"STOR {other}", io.BytesIO(b"x"))
        assert "do not hold the create task" in message
        refused(client.storbinary, f"APPE {other}", io.BytesIO(b"x"))
        refused(client.mkd, f"orders/{uuid4()}")
        refused(client.storbinary, "STOR stray.img", io.BytesIO(b"x"))
        refused(client.storbinary, f"STOR {mine.folder}/notes.txt", io.BytesIO(b"x"))
        message = refused(
            client.storbinary, f"STOR {mine.img_path}.part", io.BytesIO(b"x")
        )
        assert "final name" in message
        refused(client.delete, verified.img_path)
        refused(client.delete, mine.img_path)
        refused(client.rename, mine.img_path, f"{mine.folder}/other.img")
        refused(client.rmd, mine.folder)
        refused(download, client, verified.img_path)
        refused(client.sendcmd, "SITE CHMOD 777 " + mine.img_path, code="500")
        assert "stray.img" not in os.listdir(store)
    mine.wait_state("verified")


def test_a_creator_may_not_upload_a_name_it_did_not_declare(warehouse, world):
    build = Build(world, size=1024)
    with login(warehouse, world.creator_account) as client:
        message = refused(
            client.storbinary,
            f"STOR {build.folder}/something-else.img",
            io.BytesIO(b"x"),
            code="553",
        )
        assert f"{build.bmap_name} and {build.name}" in message


def test_a_downloader_reads_images_and_nothing_else(warehouse, world, store):
    build = verified_build(warehouse, world, size=1024)
    (store / f"{build.img_path}.part").write_bytes(b"half")
    reader = make_user(Role.DOWNLOADER, "reader")
    with login(warehouse, reader) as client:
        assert sorted(client.nlst(build.folder)) == [build.bmap_name, build.name]
        assert client.nlst("/") == ["orders"]
        client.voidcmd("TYPE I")
        assert client.size(build.img_path) == 1024
        assert download(client, build.img_path) == build.data
        message = refused(client.storbinary, f"STOR {build.img_path}", io.BytesIO(b""))
        assert "Downloaders may only" in message
        refused(client.storbinary, f"APPE {build.img_path}", io.BytesIO(b"x"))
        refused(client.delete, build.img_path)
        refused(client.rename, build.img_path, f"{build.folder}/x.img")
        refused(client.mkd, f"orders/{uuid4()}")
        refused(client.rmd, build.folder)
        refused(download, client, f"{build.img_path}.part")
        refused(client.nlst, "quarantine")
        refused(client.nlst, ".warehouse")
    assert (store / build.img_path).read_bytes() == build.data


def test_a_writer_account_reads_like_a_downloader(warehouse, world):
    build = verified_build(warehouse, world, size=2048)
    with login(warehouse, world.host_account) as client:
        assert download(client, build.img_path) == build.data
        refused(client.delete, build.img_path)


def test_the_warehouse_account_and_managers_administer(warehouse, world, store):
    build = verified_build(warehouse, world, size=1024)
    with login(warehouse, world.manager) as client:
        assert "quarantine" in client.nlst("/")
        client.mkd("orders/scratch")
        client.rename(build.bmap_path, f"{build.folder}/renamed.bmap")
        assert "renamed.bmap" in client.nlst(build.folder)
        client.delete(f"{build.folder}/renamed.bmap")
        client.rmd("orders/scratch")
        refused(client.rmd, "orders")
        refused(client.nlst, ".warehouse")
        refused(download, client, ".warehouse/spool/x.json")
        refused(client.storbinary, "STOR loose.bin", io.BytesIO(b"x"))
    assert not (store / build.bmap_path).exists()
    with login(warehouse, world.warehouse_account) as client:
        assert download(client, build.img_path) == build.data
        client.delete(build.img_path)
    assert not (store / build.img_path).exists()


# --- path traversal -------------------------------------------------------------


def test_no_path_leaves_the_storage_root(warehouse, world, store, tmp_path):
    build = verified_build(warehouse, world, size=1024)
    secret = tmp_path / "secret.img"
    secret.write_bytes(b"outside the root")
    (store / build.folder / "link.img").symlink_to(secret)
    (store / "orders" / str(uuid4())).symlink_to(tmp_path)
    # A link that stays inside the root but leads to the server's own state.
    (store / build.folder / "state.img").symlink_to(store / ".warehouse")
    linked = next(p for p in (store / "orders").iterdir() if p.is_symlink())
    reader = make_user(Role.DOWNLOADER, "reader")
    with login(warehouse, reader) as client:
        for path in (
            "../../../../../../etc/passwd",
            "/etc/passwd",
            f"/{build.folder}/../../../secret.img",
            f"{build.folder}/link.img",
            f"{build.folder}/state.img",
            f"orders/{linked.name}/secret.img",
            "/../" + str(secret).lstrip("/"),
        ):
            refused(download, client, path)
        client.cwd("../../..")
        assert client.pwd() == "/"
        refused(client.cwd, f"orders/{linked.name}")
        refused(client.cwd, f"{build.folder}/state.img")
        # A NUL byte in any command's path is refused and the session goes on.
        for command in ("CWD", "SIZE", "MDTM", "MLST", "STAT", "DELE", "MKD"):
            refused(client.sendcmd, f"{command} orders\0/x", code="501")
        assert client.sendcmd("NOOP").startswith("200")
    with login(warehouse, world.manager) as client:
        refused(download, client, f"{build.folder}/link.img")
        refused(client.nlst, f"orders/{linked.name}")
    creator_build = Build(world, size=16)
    with login(warehouse, world.creator_account) as client:
        for target in (
            f"{creator_build.folder}/../../../evil.img",
            f"{creator_build.folder}/../{linked.name}/{creator_build.name}",
        ):
            refused(client.storbinary, f"STOR {target}", io.BytesIO(b"evil"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.img", "store"]
    assert secret.read_bytes() == b"outside the root"


def test_a_token_sent_out_of_order_never_reaches_the_log(warehouse, world, caplog):
    caplog.set_level("DEBUG")
    token = token_for(world.creator_account)
    host, port = warehouse.address
    client = ftplib.FTP()  # noqa: S321 - the protocol under test
    client.connect(host, port, timeout=15)
    refused(client.sendcmd, f"PASS {token}", code="503")
    client.quit()
    assert token not in caplog.text
    assert audit_lines(caplog, "refused")[-1]["path"] == "******"
