"""Container health checks, standard library only (the images carry no curl or ps).

    healthcheck.py http URL          200 from URL (the web's /api/v1/health/)
    healthcheck.py ftp HOST PORT     the warehouse answers its 220 greeting
    healthcheck.py process WORD...   a process whose command line holds every WORD

Exit 0 when healthy, 1 otherwise, with one line saying why (docker inspect shows it).
"""

import os
import socket
import sys
import urllib.request
from pathlib import Path


def http(url: str) -> str | None:
    # Host: localhost (site.env.example keeps it in ALLOWED_HOSTS), so the check
    # does not depend on the public name the operator chose. The URL is the
    # Dockerfile's own http:// constant, never user input (S310).
    request = urllib.request.Request(url, headers={"Host": "localhost"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            status = response.status
    except OSError as exc:  # URLError and HTTPError (503 names the failing part)
        return f"{url}: {exc}"
    return None if status == 200 else f"{url}: HTTP {status}"


def ftp(host: str, port: str) -> str | None:
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            greeting = sock.recv(256)
    except OSError as exc:
        return f"{host}:{port}: {exc}"
    return None if greeting.startswith(b"220") else f"{host}:{port}: {greeting!r}"


def process(*words: str) -> str | None:
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # the process ended while we looked
            continue
        if all(word in command for word in words):
            return None
    return f"no process runs {' '.join(words)!r}"


CHECKS = {"http": http, "ftp": ftp, "process": process}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    problem = CHECKS[sys.argv[1]](*sys.argv[2:])
    if problem:
        print(problem)
        sys.exit(1)
    print("ok")
