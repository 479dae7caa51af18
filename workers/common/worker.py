"""What every worker process shares: options, logging in, registering, and the loop
that claims a task, runs it under a lease and claims the next one.

Idle workers ask for work every ``--poll`` seconds; the claim also tells the API the
worker is alive. While a task runs, the lease renewals do.
"""

import argparse
import logging
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path

from workers.common.api import ApiClient, ApiError

log = logging.getLogger(__name__)
VERSION = "0.1.0"


class UsageError(Exception):
    """A bad option: the process prints one line and exits with status 2."""


SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in a size such as 50G, 800M or 1073741824 (powers of 1024)."""
    match = SIZE.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a size; write e.g. 50G, 800M or 1073741824")
    return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))


def env_default(name: str, fallback=None):
    value = os.environ.get(name, "").strip()
    return value or fallback


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("API")
    group.add_argument(
        "--api",
        default=env_default("IMAGER_API_URL"),
        help="scheduler URL, e.g. http://127.0.0.1:8000 (IMAGER_API_URL)",
    )
    group.add_argument(
        "--username",
        default=env_default("IMAGER_USERNAME"),
        help="worker account (IMAGER_USERNAME)",
    )
    group.add_argument(
        "--password-file",
        type=Path,
        default=env_default("IMAGER_PASSWORD_FILE"),
        help="file holding the account's password (IMAGER_PASSWORD_FILE); "
        "IMAGER_PASSWORD may hold the password itself",
    )
    parser.add_argument(
        "--host",
        default=env_default("IMAGER_HOST", socket.gethostname()),
        help="this machine's name as the scheduler shows it (IMAGER_HOST)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=float(env_default("IMAGER_POLL", 5)),
        help="seconds between claims while idle (IMAGER_POLL, default 5)",
    )
    parser.add_argument(
        "--renew",
        type=float,
        default=float(env_default("IMAGER_RENEW", 30)),
        help="seconds between lease renewals while working (IMAGER_RENEW, "
        "default 30; the lease lasts LEASE_SECONDS on the scheduler)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run at most one task, then exit (for scripts and tests)",
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "bar", "log"],
        default="auto",
        help="progress bars in a terminal, log lines otherwise (default auto)",
    )
    parser.add_argument(
        "--log-level",
        default=env_default("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )


def api_client(options, kind: str) -> ApiClient:
    if not options.api:
        raise UsageError("--api (or IMAGER_API_URL) is required")
    if not options.username:
        raise UsageError("--username (or IMAGER_USERNAME) is required")
    password = os.environ.get("IMAGER_PASSWORD")
    if options.password_file:
        try:
            password = options.password_file.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise UsageError(f"cannot read --password-file: {exc}") from exc
    if not password:
        raise UsageError("give --password-file (or IMAGER_PASSWORD)")
    try:
        return ApiClient(
            options.api,
            options.username,
            password,
            user_agent=f"imager-{kind}/{VERSION}",
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


class Worker:
    """Subclasses set ``kind`` and implement ``execute(task)``."""

    kind = ""

    def __init__(self, options, api: ApiClient | None = None):
        self.options = options
        self.api = api or api_client(options, self.kind)
        self.stopping = threading.Event()
        self.worker_id: str | None = None

    def capabilities(self) -> dict:
        return {}

    def registration(self) -> dict:
        return {
            "kind": self.kind,
            "host": self.options.host,
            "version": VERSION,
            "capabilities": self.capabilities(),
        }

    def register(self) -> None:
        answer = self.api.post("api/v1/workers/register/", self.registration())
        self.worker_id = answer["id"]
        log.info(
            "registered as %s worker %s on %s",
            self.kind,
            self.worker_id,
            answer["host"],
        )

    def claim_body(self) -> dict:
        return {"worker": self.worker_id}

    def claim(self) -> dict | None:
        answer = self.api.post("api/v1/tasks/claim/", self.claim_body())
        if answer["task"] is None:
            log.debug("nothing to do: %s", answer["reason"])
        return answer["task"]

    def execute(self, task: dict) -> None:
        raise NotImplementedError

    def run(self) -> int:
        """Claim and run tasks until stopped (or one, with --once)."""
        self.register()
        while not self.stopping.is_set():
            try:
                task = self.claim()
            except ApiError as exc:
                log.warning("claim failed: %s", exc)
                task = None
            if task is None:
                self.stopping.wait(self.options.poll)
                continue
            log.info("task %s (%s) claimed", task["id"], task["kind"])
            self.execute(task)
            if self.options.once:
                return 0
        return 0

    def stop(self, *_args) -> None:
        log.info("stopping after the current step")
        self.stopping.set()


def main(worker_class, parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse options, run the worker, and turn failures into one line + status."""
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=options.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        worker = worker_class(options)
        signal.signal(signal.SIGTERM, worker.stop)
        signal.signal(signal.SIGINT, worker.stop)
        return worker.run()
    except UsageError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 3 if exc.status in {0, 401, 403} else 1
