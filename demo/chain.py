"""The whole chain as child processes on one machine: web service, background
jobs, warehouse, creator, downloader and writer on loopback, driven through the
API as the demo's accounts. ``scripts/demo.py`` (the README's first command)
and the end-to-end test (tests/test_end_to_end.py) both run a ``Chain``.

Plain Python (no Django import), like the workers: it talks to the API, and
runs ``manage.py`` for what only the site itself does (migrations, accounts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import yaml

from demo import inputs
from demo.cards import FileCardSlot, LoopCardSlot
from demo.registry import LocalRegistry, make_oci_layout
from workers.common.api import ApiClient
from workers.common.names import Role

ROOT = Path(__file__).resolve().parents[1]
HOST = "demo-host"
#: where the demo serves content and images: allowed to the API and the creator
LOOPBACK = "127.0.0.0/8"
ACCOUNTS = {
    "demo": Role.CLIENT,
    "demo-manager": Role.MANAGER,
    "demo-creator": Role.CREATOR,
    "demo-warehouse": Role.WAREHOUSE,
    "demo-host": Role.WRITER,
}


class DemoError(Exception):
    """The chain cannot go on: one line saying what and where to look."""


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


class Chain:
    """Starts the processes of the chain and talks to the API as its accounts."""

    def __init__(
        self,
        data: Path,
        *,
        port: int,
        ftp_port: int,
        http_port: int | None = None,
        env: dict[str, str] | None = None,
        poll: float = 1,
        renew: float = 5,
        sweep_interval: int = 5,
    ):
        self.data = data
        self.demo = data / "demo"
        self.port, self.ftp_port = port, ftp_port
        # The warehouse's download links (HTTP); a fixed port, so that a
        # restarted warehouse keeps the address the API gave out.
        self.http_port = http_port or free_port()
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
            # Orders' YAML names the demo's small base image, which the creator on
            # this machine reads, instead of Kiwix's download. Its root size is
            # what precedes the content: the whole base image is the safe bound.
            "HOTSPOT_BASE_SOURCE": (self.demo / "base.img").resolve().as_uri(),
            "HOTSPOT_BASE_ROOTFS_SIZE": str(inputs.BASE_SIZE),
            # The demo's content and registry are on loopback: the API accepts
            # URLs there, as an operator allows a LAN mirror (README, Outbound
            # requests); the creator is told the same (start_creator).
            "OUTBOUND_ALLOWED_NETWORKS": LOOPBACK,
            **(env or {}),
        }
        self.children = Children(self.demo / "logs", base_env)
        self.passwords = self.demo / "passwords"
        self._clients: dict[str, ApiClient] = {}
        self.registry: LocalRegistry | None = None

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
        for port, flag in (
            (self.ftp_port, "--ftp-port"),
            (self.http_port, "--http-port"),
        ):
            if not port_is_free(port):
                raise DemoError(
                    f"port {port} is taken: stop what uses it or give {flag}"
                )
        log = self.children.log("warehouse")
        before = log.stat().st_size if log.exists() else 0
        self.children.start(
            "warehouse", self.python, "-m", "ftp",
            "--api-url", self.url, "--username", "demo-warehouse",
            "--password-file", str(self.password_file("demo-warehouse")),
            "--root", str(self.demo / "warehouse"), "--name", "demo",
            "--port", str(self.ftp_port), "--http-port", str(self.http_port),
            "--reserve", "0",
            "--heartbeat-interval", "5",
        )  # fmt: skip

        def listening():
            with open(log, "rb") as handle:
                handle.seek(before)
                return b"warehouse listening on" in handle.read()

        wait_for(listening, "the warehouse", timeout=timeout, alive=self.children.check)

    def start_registry(self, port: int | None = None) -> LocalRegistry:
        """A local OCI registry standing in for ghcr.io: the hotspot's services
        (dashboard, kiwix-serve…) are OCI images Kiwix publishes there, and this
        machine cannot reach it. Every image a recipe names becomes one small
        image of ours (``place_order``), pulled through the creator's mirror."""
        self.registry = LocalRegistry(self.demo / "registry", port=port)
        self.registry.start()
        self.layout = self.demo / "registry-image"
        if not (self.layout / "index.json").is_file():
            make_oci_layout(self.layout)
        return self.registry

    def start_creator(self, name: str = "creator") -> None:
        mirror = (
            ("--registry-mirror", f"ghcr.io={self.registry.url}")
            if self.registry
            else ()
        )
        self.children.start(
            name, self.python, "-m", "workers.creator",
            "--host", f"demo-{name}",
            "--work-dir", str(self.demo / name / "work"),
            "--cache-dir", str(self.demo / "creator-cache"), "--cache-size", "2G",
            "--poll", str(self.poll), "--renew", str(self.renew), "--progress", "log",
            "--outbound-allow", LOOPBACK,
            *mirror,
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

    def start_writer(self, slots: dict[str, LoopCardSlot | FileCardSlot]) -> None:
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

    def place_order(
        self, contents: list[dict], *, quantity: int, name: str, kind="physical"
    ) -> str:
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
        self.stand_in_for(api.get(f"api/v1/configurations/{config['id']}/recipe/"))
        order = api.post(
            "api/v1/orders/",
            {
                "configuration": config["id"],
                "kind": kind,
                "card_size_gb": 8,
                "quantity": quantity,
                "recipient_name": "Demo School",
                "recipient_email": "school@example.org",
                "shipping_address": "1 Demo Street\nDemo Town",
            },
        )
        return order["id"]

    def stand_in_for(self, preview: dict) -> None:
        """Push our small image under every name the recipe's ``oci_images``
        give, so the creator finds them in the local registry."""
        idents = [i["ident"] for i in yaml.safe_load(preview["recipe"])["oci_images"]]
        if not idents:
            return
        if self.registry is None:
            raise DemoError(
                f"the hotspot's recipe names {len(idents)} OCI images on ghcr.io, "
                "which this machine cannot reach: start_registry() first (it needs "
                "docker-registry and skopeo: apt-get install docker-registry skopeo)"
            )
        self.registry.stand_in_for(idents, self.layout)

    def order(self, order_id: str) -> dict:
        return self.client("demo-manager").get(f"api/v1/orders/{order_id}/")

    def download_link(self, order_id: str) -> dict:
        """Fresh links to a built download order's files, as its client gets
        them: ``{"image_url", "bmap_url", "expires_at"}``."""
        return self.client("demo").get(f"api/v1/orders/{order_id}/download/")

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
        if self.registry is not None:
            self.registry.stop()
