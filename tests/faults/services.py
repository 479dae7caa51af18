"""Servers of the fault tests' own, which a test may stop and start at will:
a redis-server and a PostgreSQL cluster on free loopback ports, in temporary
folders. The shared servers on 5432 and 6379 serve the other tests (and other
checkouts): stopping those would break them, so faults are never injected there.

Plain Python, no Django: the fault tests of other modules (disk full, clock skew)
import these too. PostgreSQL refuses to run as root, so as root its commands run
as the ``postgres`` user (``runuser``), which then owns the cluster's folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

#: How long a "down" fault lasts. The issue says a minute; 35 s keeps the
#: faults suite near 5 minutes and still outlasts the workers' API client's
#: whole retry budget (1+2+4+8+16 = 31 s, workers/common/api.py): a request that
#: meets the outage gives up, and the worker's own loops must carry on (claim
#: polling, lease renewals, the final report's patience). Leases
#: (tests/faults/chain.py: 60 s) outlive it, so no task needs the sweeper.
OUTAGE_SECONDS = 35


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    return Path(found[-1]).parent if found else None


def missing() -> str | None:
    """What this machine lacks to run the servers, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server (apt-get install redis-server)"
    if postgres_bin() is None:
        return "PostgreSQL's initdb (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "a postgres user to run PostgreSQL as (root may not)"
    return None


class RedisServer:
    """A redis-server of our own. Its data lives on in an append-only file, as a
    production Redis's does, so jobs queued before a stop are there after."""

    def __init__(self, folder: Path | None = None, port: int | None = None):
        self.folder = folder or Path(tempfile.mkdtemp(prefix="faults-redis-"))
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the child's
        with log:
            self.process = subprocess.Popen(
                [
                    "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", str(self.folder), "--appendonly", "yes",
                    "--appendfsync", "always", "--save", "",
                    "--protected-mode", "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        wait_until(lambda: answers(self.port), f"redis-server on {self.port}")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresCluster:
    """A PostgreSQL cluster of our own (initdb), started and stopped with pg_ctl.

    ``fsync=off``: the tests stop it cleanly (``-m fast`` writes everything out);
    what they test is the service's side of an outage, not PostgreSQL's crash
    recovery, and fsyncs would slow every test commit on a shared disk."""

    def __init__(self, folder: Path | None = None, port: int | None = None):
        self.folder = folder or Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.port = port or free_port()
        self.data = self.folder / "data"
        self.bin = postgres_bin()
        self.user = "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *argv: str, timeout: float = 120) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )

    def init(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} -c fsync=off "
            "-c max_connections=200"
        )
        self.run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, as when the server goes down."""
        with contextlib.suppress(RuntimeError):
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
