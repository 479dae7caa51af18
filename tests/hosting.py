"""What the writer host's tests share: a small sparse image with its bmap, a
warehouse FTP server that logs in with API tokens, and an order whose verified
image waits for a host.

The FTP server is plain pyftpdlib, as the warehouse is: the downloader speaks
FTP and cannot tell them apart. It checks each password (an access token) with
the API, as the warehouse does, and serves ``orders/<order>/<file>`` read-only.
"""

import contextlib
import hashlib
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests
from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from demo.chain import wait_for as demo_wait_for
from workers.common.bmap import create_bmap

MiB = 1024 * 1024


@dataclass
class ImageFiles:
    image: Path
    bmap: Path

    @property
    def size(self) -> int:
        return self.image.stat().st_size

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image.read_bytes()).hexdigest()

    @property
    def bmap_sha256(self) -> str:
        return hashlib.sha256(self.bmap.read_bytes()).hexdigest()


def make_image(
    folder: Path, size: int = 64 * MiB, data: int = 24 * MiB, seed: int = 1
) -> ImageFiles:
    """A sparse image: ``data`` bytes of random data in 2 MiB pieces spread over
    ``size``, first MiB included (a partition table lives there), and its bmap."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "image.img"
    rng = random.Random(seed)
    pieces = data // (2 * MiB)
    step = size // pieces
    with open(path, "wb") as out:
        out.truncate(size)
        for index in range(pieces):
            out.seek(index * step)
            out.write(rng.randbytes(2 * MiB))
    create_bmap(path, folder / "image.bmap")
    return ImageFiles(path, folder / "image.bmap")


@dataclass
class Warehouse:
    """A running FTP server; ``retrievals`` lists (file name, REST offset)."""

    url: str
    root: Path
    retrievals: list = field(default_factory=list)
    # Set to N: the next download of an .img breaks after N bytes, once.
    cut_after: int | None = None
    cuts: int = 0


def serve_orders(root: Path, api_url: str, warehouse: Warehouse | None = None):
    """Start the FTP server in a thread; returns (Warehouse, stop)."""
    base = api_url.rstrip("/")

    class TokenAuthorizer(DummyAuthorizer):
        def validate_authentication(self, username, password, handler):
            # Any user the API knows, with its own valid access token.
            try:
                answer = requests.get(
                    f"{base}/api/v1/users/me/",
                    headers={"Authorization": f"Bearer {password}"},
                    timeout=10,
                )
            except requests.RequestException as exc:
                raise AuthenticationFailed(f"API unreachable: {exc}") from exc
            if not answer.ok or answer.json().get("username") != username:
                raise AuthenticationFailed("bad token")
            if not self.has_user(username):
                self.add_user(username, "", str(root), perm="elr")

    class Breaking:
        """A file whose read fails once, part-way: a connection that broke."""

        def __init__(self, handle, limit):
            self.handle, self.limit, self.sent = handle, limit, 0

        def read(self, size=-1):
            if self.limit is not None and self.sent >= self.limit:
                self.limit = None
                state.cuts += 1
                raise ConnectionResetError("cable pulled")
            block = self.handle.read(size)
            self.sent += len(block)
            return block

        def __getattr__(self, name):
            return getattr(self.handle, name)

    class FS(AbstractedFS):
        def open(self, filename, mode):
            handle = super().open(filename, mode)
            if state.cut_after is not None and filename.endswith(".img"):
                limit, state.cut_after = state.cut_after, None
                return Breaking(handle, limit)
            return handle

    class Handler(FTPHandler):
        authorizer = TokenAuthorizer()
        abstracted_fs = FS
        use_sendfile = False  # sendfile() would bypass Breaking.read

        def ftp_RETR(self, file):
            state.retrievals.append((Path(file).name, self._restart_position))
            return super().ftp_RETR(file)

    server = ThreadedFTPServer(("127.0.0.1", 0), Handler)
    host, port = server.address
    state = warehouse or Warehouse("", root)
    state.url = f"ftp://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1})
    thread.start()

    def stop():
        server.close_all()
        thread.join(timeout=10)

    return state, stop


@contextlib.contextmanager
def warehouse(root: Path, api_url: str):
    state, stop = serve_orders(root, api_url)
    try:
        yield state
    finally:
        stop()


def publish(root: Path, order_id, files: ImageFiles) -> None:
    """Put an image where the warehouse serves it: orders/<order>/<name>."""
    folder = root / "orders" / str(order_id)
    folder.mkdir(parents=True, exist_ok=True)
    for path in (files.image, files.bmap):
        target = folder / path.name
        with open(path, "rb") as source, open(target, "wb") as out:
            while block := source.read(MiB):
                if block.count(0) == len(block):
                    out.seek(len(block), os.SEEK_CUR)  # keep it sparse
                else:
                    out.write(block)
            out.truncate(path.stat().st_size)


def verified_image(world, order, files: ImageFiles, *, ftp_url: str = "", **wrong):
    """The Image row of ``order`` as the warehouse verified it, and the download
    task the API then makes. ``wrong`` overrides declared fields (a bad sha256)."""
    from django.utils import timezone

    from apps.orders.pipeline import on_image_verified
    from apps.scheduler.models import Image, ImageState, Task, TaskKind, TaskStatus

    if ftp_url:
        world.warehouse.ftp_url = ftp_url
        world.warehouse.save(update_fields=["ftp_url"])
    values = {
        "file_name": files.image.name,
        "size": files.size,
        "sha256": files.sha256,
        "bmap_name": files.bmap.name,
        "bmap_size": files.bmap.stat().st_size,
        "bmap_sha256": files.bmap_sha256,
        **wrong,
    }
    image = Image.objects.create(
        order=order,
        warehouse=world.warehouse,
        state=ImageState.VERIFIED,
        received_size=values["size"],
        received_sha256=values["sha256"],
        bmap_received_sha256=values["bmap_sha256"],
        **values,
    )
    # As if the creator had built it: its task is over.
    Task.objects.filter(order=order, kind=TaskKind.CREATE).update(
        status=TaskStatus.SUCCEEDED, finished_at=timezone.now()
    )
    on_image_verified(image)
    return image


def downloaded_to(order, host: str, image_dir: Path, files: ImageFiles) -> list:
    """As if the host's downloader had fetched the image: the files in its image
    folder and the write tasks the API makes. Returns the write tasks."""
    from django.utils import timezone

    from apps.orders.pipeline import create_write_tasks
    from apps.scheduler.models import Task, TaskKind, TaskStatus

    folder = image_dir / str(order.pk)
    publish(image_dir, order.pk, files)
    (image_dir / "orders" / str(order.pk)).rename(folder)
    (image_dir / "orders").rmdir()
    download = Task.objects.get(order=order, kind=TaskKind.DOWNLOAD)
    Task.objects.filter(pk=download.pk).update(
        host=host, status=TaskStatus.SUCCEEDED, finished_at=timezone.now()
    )
    download.host = host
    create_write_tasks(order, download)
    return list(Task.objects.filter(order=order, kind=TaskKind.WRITE))


def wait_for(predicate, what: str, timeout: float = 60, every: float = 0.1):
    """Poll ``predicate`` until it returns something true; fail saying ``what``
    (the demo's wait, with the tests' shorter interval)."""
    return demo_wait_for(predicate, what, timeout=timeout, interval=every)
