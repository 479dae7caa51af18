"""The guarded HTTP client: a requests session whose every connection is
opened here, under the rule of ``guard``.

Opening a connection resolves the host once, skips every address the rule
refuses (no packet is sent to them), dials the others in turn and checks the
peer the socket is actually connected to (``getpeername``) before a byte is
sent: a name that answers a public address to a check and a private one to
the connection (DNS rebinding) is refused, and so is ``0.0.0.0``, which
reaches this machine. Redirects are followed by requests, at most
``MAX_REDIRECTS``; each new connection they need is opened here too. Proxies
from the environment are not used (a proxy would hide the address dialled);
``REQUESTS_CA_BUNDLE`` still names the CA certificates.

Errors say what went wrong in our words, never in the server's: a status is
given with its standard phrase, not the one the server sent, and a broken
answer is not quoted (http.client quotes a bad status line, zipfile and
urllib3 quote bytes they read).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from http import HTTPStatus

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidSchema, InvalidURL
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from outbound.guard import SCHEMES, Allowed, Refused, Resolver, named, resolve

#: (connect, read) seconds
TIMEOUT = (10.0, 60.0)
MAX_REDIRECTS = 5
READ_SIZE = 64 * 1024


class OutboundError(Exception):
    """A fetch failed; the message names the URL and says why in one line.
    ``status`` is the HTTP status of a refused answer, else None; ``refused``
    says the rule refused an address."""

    def __init__(
        self, message: str, *, status: int | None = None, refused: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.refused = refused


@dataclass(frozen=True)
class Guard:
    allowed: Allowed
    resolver: Resolver = resolve


def open_socket(
    host: str,
    port: int,
    guard: Guard,
    *,
    timeout: object = None,
    source_address: tuple[str, int] | None = None,
    socket_options: list | None = None,
) -> socket.socket:
    """A TCP connection to an allowed address of ``host`` (module docstring);
    Refused when it has none, OSError when none answers."""
    host = host.strip("[]")
    trusted = guard.allowed.allows_host(host)
    refused, error = None, None
    for family, kind, proto, _name, sockaddr in guard.resolver(host, port):
        problem = None if trusted else guard.allowed.address_problem(sockaddr[0])
        if problem:
            refused = refused or problem
            continue
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            # urllib3's "default" timeout is not a number: the socket's default.
            if timeout is None or isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            peer = sock.getpeername()[0]
        except OSError as exc:
            sock.close()
            error = exc
            continue
        problem = None if trusted else guard.allowed.address_problem(peer)
        if problem:
            sock.close()
            raise Refused(named(host, problem))
        return sock
    if error is not None:
        raise error
    raise Refused(named(host, refused or "no address"))


class _GuardedConnection:
    """urllib3's connection, opening its socket with ``open_socket``."""

    guard: Guard | None = None

    def _new_conn(self) -> socket.socket:
        if self.guard is None:  # fail closed: a connection nobody guards
            raise Refused("no outbound rule was given to this connection")
        try:
            return open_socket(
                self._dns_host,
                self.port,
                self.guard,
                timeout=self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out."
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"cannot connect: {exc}") from exc


class GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _GuardedPool:
    guard: Guard | None = None

    def _new_conn(self):
        connection = super()._new_conn()
        connection.guard = self.guard
        return connection


class GuardedHTTPPool(_GuardedPool, HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSPool(_GuardedPool, HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedPoolManager(PoolManager):
    def __init__(self, guard: Guard, **kwargs) -> None:
        super().__init__(**kwargs)
        self.guard = guard
        self.pool_classes_by_scheme = {
            "http": GuardedHTTPPool,
            "https": GuardedHTTPSPool,
        }

    def _new_pool(self, scheme, host, port, request_context=None):
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.guard = self.guard
        return pool


class GuardedAdapter(HTTPAdapter):
    """requests' adapter over guarded connections; a refusal names the URL of
    the request (of the redirect, when one is refused)."""

    def __init__(self, guard: Guard, **kwargs) -> None:
        self.guard = guard
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = GuardedPoolManager(
            self.guard,
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            **pool_kwargs,
        )

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise Refused("a proxy would hide the address dialled: proxies are not used")

    def send(self, request, *args, **kwargs):
        try:
            return super().send(request, *args, **kwargs)
        except Refused as exc:
            raise Refused(exc.reason, url=request.url) from None


def session(
    allowed: Allowed,
    *,
    resolver: Resolver | None = None,
    user_agent: str | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> requests.Session:
    """A new guarded session (one per thread: sessions are not thread-safe)."""
    new = requests.Session()
    new.trust_env = False  # no proxy and no .netrc from the environment
    new.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    new.max_redirects = max_redirects
    adapter = GuardedAdapter(Guard(allowed, resolver or resolve))
    for prefix in ("http://", "https://"):
        new.mount(prefix, adapter)
    if user_agent:
        new.headers["User-Agent"] = user_agent
    return new


def status_text(code: int) -> str:
    """``HTTP 404 Not Found``: the standard phrase, not the server's."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def reason(exc: BaseException) -> str:
    """Why a request failed, in our words (never the bytes a server sent)."""
    if isinstance(exc, Refused):
        return exc.reason
    if isinstance(exc, requests.TooManyRedirects):
        found = re.search(r"\d+", str(exc))
        return f"more than {found.group() if found else MAX_REDIRECTS} redirects"
    if isinstance(exc, InvalidSchema | InvalidURL):
        return "redirected to a URL that is not http(s)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (handshake or certificate)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "timed out while connecting"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut short"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "the answer cannot be decoded"
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        if isinstance(cause, NameResolutionError):
            return "cannot resolve the host"
        if isinstance(cause, NewConnectionError):
            return "cannot connect (is the server up?)"
        if isinstance(cause, ProtocolError):
            return "the connection broke, or the answer is not HTTP"
        return "connection failed"
    return type(exc).__name__


def describe(exc: BaseException, url: str) -> str:
    """``URL: reason``, saying so when a redirect was refused."""
    if isinstance(exc, Refused) and exc.url and exc.url != url:
        return f"{url}: redirected: {exc.reason}"
    return f"{url}: {reason(exc)}"


def check_scheme(url: str) -> None:
    if not url.lower().startswith(tuple(f"{scheme}://" for scheme in SCHEMES)):
        raise OutboundError(f"{url}: only http and https URLs are fetched")


def read_limited(response: requests.Response, url: str, max_bytes: int) -> bytes:
    """The body of ``response`` (streamed), at most ``max_bytes`` long."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise OutboundError(f"{url}: {declared} bytes, more than {max_bytes} allowed")
    body = bytearray()
    try:
        for block in response.iter_content(READ_SIZE):
            body += block
            if len(body) > max_bytes:
                raise OutboundError(f"{url}: more than {max_bytes} bytes")
    except requests.RequestException as exc:
        raise OutboundError(describe(exc, url)) from None
    return bytes(body)


def fetch_bytes(
    client: requests.Session,
    url: str,
    *,
    max_bytes: int,
    timeout: tuple[float, float] = TIMEOUT,
) -> bytes:
    """The body of a 200 answer to GET ``url``, at most ``max_bytes`` long;
    OutboundError naming the URL and why not."""
    check_scheme(url)
    try:
        with client.get(url, timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                raise OutboundError(
                    f"{url}: {status_text(response.status_code)}",
                    status=response.status_code,
                )
            return read_limited(response, url, max_bytes)
    except (Refused, requests.RequestException) as exc:
        refused = isinstance(exc, Refused)
        raise OutboundError(describe(exc, url), refused=refused) from None
