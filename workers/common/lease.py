"""Keep a claimed task's lease alive while the work runs (DESIGN 5).

A ``Lease`` renews every ``interval`` seconds in a thread, sending the latest phase
and percentage. When the API says the lease is lost (409) or the order was canceled,
it sets ``lost`` or ``canceled``; the work loop calls ``check()`` between steps and
stops. Events carry an ``event_id`` kept across retries, so a retried report is
applied once.
"""

import logging
import threading
import uuid

from workers.common.api import ApiClient, ApiError, LeaseLost

log = logging.getLogger(__name__)


class Stop(Exception):
    """The work must stop: the lease is lost or the task was canceled."""


class Lease:
    def __init__(self, api: ApiClient, task: dict, *, interval: float = 30):
        self.api = api
        self.task_id = task["id"]
        self.lease_id = task["lease_id"]
        self.interval = interval
        self.phase: str | None = None
        self.percent: float | None = None
        self.lost = threading.Event()
        self.canceled = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"lease-{self.task_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def progress(self, phase: str | None = None, percent: float | None = None) -> None:
        """Remember progress for the next renewal; a new phase is sent at once."""
        with self._lock:
            changed = phase is not None and phase != self.phase
            if phase is not None:
                self.phase = phase
            if percent is not None:
                self.percent = max(0.0, min(100.0, round(percent, 1)))
        if changed:
            self.renew()

    def check(self) -> None:
        if self.lost.is_set():
            raise Stop("lease lost: another worker may hold the task now")
        if self.canceled.is_set():
            raise Stop("the order was canceled")

    def renew(self) -> None:
        with self._lock:
            body = {"lease_id": self.lease_id}
            if self.phase is not None:
                body["phase"] = self.phase
            if self.percent is not None:
                body["percent"] = self.percent
        try:
            answer = self.api.post(f"api/v1/tasks/{self.task_id}/renew/", body)
        except LeaseLost as exc:
            log.warning("task %s: %s", self.task_id, exc)
            self.lost.set()
            return
        except ApiError as exc:
            # The API is unreachable: keep trying until the lease would expire; the
            # sweeper decides, and the next answer (409) tells us.
            log.warning("task %s: renewal failed: %s", self.task_id, exc)
            return
        if answer and answer.get("cancel"):
            self.canceled.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.renew()
            if self.lost.is_set():
                return

    def event(self, type: str, **data) -> dict:
        """Report an event; retried requests reuse one event_id (idempotent)."""
        body = {
            "lease_id": self.lease_id,
            "event_id": str(uuid.uuid4()),
            "type": type,
            **data,
        }
        try:
            return self.api.post(f"api/v1/tasks/{self.task_id}/events/", body)
        except LeaseLost:
            self.lost.set()
            raise
