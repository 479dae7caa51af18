"""Small real servers for the guard's tests: an HTTP server that answers what a
test tells it on any loopback address, and a TCP server that is not HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: answer(handler) -> (status, headers, body), or (status, reason, headers, body)
Answer = Callable[[BaseHTTPRequestHandler], tuple]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        status, *rest = self.server.answer(self)
        reason = rest.pop(0) if len(rest) == 3 else None
        headers, body = rest
        self.send_response(status, reason)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Server:
    """An HTTP server on ``host`` (127.0.0.1, 127.0.0.2, ::1…); ``requests``
    lists the paths it was asked for."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1") -> None:
        kind = _Server6 if ":" in host else ThreadingHTTPServer
        self.httpd = kind((host, 0), _Handler)
        self.httpd.answer = answer
        self.httpd.requests = []
        self.port = self.httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def hello(_request) -> tuple:
    return 200, {}, b"hello"


class Banner:
    """A TCP server on 127.0.0.1 that sends one line that is not HTTP (Redis,
    SSH…) to whoever connects, and counts them."""

    def __init__(self, line: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.line = line
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.recv(65536)
                conn.sendall(self.line)

    def close(self) -> None:
        self.sock.close()
