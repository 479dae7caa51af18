"""A download order's files fetched as its client would: the link the API gives
the order's owner, plain HTTP from the warehouse, no account, resumed with a
``Range`` request where the first request stopped, and the image checked
against its block map's checksums.

Plain Python (urllib), like the rest of the demo: the demo and the Docker test
(docker/test/order.py) both call ``check_download``.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from demo.cards import card_verifies
from demo.chain import Chain, DemoError

CHUNK = 1 << 20


def fetch(url: str, target: Path, *, stop_after: int | None = None) -> int:
    """GET ``url`` into ``target``, resuming from the bytes it already has
    (``Range: bytes=N-``, a 206 answer expected); stop after ``stop_after``
    bytes if given, like a cut connection. Returns the bytes received."""
    have = target.stat().st_size if target.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        answer = _open(url, headers=headers)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace").strip()
        raise DemoError(f"the download link answered {exc.code}: {text}") from None
    with answer, open(target, "ab" if have else "wb") as out:
        if have and answer.status != 206:
            raise DemoError(f"a resumed download answered {answer.status}, not 206")
        received = 0
        while stop_after is None or received < stop_after:
            want = CHUNK if stop_after is None else min(CHUNK, stop_after - received)
            block = answer.read(want)
            if not block:
                break
            out.write(block)
            received += len(block)
    return received


def _open(url: str, *, method: str = "GET", headers: dict | None = None):
    if not url.startswith(("http://", "https://")):
        raise DemoError(f"a download link must be http(s): {url[:60]}")
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310
    return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - checked above


@dataclass
class Downloaded:
    order_id: str
    link: dict
    image: Path
    size: int
    seconds: float
    resumed_at: int
    verified: bool

    def lines(self) -> str:
        verdict = "verifies" if self.verified else "DOES NOT verify"
        return (
            f"download order {self.order_id[:8]}: its link (until "
            f"{self.link['expires_at']}):\n  {self.link['image_url']}\n"
            f"  {self.size:,} bytes in {self.seconds:.1f} s over HTTP, resumed at "
            f"byte {self.resumed_at:,} with a Range request; the image {verdict} "
            "against its bmap's checksums"
        )


def check_download(chain: Chain, order_id: str, folder: Path) -> Downloaded:
    """Fetch a built download order's bmap and image with the owner's link,
    the image in two requests (cut at half, then resumed), and verify it."""
    link = chain.download_link(order_id)
    folder.mkdir(parents=True, exist_ok=True)
    image, bmap = folder / "image.img", folder / "image.bmap"
    for stale in (image, bmap):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    fetch(link["bmap_url"], bmap)
    with _open(link["image_url"], method="HEAD") as head:
        size = int(head.headers["Content-Length"])
    half = fetch(link["image_url"], image, stop_after=size // 2)
    fetch(link["image_url"], image)
    seconds = time.monotonic() - started
    got = image.stat().st_size
    if got != size:
        raise DemoError(f"downloaded {got} bytes of {size} from {link['image_url']}")
    return Downloaded(
        order_id, link, image, size, seconds, half, card_verifies(image, bmap)
    )
