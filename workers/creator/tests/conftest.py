"""Fixtures with real parts: base images made with sfdisk/mtools/mke2fs, ZIM files
made with zimwriterfs, an HTTP server that honours Range requests (the demo's,
recording what it is asked and able to cut a body short), and a local OCI
registry (Debian's docker-registry) holding a small image pushed with skopeo."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from demo.catalog import ContentServer, RangeHandler, make_zim

# Shared with the demo; test modules import them from here too.
from demo.inputs import BASE_ROOTFS_SIZE, make_base_image, png_48x48, run  # noqa: F401
from demo.registry import LocalRegistry, make_oci_layout
from outbound.guard import Allowed
from workers.creator.oci import Mirror

#: the tiny image the registry fixture holds, as a recipe names it
TINY_IMAGE = "ghcr.io/offspot/tiny:1.0"
#: the servers of these tests are on loopback: their caches allow it, as an
#: operator allows a private mirror (--outbound-allow); public only otherwise
LOOPBACK = Allowed.parse("127.0.0.0/8 ::1")


@pytest.fixture(scope="session")
def base_image(tmp_path_factory) -> Path:
    """116 MiB base image with the offspot base image's partitions."""
    return make_base_image(tmp_path_factory.mktemp("base") / "base.img")


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A local registry holding a two-platform image as offspot/tiny:1.0."""
    missing = [tool for tool in ("docker-registry", "skopeo") if not shutil.which(tool)]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} missing: apt-get install {' '.join(missing)}"
        )
    folder = tmp_path_factory.mktemp("registry")
    with LocalRegistry(folder) as local:
        local.layout = make_oci_layout(folder / "layout")
        local.push(local.layout, "offspot/tiny:1.0")
        yield local


def mirrors(registry: LocalRegistry) -> dict[str, Mirror]:
    """ghcr.io sent to the local registry, as --registry-mirror does it."""
    return {"ghcr.io": Mirror(location=registry.host, insecure=True)}


@pytest.fixture(scope="session")
def zim_files(tmp_path_factory) -> list[Path]:
    """Three real ZIM files of about 300, 600 and 900 KB."""
    folder = tmp_path_factory.mktemp("zims")
    return [
        make_zim(folder, f"wiki{i}", payload_bytes=300_000 * i, seed=i)
        for i in (1, 2, 3)
    ]


@dataclass
class ServerState:
    directory: Path
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    #: path -> number of bytes after which the next GET of it is cut off
    cut_after: dict[str, int] = field(default_factory=dict)
    #: seconds to sleep per 64 KiB sent, to make downloads overlap
    delay: float = 0.0
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self, path: str) -> list[str | None]:
        """Range headers of the GET requests of `path` (None: no Range)."""
        return [rng for p, rng in self.requests if p == path]


class RecordingHandler(RangeHandler):
    """The demo's Range server, recording each GET and cutting or slowing
    bodies as the test's ``ServerState`` says."""

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.requests.append((path, self.headers.get("Range")))
            state.active += 1
            state.max_active = max(state.max_active, state.active)
            self.cut = state.cut_after.pop(path, None)
        # A real server serves "a%20b.zim" from "a b.zim".
        self.path = urllib.parse.unquote(self.path)
        try:
            super().do_GET()
        finally:
            with state.lock:
                state.active -= 1

    def send_body(self, file: Path, start: int, end: int) -> None:
        state = self.server.state
        with open(file, "rb") as handle:
            handle.seek(start)
            body = handle.read(min(end - start, self.cut or end - start))
        for offset in range(0, len(body), 65536):
            self.wfile.write(body[offset : offset + 65536])
            if state.delay:
                time.sleep(state.delay)
        self.wfile.flush()
        if self.cut is not None:
            self.close_connection = True  # the client sees a short body


@pytest.fixture
def http_server(tmp_path):
    """(base URL, state) of a Range-capable HTTP server serving tmp_path/'www'."""
    directory = (tmp_path / "www").resolve()
    directory.mkdir()
    server = ContentServer(directory, handler=RecordingHandler)
    server.server.state = ServerState(directory)
    yield server.url, server.server.state
    server.close()


def publish(state: ServerState, src: Path, name: str | None = None) -> str:
    """Copy `src` into the server's folder with a `.sha256` beside it; its path."""
    name = name or src.name
    shutil.copyfile(src, state.directory / name)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    (state.directory / f"{name}.sha256").write_text(f"{digest}  {name}\n")
    return f"/{name}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512
