"""Where every outbound fetch of the creator starts (DESIGN 6).

Python fetches (content, checksums, base images, recipes given by URL) use a
session from ``session()``; OCI registries are reached by skopeo, which runs in
the environment ``tool_environment()`` gives. A guarded client (public addresses
only, checked after DNS resolution and on every redirect) replaces these two
functions, and nothing else: for skopeo, through the proxy settings of its
environment.
"""

from __future__ import annotations

import os

import requests

from workers.common.worker import VERSION

USER_AGENT = f"imager-creator/{VERSION}"
#: a checksum or recipe read as text is never bigger than this
TEXT_LIMIT = 1024 * 1024


def session() -> requests.Session:
    """A new session for one thread (requests' sessions are not thread-safe)."""
    new = requests.Session()
    new.headers["User-Agent"] = USER_AGENT
    # Transparent decompression would break Range offsets and checksums.
    new.headers["Accept-Encoding"] = "identity"
    return new


def read_text(url: str, *, timeout: tuple[float, float] = (10.0, 60.0)) -> str:
    """The text at ``url`` (a checksum file, a recipe); OSError says why not."""
    with session() as client:
        try:
            response = client.get(url, timeout=timeout, stream=True)
            response.raise_for_status()
            body = response.raw.read(TEXT_LIMIT + 1, decode_content=True)
        except requests.RequestException as exc:
            raise OSError(f"{url}: cannot download: {exc}") from exc
    if len(body) > TEXT_LIMIT:
        raise OSError(f"{url}: more than {TEXT_LIMIT} bytes: not a text to read")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(f"{url}: not UTF-8 text") from None


def tool_environment(**extra: str) -> dict[str, str]:
    """The environment of a tool that reaches the network itself (skopeo): ours,
    proxy settings included, with C messages."""
    return {**os.environ, "LC_ALL": "C", **extra}
