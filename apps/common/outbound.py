"""The site's side of the guarded client (``outbound``, DESIGN 6): the list of
what it may fetch from besides public addresses (``OUTBOUND_ALLOWED_NETWORKS``),
and the check the API makes on a URL a client gives before anything fetches it.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from outbound.guard import AddrInfo, Allowed, resolve, url_problem

#: seconds a host's addresses are remembered by ``fetch_problem``
RESOLVED_FOR = 60
_resolved: dict[tuple[str, int], tuple[float, list[AddrInfo] | OSError]] = {}
_lock = threading.Lock()


def allowed() -> Allowed:
    """The networks and hosts the site may fetch from besides public addresses."""
    return Allowed.parse(settings.OUTBOUND_ALLOWED_NETWORKS)


def _resolve(host: str, port: int) -> list[AddrInfo]:
    """``resolve``, remembered a minute: a configuration lists up to 500 files,
    most of them on one or two hosts."""
    now = time.monotonic()
    with _lock:
        found = _resolved.get((host, port))
    if found is None or now - found[0] > RESOLVED_FOR:
        try:
            answer: list[AddrInfo] | OSError = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            answer = OSError(str(exc))
        with _lock:
            if len(_resolved) > 1000:
                _resolved.clear()
            _resolved[(host, port)] = found = (now, answer)
    if isinstance(found[1], OSError):
        raise found[1]
    return found[1]


def fetch_problem(url: str) -> str | None:
    """Why a fetch of ``url`` would be refused, asked now: an address that is
    not public nor allowed, ``localhost``, or a name whose addresses are none
    of them allowed. A name that does not resolve passes: the creator checks
    every address again when it connects."""
    return url_problem(url, allowed(), resolver=_resolve, unresolved_ok=True)
