"""Keep a claimed task's lease alive while the work runs (DESIGN 5).

A ``Lease`` renews every ``interval`` seconds in a thread, sending the latest phase
and percentage. When the API says the lease is lost (409) or the order was canceled,
it sets ``lost`` or ``canceled``; the work loop calls ``check()`` between steps and
stops. Events carry an ``event_id`` kept across retries, so a retried report is
applied once.

``run_under_lease`` is how every worker runs a claimed task: the work under its
lease, then the one event that ends the task (succeeded, failed, canceled), or
none when the lease is lost (the task is another worker's by then).
"""

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from workers.common.api import ApiClient, ApiError, LeaseLost
from workers.common.names import Event
from workers.common.progress import Canceled

log = logging.getLogger(__name__)

#: Answers that say the API (or its database) is away for a while, not "no".
UNAVAILABLE = {0, 502, 503, 504}
#: How long a report waits for the API to come back. Reports are idempotent (one
#: event_id), so sending one again is safe; giving a finished task up instead
#: would let its lease run out and another worker do it all again.
REPORT_PATIENCE = 15 * 60
REPORT_PAUSE = 5  # seconds between two sends of one report


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
        """Report an event; retried requests reuse one event_id (idempotent).
        While the API is unavailable the report is sent again, for up to
        ``REPORT_PATIENCE`` seconds; a 409 ends that (the lease is lost)."""
        body = {
            "lease_id": self.lease_id,
            "event_id": str(uuid.uuid4()),
            "type": type,
            **data,
        }
        deadline = time.monotonic() + REPORT_PATIENCE
        while True:
            try:
                return self.api.post(f"api/v1/tasks/{self.task_id}/events/", body)
            except LeaseLost:
                self.lost.set()
                raise
            except ApiError as exc:
                if exc.status not in UNAVAILABLE or time.monotonic() > deadline:
                    raise
                log.warning(
                    "task %s: the %s report waits for the API: %s",
                    self.task_id,
                    type,
                    exc,
                )
                time.sleep(REPORT_PAUSE)


@dataclass(frozen=True)
class Failure:
    """How a failed task is told to the API: an event of ``type`` with ``data``
    (no event when ``report`` is false); ``message`` is for people."""

    message: str
    type: str = Event.FAILED
    data: Mapping = field(default_factory=dict)
    report: bool = True


def failed(message: str, *, retryable: bool = True) -> Failure:
    """An attempt that failed; the API tries again when ``retryable``."""
    return Failure(message, data={"error": message[:2000], "retryable": retryable})


#: how run_under_lease's work ended
SUCCEEDED, FAILED, CANCELED = Event.SUCCEEDED, Event.FAILED, Event.CANCELED
STOPPED = "stopped"


@dataclass(frozen=True)
class Outcome:
    """``state`` is one of SUCCEEDED (``result`` was reported), FAILED
    (``failure`` was), CANCELED (the cancel was acknowledged) or STOPPED (the
    lease is lost: nothing was reported); ``error`` is what ended the work."""

    state: str
    result: dict | None = None
    failure: Failure | None = None
    error: BaseException | None = None


def run_under_lease(
    api: ApiClient,
    task: dict,
    work: Callable[[Lease], dict],
    *,
    interval: float,
    judge: Callable[[Exception], Failure | None],
    bar: contextlib.AbstractContextManager | None = None,
) -> Outcome:
    """Run ``work(lease)`` while the lease is renewed and report how it ended.

    ``work`` returns the result reported with the success; it stops by raising
    ``Stop`` (a lease check) or ``Canceled`` (a cancel() it was given).
    ``judge(exc)`` says how any other exception is reported, or None to let it
    through. ``bar`` (a progress bar) is closed with the lease, before the report.
    """
    lease = Lease(api, task, interval=interval)
    try:
        with lease, bar or contextlib.nullcontext():
            result = work(lease)
            lease.event(Event.SUCCEEDED, result=result)
    except (Stop, Canceled) as exc:
        if not lease.canceled.is_set():
            log.warning("task %s stopped: %s", lease.task_id, exc)
            return Outcome(STOPPED, error=exc)
        log.info("task %s canceled", lease.task_id)
        try:
            lease.event(Event.CANCELED)
        except ApiError as error:
            log.warning("could not acknowledge the cancel: %s", error)
        return Outcome(CANCELED, error=exc)
    except LeaseLost as exc:
        log.warning("task %s: %s", lease.task_id, exc)
        return Outcome(STOPPED, error=exc)
    except Exception as exc:
        failure = judge(exc)
        if failure is None:
            raise
        level = logging.ERROR if failure.type == Event.FAILED else logging.WARNING
        log.log(level, "task %s failed: %s", lease.task_id, failure.message)
        if failure.report:
            try:
                lease.event(failure.type, **failure.data)
            except ApiError as error:
                log.warning("could not report the failure: %s", error)
        return Outcome(FAILED, failure=failure, error=exc)
    return Outcome(SUCCEEDED, result=result)
