"""Resumable FTP transfers against a real pyftpdlib server on loopback."""

import os
import subprocess
import threading

import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from workers.common.ftp import FtpError, TransferCanceled, download, upload

SIZE = 5 * 1024 * 1024 + 123


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user("worker", "token", str(root), perm="elradfmwMT")
    authorizer.add_user("reader", "token", str(root), perm="elr")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    ftpd = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=ftpd.serve_forever, kwargs={"timeout": 0.1})
    thread.start()
    host, port = ftpd.address
    yield f"ftp://{host}:{port}", root
    ftpd.close_all()
    thread.join(timeout=10)


def payload(path):
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return data


def cut_once_after(limit):
    """A progress callback that breaks the connection once, past ``limit`` bytes."""

    def progress(done, total):
        if progress.cut and progress.resumed_at is None:
            progress.resumed_at = done
        if done > limit and not progress.cut:
            progress.cut = True
            raise ConnectionResetError("cable pulled")

    progress.cut = False
    progress.resumed_at = None
    return progress


def test_an_interrupted_upload_resumes_where_the_server_stopped(server, tmp_path):
    url, root = server
    data = payload(tmp_path / "image.img")
    progress = cut_once_after(SIZE // 2)
    upload(
        url,
        "worker",
        lambda: "token",
        tmp_path / "image.img",
        "image.img",
        progress=progress,
        pause=0.01,
    )
    assert (root / "image.img").read_bytes() == data
    # The second connection started near the cut, not from zero: what the server
    # had was not sent again (it may have lost the last unflushed block).
    assert progress.resumed_at > SIZE // 2 - 2 * 1024 * 1024


def test_an_interrupted_download_resumes_from_the_local_part_file(server, tmp_path):
    url, root = server
    data = payload(root / "image.img")
    target = tmp_path / "copy.img"
    progress = cut_once_after(SIZE // 3)
    download(
        url,
        "reader",
        lambda: "token",
        "image.img",
        target,
        size=SIZE,
        progress=progress,
        pause=0.01,
    )
    assert target.read_bytes() == data
    assert not target.with_name("copy.img.part").exists()
    assert progress.cut


def test_downloads_are_sparse_where_the_image_is_empty(server, tmp_path):
    url, root = server
    data = os.urandom(1024 * 1024) + bytes(16 * 1024 * 1024) + os.urandom(1000)
    (root / "image.img").write_bytes(data)
    target = tmp_path / "copy.img"
    download(url, "reader", lambda: "token", "image.img", target)
    assert target.read_bytes() == data
    assert target.stat().st_blocks * 512 < 4 * 1024 * 1024


def test_a_refusal_is_not_retried_and_says_what_the_server_said(server, tmp_path):
    url, _root = server
    payload(tmp_path / "image.img")
    with pytest.raises(FtpError, match="refused"):
        upload(url, "reader", lambda: "token", tmp_path / "image.img", "image.img")


def test_a_wrong_password_is_a_refusal(server, tmp_path):
    url, _root = server
    with pytest.raises(FtpError, match="refused"):
        download(url, "reader", lambda: "wrong", "image.img", tmp_path / "x")


def test_cancel_stops_a_transfer(server, tmp_path):
    url, root = server
    payload(tmp_path / "image.img")
    with pytest.raises(TransferCanceled):
        upload(
            url,
            "worker",
            lambda: "token",
            tmp_path / "image.img",
            "image.img",
            cancel=lambda: True,
        )
    assert (root / "image.img").stat().st_size < SIZE


def test_an_unreachable_server_fails_after_the_retries(tmp_path):
    with pytest.raises(FtpError, match="failed 2 times"):
        download(
            "ftp://127.0.0.1:1",
            "x",
            lambda: "y",
            "a",
            tmp_path / "a",
            attempts=2,
            pause=0.01,
        )


@pytest.fixture
def tls_server(tmp_path):
    from pyftpdlib.handlers import TLS_FTPHandler

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    root = tmp_path / "root"
    root.mkdir()
    (root / "image.img").write_bytes(b"secret image")
    authorizer = DummyAuthorizer()
    authorizer.add_user("reader", "token", str(root), perm="elr")
    handler = type(
        "Handler",
        (TLS_FTPHandler,),
        {"authorizer": authorizer, "certfile": str(cert), "keyfile": str(key),
         "tls_control_required": True, "tls_data_required": True},
    )  # fmt: skip
    ftpd = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=ftpd.serve_forever, kwargs={"timeout": 0.1})
    thread.start()
    yield f"ftps://127.0.0.1:{ftpd.address[1]}", cert
    ftpd.close_all()
    thread.join(timeout=10)


def test_ftps_checks_the_warehouse_certificate(tls_server, tmp_path, monkeypatch):
    url, cert = tls_server
    monkeypatch.delenv("IMAGER_FTP_CA_FILE", raising=False)
    with pytest.raises(FtpError, match="certificate is not trusted"):
        download(url, "reader", lambda: "token", "image.img", tmp_path / "a")
    monkeypatch.setenv("IMAGER_FTP_CA_FILE", str(cert))
    download(url, "reader", lambda: "token", "image.img", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == b"secret image"
