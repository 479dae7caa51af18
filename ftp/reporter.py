"""Reports of received files to the API, sent from a background thread that
retries until the API accepts them.

Each completed upload leaves a small JSON file in the spool (``.warehouse/spool``)
before anything is sent, so a restart resumes reporting. While a report waits,
its file is not served to downloaders. The API's answer decides: ``rejected``
(the hash differs from the creator's declaration) moves the file into
quarantine; anything else lets it be served. ``409 not_declared`` means the
creator has not declared the image yet: try again later.
"""

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ftp import audit
from ftp.storage import Identity, Storage
from workers.common.api import ApiError

log = logging.getLogger(__name__)


@dataclass
class Report:
    path: str  # orders/<order>/<name>
    size: int
    sha256: str
    inode: int
    mtime_ns: int
    attempts: int = 0
    synced: bool = False

    @property
    def identity(self) -> Identity:
        return Identity(self.inode, self.size, self.mtime_ns)


class Spool:
    """Pending reports, one JSON file each, keyed by file path."""

    def __init__(self, folder: str):
        self.folder = folder
        self._lock = threading.Lock()
        self._reports: dict[str, Report] = {}

    def _file(self, path: str) -> str:
        key = hashlib.sha256(path.encode()).hexdigest()[:32]
        return os.path.join(self.folder, f"{key}.json")

    def load(self) -> int:
        """Read the reports left by a previous run."""
        loaded = {}
        for name in sorted(os.listdir(self.folder)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.folder, name)) as stream:
                    report = Report(**json.load(stream))
            except (OSError, ValueError, TypeError) as exc:
                log.error("skipping unreadable spool entry %s: %s", name, exc)
                continue
            loaded[report.path] = report
        with self._lock:
            self._reports.update(loaded)
        return len(loaded)

    def add(self, report: Report) -> None:
        target = self._file(report.path)
        temporary = target + ".tmp"
        with open(temporary, "w") as stream:
            json.dump(asdict(report), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
        with self._lock:
            self._reports[report.path] = report

    def remove(self, report: Report) -> None:
        """Forget ``report`` unless a newer upload of the path replaced it."""
        with self._lock:
            if self._reports.get(report.path) is not report:
                return
            del self._reports[report.path]
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._file(report.path))

    def forget(self, path: str) -> None:
        with self._lock:
            report = self._reports.get(path)
        if report is not None:
            self.remove(report)

    def pending(self, path: str) -> bool:
        with self._lock:
            return path in self._reports

    def all(self) -> list[Report]:
        with self._lock:
            return list(self._reports.values())


class Reporter:
    """Sends the spool's reports; ``step()`` does one round (tests call it)."""

    def __init__(
        self,
        api,
        storage: Storage,
        spool: Spool,
        *,
        retry_min: float = 1.0,
        retry_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.api = api
        self.storage = storage
        self.spool = spool
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._clock = clock
        self._due: dict[str, float] = {}
        self.wakeup = threading.Event()

    def add(self, report: Report) -> None:
        self.spool.add(report)
        self._due[report.path] = self._clock()
        self.wakeup.set()

    def step(self) -> float:
        """Send every due report once; the seconds until the next one is due."""
        now = self._clock()
        waits = [self.retry_max]
        for report in self.spool.all():
            due = self._due.get(report.path, now)
            if due > now:
                waits.append(due - now)
                continue
            if self.send(report):
                self._due.pop(report.path, None)
            else:
                report.attempts += 1
                delay = min(self.retry_min * 2 ** (report.attempts - 1), self.retry_max)
                self._due[report.path] = self._clock() + delay
                waits.append(delay)
        return max(min(waits), 0.0)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.step()
            except Exception:
                log.exception("reporter round failed")
                wait = self.retry_max
            self.wakeup.wait(wait)
            self.wakeup.clear()

    def send(self, report: Report) -> bool:
        """Report one file; True when the report is done with."""
        try:
            # Under the rename lock: an upload spools its report just before
            # renaming its .part to the final name.
            with self.storage.renames:
                real = self.storage.real(report.path)
                if Identity.of(real) != report.identity:
                    raise FileNotFoundError(real)
        except (OSError, ValueError):
            # Replaced by a newer upload (which has its own report) or deleted.
            log.info("dropping the report of %s: the file changed", report.path)
            self.spool.remove(report)
            return True
        if not report.synced:
            # Durable on disk before the API may call the image verified.
            fd = os.open(real, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            report.synced = True
        body = {"path": report.path, "size": report.size, "sha256": report.sha256}
        try:
            image = self.api.post("api/v1/warehouses/received/", body)
        except ApiError as exc:
            level = logging.INFO if exc.code == "not_declared" else logging.WARNING
            audit.record(
                "report",
                level,
                path=report.path,
                result="retry",
                status=exc.status,
                reason=str(exc),
            )
            return False
        state = (image or {}).get("state", "")
        if state == "rejected" and not self._set_aside(report):
            return False
        audit.record(
            "report",
            path=report.path,
            result="accepted",
            state=state,
            size=report.size,
            sha256=report.sha256,
        )
        self.spool.remove(report)
        return True

    def _set_aside(self, report: Report) -> bool:
        """Move a rejected file into quarantine; False to try again later."""
        with self.storage.renames:
            try:
                real = self.storage.real(report.path)
                if Identity.of(real) != report.identity:
                    return True  # a newer upload took the name; reported apart
                target = self.storage.set_aside(report.path)
            except FileNotFoundError:
                return True  # deleted meanwhile: nothing left to serve
            except OSError as exc:
                log.error("cannot move rejected %s aside: %s", report.path, exc)
                return False
        audit.record(
            "quarantine",
            logging.WARNING,
            path=report.path,
            to=os.path.relpath(target, self.storage.root),
            sha256=report.sha256,
            reason="the API rejected the hash",
        )
        return True
