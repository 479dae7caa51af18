"""Where every outbound fetch of the creator starts (DESIGN 6).

Python fetches (content, checksums, base images, recipes given by URL) use a
session of the guarded client (``outbound.client``) from ``session()``: public
addresses only unless the operator's list (``--outbound-allow``) allows a
network or a host, checked on every address dialled, on the peer reached and
on every redirect. OCI registries are reached by skopeo, which resolves,
connects and follows redirects itself: ``check_registry`` checks the registry
(or its mirror) with the same rule before skopeo runs, and skopeo runs in the
environment ``tool_environment()`` gives.
"""

from __future__ import annotations

import os
import urllib.parse

import requests

from outbound import client
from outbound.guard import Allowed, Refused, host_problem
from workers.common.worker import VERSION

USER_AGENT = f"imager-creator/{VERSION}"
#: a checksum or recipe read as text is never bigger than this
TEXT_LIMIT = 1024 * 1024
#: where skopeo pulls Docker Hub's images from
DOCKER_HUB = "registry-1.docker.io"


def session(allowed: Allowed) -> requests.Session:
    """A new guarded session for one thread (requests' sessions are not
    thread-safe)."""
    new = client.session(allowed, user_agent=USER_AGENT)
    # Transparent decompression would break Range offsets and checksums.
    new.headers["Accept-Encoding"] = "identity"
    return new


def read_text(
    url: str, allowed: Allowed, *, timeout: tuple[float, float] = (10.0, 60.0)
) -> str:
    """The text at ``url`` (a checksum file, a recipe); OSError says why not."""
    with session(allowed) as fresh:
        try:
            body = client.fetch_bytes(fresh, url, max_bytes=TEXT_LIMIT, timeout=timeout)
        except client.OutboundError as exc:
            raise OSError(str(exc)) from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(f"{url}: not UTF-8 text") from None


def registry_host(location: str) -> tuple[str, int]:
    """(host, port) skopeo dials for a registry or mirror ``host[:port][/path]``."""
    if location in ("docker.io", "index.docker.io"):
        location = DOCKER_HUB
    parts = urllib.parse.urlsplit(f"//{location}")
    return parts.hostname or location, parts.port or 443


def check_registry(location: str, allowed: Allowed) -> None:
    """Refused unless the registry (or mirror) at ``location`` is allowed now.

    Its name is resolved here, and skopeo resolves it again: a name that
    changes its answer in between, and the redirects skopeo follows (to blob
    storage), are not checked (README, Outbound requests). A name that does not
    resolve is left to skopeo, which says so. Every address of a name must be
    allowed: skopeo dials whichever it likes."""
    host, port = registry_host(location)
    problem = host_problem(host, port, allowed, unresolved_ok=True, every=True)
    if problem:
        raise Refused(f"registry {location}: {problem}")


def tool_environment(**extra: str) -> dict[str, str]:
    """The environment of a tool that reaches the network itself (skopeo): ours,
    proxy settings included, with C messages."""
    return {**os.environ, "LC_ALL": "C", **extra}
