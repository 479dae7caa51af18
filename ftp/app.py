"""The warehouse put together: API clients, keys, storage, reports, background
chores, the FTP server and the download links' HTTP server, started and stopped
as one."""

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ftp import audit, paths
from ftp.accounts import Accounts
from ftp.auth import KeySet
from ftp.config import Config
from ftp.hashing import HashStates
from ftp.reporter import Reporter, Spool
from ftp.server import build_server
from ftp.storage import Storage
from ftp.uploads import Uploads
from ftp.web import build_download_server
from workers.common.api import ApiClient, ApiError

log = logging.getLogger(__name__)

USER_AGENT = "imager-warehouse"
TICK = 0.25


class StartupError(Exception):
    """The warehouse cannot start; the message says what to fix."""


@dataclass
class Chore:
    """A periodic background job; a failure retries sooner than the interval."""

    name: str
    interval: float
    run: Callable[[], object]
    next_at: float = 0.0


class Warehouse:
    def __init__(self, config: Config):
        self.config = config
        # The warehouse's own account: heartbeats, reports, deletions, keys.
        self.api = ApiClient(
            config.api_url,
            config.username,
            config.password,
            retries=2,
            backoff=0.5,
            user_agent=USER_AGENT,
        )
        # Questions asked with a user's own token: few retries, the caller waits.
        self.user_api = ApiClient(
            config.api_url, "", "", retries=1, backoff=0.3, timeout=10
        )
        self.storage = Storage(config.root, reserve=config.reserve)
        self.keys = KeySet(lambda: self.api.get("api/v1/auth/jwks/"))
        self.accounts = Accounts(
            self.user_api,
            ttl=config.account_check_interval,
            orders_ttl=min(30.0, config.account_check_interval),
        )
        self.spool = Spool(self.storage.spool)
        self.reporter = Reporter(
            self.api, self.storage, self.spool, retry_max=config.report_retry_max
        )
        self.hashes = HashStates()
        self.uploads = Uploads()
        self.server = None
        self.web = None
        self.public_url = ""
        self.http_url = ""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.chores = [
            Chore("heartbeat", config.heartbeat_interval, self.heartbeat),
            Chore("deletions", config.deletions_interval, self.delete_expired),
            Chore("keys", config.jwks_interval, self.keys.refresh),
            Chore("accounts", min(config.account_check_interval, 5), self.recheck),
        ]

    # --- life cycle --------------------------------------------------------------

    def start(self) -> None:
        """Prepare storage, fetch the keys, bind, announce, then serve."""
        try:
            self.storage.prepare()
        except OSError as exc:
            raise StartupError(
                f"cannot prepare the storage root {self.config.root}: {exc}"
            ) from exc
        try:
            count = self.keys.refresh()
        except (ApiError, ValueError) as exc:
            raise StartupError(f"cannot fetch the API's signing keys: {exc}") from exc
        try:
            self.server = build_server(self)
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise StartupError(
                f"cannot listen on {where}: {exc.strerror or exc}"
            ) from exc
        if self.config.http_port is not None:
            try:
                self.web = build_download_server(self)
            except OSError as exc:
                self.server.close_all()
                where = f"{self.config.host}:{self.config.http_port}"
                raise StartupError(
                    f"cannot serve HTTP on {where}: {exc.strerror or exc}"
                ) from exc
        self.public_url = self.config.public_url or self._default_url()
        if self.web is not None:
            scheme = "https" if self.config.tls else "http"
            self.http_url = self.config.http_url or self._url(scheme, *self.web.address)
        try:
            self.heartbeat()
        except ApiError as exc:
            self._close_servers()
            raise StartupError(f"the API refused the heartbeat: {exc}") from exc
        pending = self.spool.load()
        now = time.monotonic()
        for chore in self.chores:
            chore.next_at = now + chore.interval
        self._spawn("ftp-server", self._serve)
        if self.web is not None:
            self._spawn("http-server", self.web.serve, TICK)
        self._spawn("reporter", self.reporter.run, self._stop)
        self._spawn("chores", self._chores)
        host, port = self.address
        audit.record(
            "start",
            address=f"{host}:{port}",
            url=self.public_url,
            http_url=self.http_url,
            name=self.config.name,
            keys=count,
            pending_reports=pending,
            tls=self.config.tls,
        )

    def stop(self) -> None:
        self._stop.set()
        self.reporter.wakeup.set()
        if self.web is not None:
            self.web.close_all()  # its thread returns, transfers end
        for thread in self._threads:
            thread.join(timeout=15)
        self._close_servers()
        self.accounts.close()

    def _close_servers(self) -> None:
        if self.server is not None:
            self.server.close_all()
        if self.web is not None:
            self.web.close_all()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def _spawn(self, name, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.server.serve_forever(timeout=TICK, blocking=False, handle_exit=False)

    @property
    def http_address(self) -> tuple[str, int] | None:
        return self.web.address if self.web is not None else None

    def _default_url(self) -> str:
        scheme = "ftps" if self.config.tls else "ftp"
        return self._url(scheme, *self.address[:2])

    def _url(self, scheme: str, host: str, port: int) -> str:
        """``scheme://host:port`` as clients dial it (behind NAT, the
        masquerade address; listening on every address, this host's name)."""
        host = self.config.masquerade_address or host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming, not binding
            host = socket.getfqdn()
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass
        return f"{scheme}://{host}:{port}"

    # --- chores ------------------------------------------------------------------

    def _chores(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(TICK)

    def tick(self) -> None:
        """Run the chores that are due, and a key refresh a token asked for."""
        now = time.monotonic()
        if self.keys.wanted.is_set() and self.keys.due():
            self.keys.wanted.clear()
            self._run(Chore("keys", self.config.jwks_interval, self.keys.refresh))
        for chore in self.chores:
            if chore.next_at <= now:
                ok = self._run(chore)
                delay = chore.interval if ok else min(chore.interval, 10)
                chore.next_at = time.monotonic() + delay

    def _run(self, chore: Chore) -> bool:
        try:
            chore.run()
            return True
        except Exception as exc:
            log.warning("%s failed: %s", chore.name, exc)
            return False

    def heartbeat(self) -> dict:
        capacity, free = self.storage.usage()
        return self.api.post(
            "api/v1/warehouses/heartbeat/",
            {
                "name": self.config.name,
                "ftp_url": self.public_url,
                "download_url": self.http_url,
                "capacity_bytes": capacity,
                "free_bytes": free,
            },
        )

    def recheck(self) -> None:
        self.accounts.recheck()

    def delete_expired(self) -> int:
        """Delete what the API says retention is over for; report each image."""
        done = 0
        for image in self.api.get("api/v1/warehouses/deletions/") or []:
            files = [image.get("path", ""), image.get("bmap_path", "")]
            try:
                removed = [self.storage.delete(p) for p in files if p]
            except paths.BadPath as exc:
                log.error("not deleting image %s: %s", image.get("id"), exc)
                continue
            for path in files:
                self.spool.forget(path)
            self.api.post(f"api/v1/warehouses/deletions/{image['id']}/")
            audit.record(
                "deleted",
                image=image["id"],
                path=files[0],
                bmap_path=files[1],
                found=all(removed),
            )
            done += 1
        return done
