"""The download links' HTTP(S) server, beside the FTP server in the same process.

A client with no account downloads its order's image and ``.bmap`` with a link
the API made: ``<http url>/orders/<order>/<name>?token=<JWT>``. The token is
signed with the API's key and checked here with the JWKS the warehouse already
keeps (``ftp.auth.verify_link``): it names one order, the files it covers and
when it expires. Served: complete files at their final names, never ``.part``
files, quarantined ones or files whose report the API has not answered yet;
no symbolic link is followed (``ftp.paths``).

GET and HEAD, byte ranges (one span, or several as ``multipart/byteranges``)
with ``If-Range``, ``ETag`` and ``Last-Modified``, 304 for a matching
``If-None-Match``. Bodies go out with ``sendfile`` on plain sockets and in
1 MiB reads under TLS: memory stays flat whatever the file's size. One thread
per connection (bounded by ``--max-connections``); each GET is an audit line.
"""

import contextlib
import logging
import os
import secrets
import socket
import socketserver
import ssl
import stat
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from ftp import audit, paths, ranges
from ftp.auth import TokenRefused

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_PENDING = 60
ALLOWED = "GET, HEAD"
WHERE = "Download links look like /orders/<order id>/<file>?token=…"
ASK_AGAIN = "get a fresh link from your order's page"


class Refusal(Exception):
    """An answer other than the file: status, a plain message, extra headers."""

    def __init__(self, status: int, message: str, **headers: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Opened:
    """A file to serve, open, with its validators."""

    fd: int
    size: int
    mtime: float
    etag: str

    @classmethod
    def at(cls, real: str) -> "Opened":
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
        fd = os.open(real, flags)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise IsADirectoryError(real)
        tag = ranges.etag(st.st_ino, st.st_size, st.st_mtime_ns)
        return cls(fd, st.st_size, st.st_mtime, tag)


class DownloadHandler(BaseHTTPRequestHandler):
    """One connection; ``services`` is the Warehouse (set by ``handler_class``)."""

    services = None
    protocol_version = "HTTP/1.1"
    server_version = "imager-warehouse"
    sys_version = ""
    rate = 0  # bytes per second, 0: no limit
    _where = ""  # the virtual path asked for, once it is one
    _link = None

    # --- methods -----------------------------------------------------------------

    def do_GET(self):
        self._answer(body=True)

    def do_HEAD(self):
        self._answer(body=False)

    def _not_allowed(self):
        self._refuse(
            Refusal(405, "Only GET and HEAD are served here.", Allow=ALLOWED), True
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    # --- the answer --------------------------------------------------------------

    def _answer(self, *, body: bool) -> None:
        self._where, self._link = "", None
        try:
            location = self._allowed()
            opened = self._open(location)
        except Refusal as refusal:
            self._refuse(refusal, body)
            return
        try:
            self._serve(opened, location, body=body)
        finally:
            os.close(opened.fd)

    def _allowed(self):
        """The file asked for and the link allowing it, or a Refusal."""
        split = urlsplit(self.path)
        try:
            paths.check_text(split.path)
            location = paths.classify(paths.normalize("/", split.path))
        except paths.BadPath:
            raise Refusal(404, f"Nothing here. {WHERE}") from None
        if (
            location.path != split.path
            or location.kind is not paths.Kind.ORDER_FILE
            or location.is_part
            or not location.valid_name
        ):
            raise Refusal(404, f"Nothing here. {WHERE}")
        self._where = location.path
        token = parse_qs(split.query).get("token", [""])[-1]
        if not token:
            raise Refusal(
                403, f"This address needs the token of a download link: {ASK_AGAIN}."
            )
        try:
            link = self.services.keys.verify_link(token)
        except TokenRefused as exc:
            if exc.expired:
                raise Refusal(
                    410, f"This download link has expired: {ASK_AGAIN}."
                ) from None
            raise Refusal(403, f"This download link is not valid ({exc}).") from None
        if link.order != location.order:
            raise Refusal(403, "This download link is for another order.")
        if location.name not in link.files:
            raise Refusal(403, "This download link does not cover this file.")
        self._link = link
        return location

    def _open(self, location: paths.Location) -> Opened:
        services = self.services
        if services.spool.pending(location.api_path):
            raise Refusal(
                503,
                "This file is being verified; try again in a minute.",
                **{"Retry-After": str(RETRY_PENDING)},
            )
        root = services.storage.root
        real = paths.to_real(root, location.path)
        gone = Refusal(
            404,
            "This file is not in the warehouse (not uploaded yet, deleted, or "
            f"kept aside); {ASK_AGAIN}.",
        )
        if not paths.within(root, real):
            raise gone
        try:
            return Opened.at(real)
        except OSError:
            raise gone from None

    def _serve(self, opened: Opened, location, *, body: bool) -> None:
        get = self.headers.get
        common = {
            "ETag": opened.etag,
            "Last-Modified": ranges.http_date(opened.mtime),
            "Accept-Ranges": "bytes",
            # The address holds a token: nothing should keep a copy.
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        if ranges.not_modified(
            get("If-None-Match"), get("If-Modified-Since"), opened.etag, opened.mtime
        ):
            self._head(304, common)
            return
        spans = None
        if ranges.if_range_holds(get("If-Range"), opened.etag, opened.mtime):
            try:
                spans = ranges.parse(get("Range"), opened.size)
            except ranges.Unsatisfiable:
                self._refuse(
                    Refusal(
                        416,
                        f"The file has {opened.size} bytes; no range asked is in it.",
                        **{"Content-Range": f"bytes */{opened.size}"},
                    ),
                    body,
                )
                return
        size = opened.size
        common["Content-Disposition"] = f'attachment; filename="{location.name}"'
        common["Content-Type"] = "application/octet-stream"
        ending = b""
        if spans is None:
            parts = [(b"", ranges.Span(0, opened.size - 1))] if opened.size else []
            status = 200
        elif len(spans) == 1:
            parts, status = [(b"", spans[0])], 206
            common["Content-Range"] = spans[0].content_range(opened.size)
        else:
            boundary = secrets.token_hex(12)
            part = f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            parts = [
                (f"{part}Content-Range: {s.content_range(size)}\r\n\r\n".encode(), s)
                for s in spans
            ]
            ending = f"\r\n--{boundary}--\r\n".encode()
            status = 206
            common["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        length = sum(len(h) + s.length for h, s in parts) + len(ending)
        common["Content-Length"] = str(length)
        self._head(status, common)
        if body:
            self._stream(opened.fd, parts, ending, status, length)

    def _stream(self, fd: int, parts, ending: bytes, status: int, length: int):
        started, sent, completed = time.monotonic(), 0, False
        try:
            for header, span in parts:
                if header:
                    self.connection.sendall(header)
                    sent += len(header)
                sent += self._send_file(fd, span.start, span.length)
            if ending:
                self.connection.sendall(ending)
                sent += len(ending)
            completed = sent == length
        except (OSError, ValueError) as exc:
            log.info("a download of %s stopped: %s", self._where, exc)
        finally:
            if not completed:
                self.close_connection = True
            link = self._link
            audit.record(
                "transfer",
                proto="http",
                user="link",
                user_id=link.user_id,
                link=link.jti,
                ip=self.client_address[0],
                cmd="GET",
                path=self._where,
                status=status,
                range=self.headers.get("Range", "") if status == 206 else "",
                bytes=sent,
                seconds=time.monotonic() - started,
                completed=completed,
                tls=self.server.tls,
            )

    def _send_file(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of the file from ``offset``; the bytes sent."""
        if count <= 0:
            return 0
        if not self.server.tls and not self.rate:
            # The kernel copies from the page cache to the socket: nothing here.
            with open(fd, "rb", closefd=False) as stream:
                return self.connection.sendfile(stream, offset, count)
        buffer = bytearray(min(CHUNK, count))
        view = memoryview(buffer)
        sent, started = 0, time.monotonic()
        while sent < count:
            want = min(len(buffer), count - sent)
            got = os.preadv(fd, [view[:want]], offset + sent)
            if got <= 0:
                raise ValueError("the file ended early (it was truncated)")
            self.connection.sendall(view[:got])
            sent += got
            if self.rate:
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        return sent

    # --- the other answers -------------------------------------------------------

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _refuse(self, refusal: Refusal, body: bool) -> None:
        text = (refusal.message + "\n").encode()
        audit.record(
            "refused",
            logging.WARNING,
            proto="http",
            ip=self.client_address[0],
            cmd=self.command,
            path=self._where or urlsplit(self.path).path[:200],
            code=refusal.status,
            reason=refusal.message,
        )
        self._head(
            refusal.status,
            {
                "Content-Type": "text/plain; charset=utf-8",
                "Content-Length": str(len(text)),
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                **refusal.headers,
            },
        )
        if body:
            self.wfile.write(text)

    def send_error(self, code, message=None, explain=None):
        # Malformed requests (400, 414, 431, 501…): a plain message, no HTML.
        self._where = ""
        self.command = self.command or "?"
        reason = message or HTTPStatus(code).phrase
        with contextlib.suppress(OSError):
            self._refuse(Refusal(code, reason), self.command != "HEAD")
        self.close_connection = True

    def log_message(self, format, *args):
        # The request line holds the link's token: never logged. The audit
        # lines say what happened, without it.
        pass


class DownloadServer(socketserver.ThreadingMixIn, HTTPServer):
    """A thread per connection, at most ``max_connections`` (503 beyond); TLS
    handshakes run in the connection's thread, so a slow client never holds
    up the others. ``close_all`` also ends transfers under way."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, *, context=None, max_connections=0):
        self.context = context
        self.tls = context is not None
        self._slots = (
            threading.BoundedSemaphore(max_connections) if max_connections else None
        )
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._serving = self._closed = False
        family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
        self.address_family = family[0][0]
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer's version looks the host's name up in the DNS: not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def address(self) -> tuple[str, int]:
        return self.server_address[:2]

    def serve(self, poll_interval: float = 0.5) -> None:
        with self._lock:
            if self._closed:
                return
            self._serving = True
        self.serve_forever(poll_interval)

    def process_request(self, request, client_address):
        if self._slots is not None and not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                    b"Retry-After: 10\r\nContent-Length: 0\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            if self.context is not None:
                request.settimeout(self.RequestHandlerClass.timeout)
                try:
                    request = self.context.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.info("TLS handshake with %s failed: %s", client_address, exc)
                    self.shutdown_request(request)
                    return
            with self._lock:
                self._active.add(request)
            try:
                super().process_request_thread(request, client_address)
            finally:
                with self._lock:
                    self._active.discard(request)
        finally:
            if self._slots is not None:
                self._slots.release()

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away, a reset…
            log.info("a connection of %s ended: %s", client_address, error)
            return
        log.exception("the download server failed on a request of %s", client_address)

    def close_all(self) -> None:
        """Stop listening and end every connection (their threads then exit)."""
        with self._lock:
            serving, self._serving, self._closed = self._serving, False, True
        if serving:  # shutdown() waits for serve_forever (which may not run yet)
            self.shutdown()
        self.server_close()
        with self._lock:
            active = list(self._active)
        for sock in active:
            # The socket's own shutdown, not SSLSocket's (which would unwrap).
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def build_download_server(services) -> DownloadServer:
    config = services.config
    handler = type(
        "WarehouseDownloads",
        (DownloadHandler,),
        {
            "services": services,
            "timeout": config.idle_timeout,
            "rate": config.max_download_rate,
        },
    )
    context = tls_context(config.tls_cert, config.tls_key) if config.tls else None
    return DownloadServer(
        (config.host, config.http_port),
        handler,
        context=context,
        max_connections=config.max_connections,
    )
