"""What a lease holder may do: renew, report progress and events, upload logs.

Every change is fenced: an update of ``Task.objects.held_by(lease_id, now)``. A
worker whose lease was taken back gets a ``Conflict`` (HTTP 409) and must stop.
Events carry the worker's ``event_id``: sending one twice changes nothing.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.common.errors import Conflict
from apps.orders import pipeline
from apps.scheduler.models import (
    Image,
    ImageState,
    Slot,
    SlotState,
    Task,
    TaskEvent,
    TaskKind,
    TaskStatus,
)

LOG_TAIL_CHARS = 64 * 1024

EVENT_TYPES = {"progress", "log", "succeeded", "failed", "card_failed", "canceled"}
#: Events that change nothing when applied twice: their repeat is caught by the
#: unique event id alone, without looking for it first (the most frequent event).
REPEATABLE = {"progress"}
CARD_FAILURES = {"too_small", "write_error", "verify_mismatch", "removed"}


def lease_lost(task: Task) -> Conflict:
    if task.status in TaskStatus.TERMINAL:
        why = _("the task is %(status)s") % {"status": task.status}
    elif task.status == TaskStatus.PENDING:
        why = _("the lease expired and the task was taken back")
    else:
        why = _("another worker holds it now")
    return Conflict(
        "lease_lost", _("Lease lost: %(why)s. Stop working on it.") % {"why": why}
    )


def fenced(task: Task, lease_id, now, /, **changes) -> None:
    """Apply ``changes`` only while ``lease_id`` still holds the task."""
    updated = (
        Task.objects.held_by(lease_id, now)
        .filter(pk=task.pk)
        .update(updated_at=now, **changes)
    )
    if not updated:
        task.refresh_from_db()
        raise lease_lost(task)
    for key, value in changes.items():
        setattr(task, key, value)


def check_lease(task: Task, lease_id, now) -> None:
    """Refuse at once a lease the row we read no longer shows; the fenced update
    stays what decides."""
    if not task.holds(lease_id, now):
        raise lease_lost(task)


def _progress(task: Task, now, phase: str | None, percent: float | None) -> dict:
    changes: dict = {}
    if phase is not None:
        changes["status"] = TaskStatus.RUNNING
        changes["phase"] = phase
        if phase != task.phase:
            changes["phase_started_at"] = now
    if percent is not None:
        if not 0 <= percent <= 100:
            raise ValidationError({"percent": _("A percentage is from 0 to 100.")})
        changes["percent"] = percent
    return changes


def renew(*, task: Task, lease_id, phase=None, percent=None) -> Task:
    """Extend the lease; the answer tells the worker whether to cancel.

    A renewal is also the worker's sign of life (``WorkerQuerySet.online``), so
    it writes the task alone.
    """
    now = timezone.now()
    check_lease(task, lease_id, now)
    changes = _progress(task, now, phase, percent)
    changes["lease_expires_at"] = now + timedelta(seconds=settings.LEASE_SECONDS)
    fenced(task, lease_id, now, **changes)
    return task


def report_event(
    *, task: Task, lease_id, event_id, type: str, **data
) -> tuple[Task, bool]:
    """Apply one event; returns (task, duplicate). A repeated event_id is a no-op."""
    if type not in EVENT_TYPES:
        raise ValidationError(
            {
                "type": _("Use one of: %(types)s.")
                % {"types": ", ".join(sorted(EVENT_TYPES))}
            }
        )
    if (
        type not in REPEATABLE
        and TaskEvent.objects.filter(task=task, event_id=event_id).exists()
    ):
        return task, True
    now = timezone.now()
    check_lease(task, lease_id, now)
    worker_id = task.worker_id  # the handlers may requeue the task and clear it
    try:
        after = HANDLERS[type](task, lease_id, now, data)
    except Conflict:
        # The same event may have been applied by a request whose answer was lost.
        if TaskEvent.objects.filter(task=task, event_id=event_id).exists():
            return task, True
        raise
    event = TaskEvent(
        task=task,
        event_id=event_id,
        type=type,
        lease_id=lease_id,
        worker_id=worker_id,
        data=data,
    )
    try:
        if connection.in_atomic_block:
            # Inside a transaction a refused insert must not break it.
            with transaction.atomic():
                event.save(force_insert=True)
        else:
            event.save(force_insert=True)
    except IntegrityError:
        return task, True
    if after is not None:
        after()
    return task, False


def _on_progress(task, lease_id, now, data):
    changes = _progress(task, now, data.get("phase"), data.get("percent"))
    fenced(task, lease_id, now, **changes)


def _on_log(task, lease_id, now, data):
    text = data.get("text") or ""
    fenced(task, lease_id, now, log_tail=(task.log_tail + text)[-LOG_TAIL_CHARS:])


def _finish(task, lease_id, now, /, **changes):
    fenced(task, lease_id, now, finished_at=now, **changes)


def _on_succeeded(task, lease_id, now, data):
    if task.cancel_requested:
        raise Conflict("canceled", _("The order was canceled; report 'canceled'."))
    if (
        task.kind == TaskKind.CREATE
        and not Image.objects.filter(
            order_id=task.order_id,
            state__in=[ImageState.UPLOADING, ImageState.VERIFIED],
        ).exists()
    ):
        raise ValidationError(
            {"type": _("Declare the image (POST .../image/) before reporting success.")}
        )
    _finish(
        task,
        lease_id,
        now,
        status=TaskStatus.SUCCEEDED,
        percent=100,
        result=data.get("result") or {},
    )
    if task.kind == TaskKind.WRITE and task.slot_id:
        Slot.objects.filter(pk=task.slot_id).update(
            state=SlotState.DONE, percent=100, updated_at=now
        )
    return lambda: pipeline.ON_SUCCEEDED[task.kind](task)


def _on_failed(task, lease_id, now, data):
    error = (data.get("error") or _("no reason given"))[:2000]
    changes = task.retry_or_fail(now, error, retryable=data.get("retryable", True))
    fenced(task, lease_id, now, **changes)
    if changes["status"] == TaskStatus.FAILED:
        return lambda: pipeline.on_task_failed(task, error)
    return lambda: task.record("requeued", reason=error)


def _on_card_failed(task, lease_id, now, data):
    if task.kind != TaskKind.WRITE:
        raise ValidationError({"type": _("Only write tasks have cards.")})
    reason = data.get("reason")
    if reason not in CARD_FAILURES:
        raise ValidationError(
            {
                "reason": _("Use one of: %(r)s.")
                % {"r": ", ".join(sorted(CARD_FAILURES))}
            }
        )
    message = data.get("message") or reason
    failures = task.card_failures + 1
    slot_id = task.slot_id
    if failures >= task.card_budget:
        _finish(
            task,
            lease_id,
            now,
            status=TaskStatus.FAILED,
            card_failures=failures,
            error=_("%(n)d cards failed; last: %(m)s") % {"n": failures, "m": message},
        )
        return lambda: pipeline.on_task_failed(task, task.error)
    changes = task.requeue_changes(now, message, count_attempt=False)
    changes["card_failures"] = failures
    fenced(task, lease_id, now, **changes)
    Slot.objects.filter(pk=slot_id).update(
        state=SlotState.FAILED, message=message[:255], updated_at=now
    )
    return lambda: pipeline.on_card_failed(task, message)


def _on_canceled(task, lease_id, now, data):
    if not task.cancel_requested:
        raise ValidationError(
            {"type": _("Nobody asked to cancel this task; report 'failed' instead.")}
        )
    _finish(task, lease_id, now, status=TaskStatus.CANCELED)


HANDLERS = {
    "progress": _on_progress,
    "log": _on_log,
    "succeeded": _on_succeeded,
    "failed": _on_failed,
    "card_failed": _on_card_failed,
    "canceled": _on_canceled,
}
