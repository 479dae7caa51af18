"""``python -m ftp``: parse the settings, start the warehouse, serve until a
signal. Exit codes: 0 stopped cleanly, 1 could not start, 2 bad settings."""

import logging
import signal
import sys
import threading

from ftp.app import StartupError, Warehouse
from ftp.config import PROG, ConfigError, load


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # pyftpdlib's own lines repeat what the audit lines say, less precisely.
    if level != "DEBUG":
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    try:
        config = load(argv)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    warehouse = Warehouse(config)
    try:
        warehouse.start()
    except StartupError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    host, port = warehouse.address
    links = f"; download links at {warehouse.http_url}" if warehouse.http_url else ""
    print(
        f"warehouse listening on {host}:{port} ({warehouse.public_url}){links}",
        flush=True,
    )
    stop.wait()
    warehouse.stop()
    return 0
