"""The catalog's one outbound HTTP fetch.

Every request the catalog makes goes through ``fetch``, on the site's guarded
client (``outbound``, DESIGN 6): http(s) only, timeouts, a size cap, at most 5
redirects, and public addresses only unless ``OUTBOUND_ALLOWED_NETWORKS``
allows a network or a host (a LAN kiwix-serve; loopback in tests), checked on
the address each connection dials and on the peer it reaches, redirects
included.
"""

from __future__ import annotations

from apps.common.outbound import allowed
from outbound import client

#: (connect, read) seconds.
TIMEOUT = (10, 60)
USER_AGENT = "imager-service-catalog/1"


class FetchError(Exception):
    """The fetch failed; the message says why in one line."""


def fetch(url: str, *, max_bytes: int, timeout=TIMEOUT) -> bytes:
    """The body of a 200 answer to GET ``url``, at most ``max_bytes`` long."""
    with client.session(allowed(), user_agent=USER_AGENT) as session:
        try:
            return client.fetch_bytes(
                session, url, max_bytes=max_bytes, timeout=timeout
            )
        except client.OutboundError as exc:
            hint = (
                "; add its network to OUTBOUND_ALLOWED_NETWORKS to allow it"
                if exc.refused
                else ""
            )
            raise FetchError(f"{exc}{hint}") from None
