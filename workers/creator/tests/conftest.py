"""Fixtures with real parts: base images made with sfdisk/mtools/mke2fs, ZIM files
made with zimwriterfs, and an HTTP server that honours Range requests (the
demo's, recording what it is asked and able to cut a body short)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from demo.catalog import ContentServer, RangeHandler, make_zim

# Shared with the demo; test modules import them from here too.
from demo.inputs import make_base_image, png_48x48, run  # noqa: F401

#: work["image_bytes"] the API gives for an 8 GB and a 16 GB card
IMAGE_BYTES_8GB = 7_436_500_992
IMAGE_BYTES_16GB = 14_877_196_288


@pytest.fixture(scope="session")
def base_image(tmp_path_factory) -> Path:
    """128 MiB dos-labelled base image with boot and root partitions."""
    return make_base_image(tmp_path_factory.mktemp("base") / "base.img")


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
