"""The demo's content: real ZIM files (``zimwriterfs``), an HTTP server for
them that honours ``Range`` as the creator's resumable downloads need, and the
catalog entries an order lists."""

from __future__ import annotations

import random
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from demo.inputs import png_48x48, run
from workers.common.hashing import sha256_file


def make_zim(folder: Path, name: str, *, payload_bytes: int, seed: int) -> Path:
    """A real ZIM file with ``payload_bytes`` of incompressible data inside."""
    folder.mkdir(parents=True, exist_ok=True)
    zim = folder / f"{name}.zim"
    html = folder / f"{name}-html"
    shutil.rmtree(html, ignore_errors=True)
    html.mkdir(parents=True)
    (html / "illustration.png").write_bytes(png_48x48())
    (html / "index.html").write_text(
        f"<html><head><title>{name}</title></head>"
        f"<body><h1>{name}</h1><a href='page.html'>page</a></body></html>"
    )
    (html / "page.html").write_text("<html><body><p>Offline content.</p></body></html>")
    # Filler that does not compress, not a secret.
    blob = random.Random(seed).randbytes(payload_bytes)  # noqa: S311
    (html / "blob.bin").write_bytes(blob)
    zim.unlink(missing_ok=True)  # zimwriterfs refuses to overwrite
    try:
        run(
            "zimwriterfs", "--welcome=index.html", "--illustration=illustration.png",
            "--language=eng", f"--title={name}", "--description=demo content",
            "--creator=imager demo", "--publisher=imager demo", "--withoutFTIndex",
            str(html), str(zim),
        )  # fmt: skip
    finally:
        shutil.rmtree(html, ignore_errors=True)
    return zim


class RangeHandler(BaseHTTPRequestHandler):
    """Files of the server's ``folder`` with single-range ``Range: bytes=N-[M]``
    support, as the creator resumes content downloads. Tests subclass it to
    record requests or cut a body short (``send_body``)."""

    def log_message(self, format, *args):
        pass

    def do_GET(self) -> None:
        folder: Path = self.server.folder
        file = (folder / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if folder not in file.parents or not file.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = file.stat().st_size
        start, end = 0, size
        header = self.headers.get("Range")
        if header:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end = int(first or 0), int(last) + 1 if last else size
            if start >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            end = min(end, size)
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.send_body(file, start, end)

    def send_body(self, file: Path, start: int, end: int) -> None:
        with open(file, "rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                block = handle.read(min(left, 256 * 1024))
                if not block:
                    break
                self.wfile.write(block)
                left -= len(block)


class ContentServer:
    """A RangeHandler server on a free port of 127.0.0.1, in a thread."""

    def __init__(self, folder: Path, port: int = 0, handler=RangeHandler):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.folder = folder.resolve()
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_catalog(folder: Path, sizes=(300_000, 600_000, 900_000)) -> list[Path]:
    """Real ZIM files, made once: a second run reuses them."""
    zims = []
    for number, payload in enumerate(sizes, 1):
        zim = folder / f"wiki{number}.zim"
        if not zim.is_file():
            zim = make_zim(folder, f"wiki{number}", payload_bytes=payload, seed=number)
        zims.append(zim)
    return zims


def catalog_entries(zims: list[Path], base_url: str) -> list[dict]:
    """The catalog entries of ``zims`` served at ``base_url``, as orders list them."""
    return [
        {
            "title": zim.stem,
            "url": f"{base_url}/{zim.name}",
            "size": zim.stat().st_size,
            "sha256": sha256_file(zim),
        }
        for zim in zims
    ]
