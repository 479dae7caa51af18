#!/usr/bin/env python3
"""The whole chain on one machine: web service, background jobs, warehouse,
creator, downloader and writer on loopback, a catalog of real ZIM files served
over HTTP, one order for 2 copies. The cards are sparse 8 GB files: attached as
loop devices when it runs as root (the writer then sees block devices and their
kernel events, as with real readers), in file slots otherwise (it says so).

    .venv/bin/python scripts/demo.py [--exit] [--port 8000] [--ftp-port 2121]

``scripts/up.sh`` runs it after the set-up. Every child runs in its own process
group with its output in ``data/demo/logs/NAME.log``; Ctrl-C or SIGTERM stops
them all (SIGTERM, then SIGKILL after a grace period). A second run reuses
``data/``: accounts are kept, the catalog and base image are made once.

Plain Python (no Django import), like the workers: it talks to the API. The
end-to-end test (tests/test_end_to_end.py) drives the same ``Chain``.
Exit codes: 0 done (or stopped with Ctrl-C), 1 the chain failed, 2 bad option
or missing prerequisite (a tool to make the base image or the catalog).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.common.api import ApiClient, ApiError  # noqa: E402
from workers.common.hashing import sha256_file  # noqa: E402
from workers.common.names import (  # noqa: E402
    OrderStatus,
    Role,
    TaskKind,
    TaskStatus,
)
from workers.creator import demo as inputs  # noqa: E402
from workers.writer.flash import FlashError, verify  # noqa: E402
from workers.writer.loopdev import (  # noqa: E402
    FileSlot,
    LoopSlot,
    SlotError,
    loop_missing,
)

MIB = 1024 * 1024
CARD_BYTES = 8 * 10**9  # a nominal 8 GB card
HOST = "demo-host"
ACCOUNTS = {
    "demo": Role.CLIENT,
    "demo-manager": Role.MANAGER,
    "demo-creator": Role.CREATOR,
    "demo-warehouse": Role.WAREHOUSE,
    "demo-host": Role.WRITER,
}


class DemoError(Exception):
    """The chain cannot go on: one line saying what and where to look."""


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"==> {message}")
    sys.stdout.flush()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], object],
    what: str,
    *,
    timeout: float,
    interval: float = 0.5,
    alive: Callable[[], None] | None = None,
):
    """``check()``'s first true value; DemoError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if alive:
            alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- child processes ---------------------------------------------------------------


class Children:
    """Processes in their own process groups, so a stop reaches their children
    too (the warehouse's and rq's helpers) and a Ctrl-C in the terminal reaches
    only us: we stop them in order, not all at once by the terminal."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs = logs
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.expected_exit: set[str] = set()
        logs.mkdir(parents=True, exist_ok=True)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, *argv: str, env: dict | None = None):
        with open(self.log(name), "ab") as out:
            out.write(f"\n--- {datetime.now():%F %T} {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.expected_exit.discard(name)
        return proc

    def check(self) -> None:
        """DemoError naming a child that died on its own."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None and name not in self.expected_exit:
                raise DemoError(
                    f"the {name} process stopped (exit {code}); see {self.log(name)}"
                )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one child on purpose (fault injection); it is not an error."""
        proc = self.procs[name]
        self.expected_exit.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self, grace: float = 15) -> None:
        """Stop the children newest first, each group with SIGTERM, then SIGKILL
        after ``grace`` seconds: one at a time, so the workers still reach the
        API (and report their slots offline) before the web service goes."""
        for name, proc in reversed(list(self.procs.items())):
            self.expected_exit.add(name)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=grace)
            # The group too: a helper may outlive its parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


# -- content over HTTP ---------------------------------------------------------------


class RangeHandler(BaseHTTPRequestHandler):
    """Files of one folder with single-range ``Range: bytes=N-[M]`` support, as
    the creator resumes content downloads."""

    def log_message(self, format, *args):
        pass

    def do_GET(self) -> None:
        folder: Path = self.server.folder
        file = (folder / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if folder not in file.parents or not file.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = file.stat().st_size
        start, end = 0, size
        header = self.headers.get("Range")
        if header:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end = int(first or 0), int(last) + 1 if last else size
            if start >= size:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            end = min(end, size)
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(file, "rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                block = handle.read(min(left, 256 * 1024))
                if not block:
                    break
                self.wfile.write(block)
                left -= len(block)


class ContentServer:
    def __init__(self, folder: Path, port: int = 0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), RangeHandler)
        self.server.folder = folder.resolve()
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_catalog(folder: Path, sizes=(300_000, 600_000, 900_000)) -> list[Path]:
    """Real ZIM files, made once: a second run reuses them."""
    zims = []
    for number, payload in enumerate(sizes, 1):
        zim = folder / f"wiki{number}.zim"
        if not zim.is_file():
            zim = inputs.make_zim(
                folder, f"wiki{number}", payload_bytes=payload, seed=number
            )
        zims.append(zim)
    return zims


def catalog_entries(zims: list[Path], base_url: str) -> list[dict]:
    return [
        {
            "title": zim.stem,
            "url": f"{base_url}/{zim.name}",
            "size": zim.stat().st_size,
            "sha256": sha256_file(zim),
        }
        for zim in zims
    ]


# -- cards ---------------------------------------------------------------------------


def add_slots(slots: dict, demo: Path, names: list[str]) -> str:
    """A slot per name into ``slots`` (one at a time, so that a failure leaves
    the ones made to be closed): loop devices where the machine allows them,
    file slots otherwise. Returns one line saying which, and why."""
    missing = loop_missing()
    for name in names:
        slots[name] = LoopSlot() if missing is None else FileSlot(demo / "slots" / name)
    if missing is None:
        return "the cards are sparse files attached as loop devices"
    where = f"the cards are sparse files in {demo / 'cards'}, put in file slots"
    if os.geteuid() != 0:
        return (
            f"{where}, because this runs without root; as root they would be "
            "loop devices (block devices, seen through kernel events like a "
            "real card reader)"
        )
    return f"{where}, because loop devices need {missing}"


def blank_card(path: Path, size: int = CARD_BYTES) -> Path:
    """A new sparse card file (an empty card costs no disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def card_verifies(card: Path | str, bmap_path: Path) -> bool:
    """Every mapped range of the card has the sha256 the bmap gives it: the
    flash engine's hashing check, independent of the writer's compare."""
    try:
        verify(card, bmap_path)
    except FlashError:
        return False
    return True


# -- the chain -----------------------------------------------------------------------


class Chain:
    """Starts the processes of the chain and talks to the API as its accounts."""

    def __init__(
        self,
        data: Path,
        *,
        port: int,
        ftp_port: int,
        env: dict[str, str] | None = None,
        poll: float = 1,
        renew: float = 5,
        sweep_interval: int = 5,
    ):
        self.data = data
        self.demo = data / "demo"
        self.port, self.ftp_port = port, ftp_port
        self.url = f"http://127.0.0.1:{port}"
        self.poll, self.renew, self.sweep_interval = poll, renew, sweep_interval
        self.python = str(ROOT / ".venv" / "bin" / "python")
        if not Path(self.python).exists():
            self.python = sys.executable
        base_env = {
            # The real settings, whoever calls us (pytest sets the test ones).
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "IMAGER_DATA_DIR": str(data),
            "SITE_URL": self.url,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.children = Children(self.demo / "logs", base_env)
        self.passwords = self.demo / "passwords"
        self._clients: dict[str, ApiClient] = {}

    # set-up

    def manage(self, *args: str) -> None:
        done = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=ROOT,
            env=self.children.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise DemoError(f"manage.py {args[0]} failed: {last[0]}")

    def migrate(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")

    def password_file(self, name: str) -> Path:
        return self.passwords / name

    def accounts(self) -> None:
        """The demo accounts; existing ones and their passwords are kept."""
        self.passwords.mkdir(parents=True, exist_ok=True)
        for name, role in ACCOUNTS.items():
            file = self.password_file(name)
            if file.is_file() and file.stat().st_size:
                # Recreates the account with the known password if it is gone.
                self.manage(
                    "create_account", name, "--role", role, "--keep-existing",
                    "--password-file", str(file),
                )  # fmt: skip
            else:
                self.manage(
                    "create_account", name, "--role", role, "--update",
                    "--write-password", str(file),
                )  # fmt: skip

    def client(self, name: str) -> ApiClient:
        if name not in self._clients:
            password = self.password_file(name).read_text().splitlines()[0]
            self._clients[name] = ApiClient(self.url, name, password, retries=3)
        return self._clients[name]

    def worker_env(self, name: str) -> dict[str, str]:
        return {
            "IMAGER_API_URL": self.url,
            "IMAGER_USERNAME": name,
            "IMAGER_PASSWORD_FILE": str(self.password_file(name)),
        }

    # processes

    def start_web(self, timeout: float = 60) -> None:
        if not port_is_free(self.port):
            raise DemoError(
                f"port {self.port} is taken: stop what uses it or give --port"
            )
        self.children.start(
            "web", self.python, "manage.py", "runserver",
            f"127.0.0.1:{self.port}", "--noreload",
        )  # fmt: skip

        def healthy():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(healthy, "the web service", timeout=timeout, alive=self.children.check)

    def start_jobs(self) -> None:
        self.children.start(
            "sweeper", self.python, "manage.py", "sweep", "--loop",
            "--interval", str(self.sweep_interval),
        )  # fmt: skip
        if self.children.env.get("REDIS_URL"):
            # Without Redis the web process runs jobs itself (README).
            self.children.start("rqworker", self.python, "manage.py", "rqworker")

    def start_warehouse(self, timeout: float = 60) -> None:
        if not port_is_free(self.ftp_port):
            raise DemoError(
                f"port {self.ftp_port} is taken: stop what uses it or give --ftp-port"
            )
        log = self.children.log("warehouse")
        before = log.stat().st_size if log.exists() else 0
        self.children.start(
            "warehouse", self.python, "-m", "ftp",
            "--api-url", self.url, "--username", "demo-warehouse",
            "--password-file", str(self.password_file("demo-warehouse")),
            "--root", str(self.demo / "warehouse"), "--name", "demo",
            "--port", str(self.ftp_port), "--reserve", "0",
            "--heartbeat-interval", "5",
        )  # fmt: skip

        def listening():
            with open(log, "rb") as handle:
                handle.seek(before)
                return b"warehouse listening on" in handle.read()

        wait_for(listening, "the warehouse", timeout=timeout, alive=self.children.check)

    def start_creator(self, name: str = "creator") -> None:
        self.children.start(
            name, self.python, "-m", "workers.creator",
            "--host", f"demo-{name}",
            "--work-dir", str(self.demo / name / "work"),
            "--cache-dir", str(self.demo / "creator-cache"), "--cache-size", "2G",
            "--base-image", str(self.demo / "base.img"),
            "--poll", str(self.poll), "--renew", str(self.renew), "--progress", "log",
            env=self.worker_env("demo-creator"),
        )  # fmt: skip

    def start_downloader(self) -> None:
        self.children.start(
            "downloader", self.python, "-m", "workers.downloader",
            "--host", HOST, "--image-dir", str(self.demo / "images"),
            "--reserve", "1G", "--poll", str(self.poll), "--renew", str(self.renew),
            "--progress", "log",
            env=self.worker_env("demo-host"),
        )  # fmt: skip

    def start_writer(self, slots: dict[str, LoopSlot | FileSlot]) -> None:
        self.children.start(
            "writer", self.python, "-m", "workers.writer",
            "--host", HOST, "--image-dir", str(self.demo / "images"),
            *(f"--slot={name}={slot.device}" for name, slot in slots.items()),
            "--poll", str(self.poll), "--renew", str(self.renew), "--progress", "log",
            env=self.worker_env("demo-host"),
        )  # fmt: skip

    def make_base_image(self) -> Path:
        base = self.demo / "base.img"
        if not base.is_file():
            inputs.make_base_image(base)
        return base

    # orders

    def place_order(self, contents: list[dict], *, quantity: int, name: str) -> str:
        api = self.client("demo")
        config = api.post(
            "api/v1/configurations/",
            {
                "name": name,
                "ssid": "Kiwix Demo",
                "language": "en",
                "timezone": "UTC",
                "admin_login": "admin",
                "admin_password": "hotspot-admin",
                "contents": contents,
            },
        )
        order = api.post(
            "api/v1/orders/",
            {
                "configuration": config["id"],
                "kind": "physical",
                "card_size_gb": 8,
                "quantity": quantity,
                "recipient_name": "Demo School",
                "recipient_email": "school@example.org",
                "shipping_address": "1 Demo Street\nDemo Town",
            },
        )
        return order["id"]

    def order(self, order_id: str) -> dict:
        return self.client("demo-manager").get(f"api/v1/orders/{order_id}/")

    def tasks(self, order_id: str | None = None, **params) -> list[dict]:
        """Every task (of an order), as the manager sees them, all pages."""
        if order_id:
            params["order"] = order_id
        api = self.client("demo-manager")
        found: list[dict] = []
        while True:
            body = api.get("api/v1/tasks/", **params, limit=500, offset=len(found))
            if isinstance(body, list):
                return body
            found += body["results"]
            if not body.get("next") or not body["results"]:
                return found

    def slots(self) -> list[dict]:
        """The writer hosts' slots as the manager sees them."""
        body = self.client("demo-manager").get("api/v1/slots/", limit=500)
        return body["results"] if isinstance(body, dict) else body

    def stop(self) -> None:
        self.children.stop_all()


# -- reporting -----------------------------------------------------------------------


def seconds(task: dict) -> float | None:
    if not task.get("started_at") or not task.get("finished_at"):
        return None
    start = datetime.fromisoformat(task["started_at"])
    return (datetime.fromisoformat(task["finished_at"]) - start).total_seconds()


class Progress:
    """Prints each task's phase when it changes, and its percentage now and then."""

    def __init__(self, chain: Chain, order_id: str):
        self.chain, self.order_id = chain, order_id
        self.seen: dict[str, tuple[str, str, float]] = {}

    def show(self) -> list[dict]:
        tasks = self.chain.tasks(self.order_id)
        now = time.monotonic()
        for task in tasks:
            label = task["kind"] + (
                f" copy {task['copy_number']}" if task.get("copy_number") else ""
            )
            state = (task["status"], task["phase"] or "")
            last = self.seen.get(task["id"])
            if last is None or last[:2] != state:
                self.seen[task["id"]] = (*state, now)
                phase = f" {task['phase']}" if task["phase"] else ""
                say(f"{label}: {task['status']}{phase}")
            elif task["status"] == TaskStatus.RUNNING and now - last[2] >= 10:
                self.seen[task["id"]] = (*state, now)
                print(
                    f"    {label}: {task['phase']} {task['percent']:.0f}%", flush=True
                )
        return tasks


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in rows)])


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


# -- the demo ------------------------------------------------------------------------


def run_demo(options) -> int:
    data = Path(options.data_dir).resolve()
    chain = Chain(data, port=options.port, ftp_port=options.ftp_port)
    # What a previous demo run left in flight is of no use to this one: its
    # images are 7.4 GB each in the warehouse.
    for leftover in ("warehouse", "images", "creator", "cards", "slots"):
        shutil.rmtree(chain.demo / leftover, ignore_errors=True)
    slots: dict[str, LoopSlot | FileSlot] = {}
    servers: list[ContentServer] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        chain_once(chain, slots, servers)
        if options.exit:
            return 0
        login = chain.password_file("demo").read_text().strip()
        print(
            f"\n  The service keeps running: {chain.url}/  (login demo / {login})\n"
            f"  Logs: {chain.children.logs}   Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            chain.children.check()
            time.sleep(1)
    except (DemoError, SlotError, ApiError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except inputs.ToolError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        # A second Ctrl-C must not leave children or cards in slots behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        chain.stop()
        for slot in slots.values():
            slot.close()
        for server in servers:
            server.close()


def chain_once(
    chain: Chain,
    slots: dict[str, LoopSlot | FileSlot],
    servers: list[ContentServer],
) -> None:
    """Start everything, run one order of 2 copies, print the table."""
    phases: list[tuple[str, float]] = []
    started = time.monotonic()

    def phase_done(name: str) -> None:
        nonlocal started
        phases.append((name, time.monotonic() - started))
        started = time.monotonic()

    say("migrating the database and creating the demo accounts")
    chain.migrate()
    chain.accounts()
    phase_done("set-up")
    say(f"starting the web service on {chain.url} and the background jobs")
    chain.start_web()
    chain.start_jobs()
    say(f"starting the warehouse on ftp://127.0.0.1:{chain.ftp_port}")
    chain.start_warehouse()
    phase_done("services")
    say("making the base image and a catalog of 3 real ZIM files")
    chain.make_base_image()
    zims = make_catalog(chain.demo / "catalog")
    servers.append(ContentServer(chain.demo / "catalog"))
    entries = catalog_entries(zims, servers[0].url)
    phase_done("catalog")
    say(add_slots(slots, chain.demo, ["slot-1", "slot-2"]))
    say("starting a creator, a downloader and a writer with 2 slots")
    chain.start_creator()
    chain.start_downloader()
    chain.start_writer(slots)
    name = f"Demo {datetime.now():%Y-%m-%d %H.%M.%S}"
    order_id = chain.place_order(entries, quantity=2, name=name)
    say(f"order {order_id[:8]} placed for 2 copies on 8 GB cards")
    progress = Progress(chain, order_id)
    alive = chain.children.check

    def writes_exist():
        tasks = progress.show()
        return len([t for t in tasks if t["kind"] == TaskKind.WRITE]) == 2

    wait_for(writes_exist, "the write tasks", timeout=1800, interval=1, alive=alive)
    phase_done("build, upload, download")
    for number, (slot_name, slot) in enumerate(slots.items(), 1):
        card = blank_card(chain.demo / "cards" / f"card-{number}.img")
        slot.insert(card)
        say(f"card {number} inserted in {slot_name} ({slot.device})")

    def shipped():
        progress.show()
        status = chain.order(order_id)["status"]
        if status in {OrderStatus.FAILED, OrderStatus.CANCELED}:
            raise DemoError(f"order {order_id[:8]} {status}; see the logs")
        return status == OrderStatus.PENDING_SHIPMENT

    wait_for(shipped, "both copies", timeout=1800, interval=1, alive=alive)
    phase_done("write and verify")
    for slot in slots.values():
        slot.remove()
    print(report(chain, order_id, phases), flush=True)


def report(chain: Chain, order_id: str, phases: list[tuple[str, float]]) -> str:
    tasks = chain.tasks(order_id)
    build = next((t for t in tasks if t["kind"] == TaskKind.CREATE), {})
    fetch = next((t for t in tasks if t["kind"] == TaskKind.DOWNLOAD), {})
    bmap = chain.demo / "warehouse" / "orders" / order_id / "image.bmap"
    rows = []
    for task in sorted(
        (t for t in tasks if t["kind"] == TaskKind.WRITE),
        key=lambda t: t["copy_number"],
    ):
        result = task.get("result") or {}
        slot = result.get("slot", "?")
        number = slot.rsplit("-", 1)[-1]
        card = chain.demo / "cards" / f"card-{number}.img"
        verified = "yes" if card.exists() and card_verifies(card, bmap) else "NO"
        rows.append(
            [
                order_id[:8],
                str(task["copy_number"]),
                slot,
                f"{result.get('bytes_written', 0):,}",
                verified,
                fmt_seconds(seconds(build)),
                fmt_seconds(seconds(fetch)),
                fmt_seconds(seconds(task)),
            ]
        )
    header = ["order", "copy", "slot", "bytes written", "sha256 verified"]
    header += ["build+upload", "download", "write+verify"]
    timing = "  ".join(f"{name} {value:.1f} s" for name, value in phases)
    return f"\n{table(rows, header)}\n\nphases: {timing}\n"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo", description="Run one order through the whole chain locally."
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", 8000)),
        help="web service port (PORT, default 8000)",
    )  # fmt: skip
    parser.add_argument(
        "--ftp-port", type=int, default=2121, help="warehouse port (default 2121)"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("IMAGER_DATA_DIR", str(ROOT / "data")),
        help="data folder (IMAGER_DATA_DIR, default ./data)",
    )
    parser.add_argument(
        "--exit", action="store_true", help="stop everything after the table"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    for flag, port in (("--port", options.port), ("--ftp-port", options.ftp_port)):
        if not 1 <= port <= 65535:
            print(f"demo: error: {flag} must be 1-65535", file=sys.stderr)
            return 2
    return run_demo(options)


if __name__ == "__main__":
    sys.exit(main())
