"""Picks the test database before the settings read the environment.

``IMAGER_TEST_DB`` selects the backend: ``sqlite`` (default), ``postgres`` or
``mongodb``. For ``mongodb`` a SecantusDB server (a MongoDB wire-protocol server,
DESIGN 3) is started on a free port and stopped at exit. Used by
``imager_site.test_settings``.
"""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BACKENDS = {"sqlite", "postgres", "mongodb"}
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_secantusdb() -> str:
    """Start SecantusDB on a free loopback port; return its mongodb:// URL."""
    import pymongo

    port = _free_port()
    storage = Path(tempfile.mkdtemp(prefix="secantus-"))
    server = shutil.which("secantusd-py", path=str(Path(sys.executable).parent))
    if server is None:
        sys.exit("tests: secantusd-py is missing; pip install -r requirements-dev.txt")
    log = open(storage / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    command = [server, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--storage-path", str(storage / "data"), "--log-level", "WARNING"]
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop():
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(storage, ignore_errors=True)

    atexit.register(stop)
    url = f"mongodb://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            pymongo.MongoClient(url, serverSelectionTimeoutMS=500).admin.command("ping")
            return url
        except pymongo.errors.PyMongoError:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(
                    f"tests: SecantusDB did not start; see {storage / 'server.log'}"
                )
            time.sleep(0.2)


def configure() -> None:
    backend = os.environ.get("IMAGER_TEST_DB", "sqlite")
    if backend not in BACKENDS:
        sys.exit(f"tests: IMAGER_TEST_DB={backend!r}; use one of {sorted(BACKENDS)}")
    # Tests never touch the developer's data folder or keys. The process that
    # makes the folder removes it; the servers it starts inherit it.
    if "IMAGER_DATA_DIR" not in os.environ:
        os.environ["IMAGER_DATA_DIR"] = tempfile.mkdtemp(prefix="imager-test-")
        atexit.register(shutil.rmtree, os.environ["IMAGER_DATA_DIR"], True)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    if backend == "postgres":
        os.environ.setdefault("DATABASE_URL", POSTGRES_URL)
    elif backend == "mongodb":
        if "DATABASE_URL" not in os.environ:
            os.environ["DATABASE_URL"] = start_secantusdb() + "/imager"
    else:
        # A file, never ":memory:": pytest-django hands an in-memory connection
        # to the live server's threads, and SQLite breaks when two threads use it.
        data = os.environ["IMAGER_DATA_DIR"]
        os.environ.setdefault("DATABASE_URL", f"sqlite:///{data}/imager.sqlite3")
