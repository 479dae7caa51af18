"""A real Kiwix catalog for the tests: ZIM files made with ``zimwriterfs``
(Debian ``zim-tools``), listed in a library by ``kiwix-manage`` and served by
``kiwix-serve`` (Debian ``kiwix-tools``), with the files themselves and their
``.sha256`` on an HTTP server as Kiwix's mirrors publish them."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from demo.catalog import ContentServer
from demo.inputs import png_48x48, run

TOOLS = {"zimwriterfs": "zim-tools", "kiwix-manage": "kiwix-tools"}
TOOLS["kiwix-serve"] = "kiwix-tools"


def missing_tools() -> str | None:
    """Why the real catalog cannot run here, or None."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return None
    packages = " ".join(sorted({TOOLS[tool] for tool in missing}))
    return f"{', '.join(missing)} missing: apt-get install {packages}"


@dataclass(frozen=True)
class Zim:
    name: str
    flavour: str
    period: str
    title: str
    description: str
    language: str
    tags: str
    category: str

    @property
    def file_name(self) -> str:
        flavour = f"_{self.flavour}" if self.flavour else ""
        return f"{self.name}{flavour}_{self.period}.zim"


ZIMS = (
    Zim(
        name="wikipedia_fr_chemistry",
        flavour="nopic",
        period="2026-01",
        title="Wikipédia chimie",
        description="Les articles de chimie",
        language="fra",
        tags="wikipedia;_category:wikipedia;_pictures:no",
        category="wikipedia",
    ),
    Zim(
        name="ted_mul_education",
        flavour="",
        period="2026-02",
        title="TED Education",
        description="Talks about teaching and learning",
        language="eng,fra",
        tags="ted;_category:ted;_videos:yes",
        category="ted",
    ),
    Zim(
        name="gutenberg_en_all",
        flavour="",
        period="2026-03",
        title="Project Gutenberg",
        description="Free books in English",
        language="eng",
        tags="gutenberg;_category:gutenberg",
        category="gutenberg",
    ),
)


def make_zim(folder: Path, zim: Zim, seed: int) -> Path:
    """A real ZIM file with ``zim``'s metadata, and its ``.sha256`` beside it."""
    html = folder / f"{zim.name}-html"
    shutil.rmtree(html, ignore_errors=True)
    html.mkdir(parents=True)
    (html / "illustration.png").write_bytes(png_48x48())
    (html / "index.html").write_text(
        f"<html><head><title>{zim.title}</title></head><body>{seed}</body></html>"
    )
    path = folder / zim.file_name
    path.unlink(missing_ok=True)
    run(
        "zimwriterfs", "--welcome=index.html", "--illustration=illustration.png",
        f"--language={zim.language}", f"--title={zim.title}",
        f"--description={zim.description}", "--creator=imager tests",
        "--publisher=Kiwix", f"--name={zim.name}", f"--flavour={zim.flavour}",
        f"--tags={zim.tags}", "--withoutFTIndex", str(html), str(path),
    )  # fmt: skip
    shutil.rmtree(html)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / f"{zim.file_name}.sha256").write_text(f"{digest}  {zim.file_name}\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KiwixCatalog:
    """ZIM files on a download server, and a kiwix-serve whose library lists the
    ones asked for (restarted to change it, as an operator would)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = folder / "files"
        self.files.mkdir(parents=True)
        self.paths = {
            zim.name: make_zim(self.files, zim, seed) for seed, zim in enumerate(ZIMS)
        }
        self.downloads = ContentServer(self.files)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def download_url(self, zim: Zim) -> str:
        return f"{self.downloads.url}/{zim.file_name}"

    def write_library(self, zims) -> Path:
        """library.xml listing ``zims``, each with its download URL as Kiwix's
        library gives it (a ``.meta4`` metalink)."""
        library = self.folder / "library.xml"
        library.unlink(missing_ok=True)
        for zim in zims:
            run(
                "kiwix-manage", str(library), "add", str(self.paths[zim.name]),
                f"--url={self.download_url(zim)}.meta4",
            )  # fmt: skip
        if not zims:
            library.write_text('<library version="20110515"></library>\n')
        return library

    def start(self, zims=ZIMS) -> None:
        self.stop()
        library = self.write_library(zims)
        log = open(self.folder / "kiwix-serve.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["kiwix-serve", "--address", "127.0.0.1", "--port", str(self.port),
             "--library", str(library)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{self.url}/catalog/v2/entries?count=1", timeout=2)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"kiwix-serve did not start; see {self.folder}/kiwix-serve.log"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        self.downloads.close()
