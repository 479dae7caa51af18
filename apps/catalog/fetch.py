"""The catalog's one outbound HTTP fetch.

Every request the catalog makes goes through ``fetch``: timeouts, a size cap,
http(s) only, and public addresses only unless ``OUTBOUND_ALLOWED_NETWORKS``
allows a network (a LAN kiwix-serve; loopback in tests). Redirects are followed
by hand so that each hop is checked. A later change routes this through the
site's one guarded client (DESIGN 6), which also pins the address it checked.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings

#: (connect, read) seconds.
TIMEOUT = (10, 60)
MAX_REDIRECTS = 5
USER_AGENT = "imager-service-catalog/1"


class FetchError(Exception):
    """The fetch failed; the message says why in one line."""


def _allowed_networks() -> list:
    return [
        ipaddress.ip_network(network, strict=False)
        for network in settings.OUTBOUND_ALLOWED_NETWORKS
    ]


def check_url(url: str) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to an address that
    is not public and not in an allowed network."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise FetchError(f"{url}: only http and https URLs are fetched")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as exc:
        raise FetchError(f"{parts.hostname}: cannot resolve the host ({exc})") from None
    allowed = _allowed_networks()
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address.is_global or any(address in network for network in allowed):
            continue
        raise FetchError(
            f"{parts.hostname} is {address}, not a public address; add its network "
            "to OUTBOUND_ALLOWED_NETWORKS to allow it"
        )


def fetch(url: str, *, max_bytes: int, timeout=TIMEOUT) -> bytes:
    """The body of a 200 answer to GET ``url``, at most ``max_bytes`` long."""
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        session.trust_env = False  # no proxy or netrc from the environment
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(url)
            try:
                response = session.get(
                    url, timeout=timeout, stream=True, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise FetchError(f"{url}: {_reason(exc)}") from None
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status_code != 200:
                    raise FetchError(
                        f"{url}: HTTP {response.status_code} {response.reason}"
                    )
                return _read(response, url, max_bytes)
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _read(response: requests.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{url}: {declared} bytes, more than {max_bytes} allowed")
    body = bytearray()
    try:
        for block in response.iter_content(64 * 1024):
            body += block
            if len(body) > max_bytes:
                raise FetchError(f"{url}: more than {max_bytes} bytes")
    except requests.RequestException as exc:
        raise FetchError(f"{url}: {_reason(exc)}") from None
    return bytes(body)


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect (is the server up?)"
    return type(exc).__name__
