"""The sweeper: takes back expired leases and stuck phases, marks silent workers
offline, expires orders and releases their images, and finishes steps a crashed
process left half-done. ``sweep()`` is one pass; the rq cron job and the ``sweep``
command call it."""

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_noop

from apps.notifications.services import notify, queue_pending
from apps.orders import pipeline
from apps.orders.models import Order, OrderKind, OrderStatus
from apps.scheduler.models import (
    Image,
    ImageState,
    Slot,
    SlotState,
    Task,
    TaskKind,
    TaskStatus,
    Worker,
    online_since,
)

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    canceled: int = 0
    timed_out: int = 0
    offline: int = 0
    expired: int = 0
    deletable: int = 0
    repaired: int = 0
    mailed: int = 0  # notifications kept while Redis was down, now queued

    def __str__(self):
        return ", ".join(f"{key} {value}" for key, value in asdict(self).items())


def sweep(now=None) -> SweepReport:
    now = now or timezone.now()
    report = SweepReport()
    expired = Task.objects.filter(status__in=TaskStatus.HELD, lease_expires_at__lte=now)
    for task in expired[:BATCH]:
        take_back(task, now, "lease expired", report)
    stuck_since = now - timedelta(seconds=settings.PHASE_TIMEOUT_SECONDS)
    stuck = Task.objects.filter(
        status=TaskStatus.RUNNING, phase_started_at__lt=stuck_since
    )
    for task in stuck[:BATCH]:
        if take_back(task, now, f"phase {task.phase!r} timed out", report):
            report.timed_out += 1
    mark_offline(now, report)
    expire_orders(now, report)
    repair(report)
    report.mailed = queue_pending()
    return report


def take_back(task: Task, now, reason: str, report: SweepReport) -> bool:
    """Requeue (or fail, or cancel) a held task, if it is still as we read it."""
    if task.cancel_requested:
        changes = {"status": TaskStatus.CANCELED, "finished_at": now}
    else:
        changes = task.retry_or_fail(now, reason)
    counter = {
        TaskStatus.CANCELED: "canceled",
        TaskStatus.FAILED: "failed",
        TaskStatus.PENDING: "requeued",
    }[changes["status"]]
    slot_id = task.slot_id
    # Fenced on the lease and its expiry as we read them: a worker that renewed
    # or reported in the meantime keeps its task.
    taken = (
        Task.objects.held_by(task.lease_id)
        .filter(pk=task.pk, status=task.status, lease_expires_at=task.lease_expires_at)
        .update(updated_at=now, **changes)
    )
    if not taken:
        return False
    setattr(report, counter, getattr(report, counter) + 1)
    task.record(counter, reason=reason)
    if slot_id:
        Slot.objects.filter(pk=slot_id, task_id=task.pk).update(
            task=None, state=SlotState.FAILED, message=reason[:255], updated_at=now
        )
    if counter == "failed":
        pipeline.on_task_failed(task, f"{reason} after {task.max_attempts} attempts")
    return True


def mark_offline(now, report: SweepReport) -> None:
    online = Worker.objects.online(now).values_list("pk", flat=True)
    for worker in Worker.objects.filter(
        last_seen__lt=online_since(now), offline_since__isnull=True
    ).exclude(pk__in=list(online))[:BATCH]:
        went = Worker.objects.filter(pk=worker.pk, offline_since__isnull=True).update(
            offline_since=now
        )
        if went:
            report.offline += 1
            Slot.objects.filter(worker=worker).update(
                state=SlotState.OFFLINE, updated_at=now
            )
            minutes = int((now - worker.last_seen).total_seconds() // 60)
            notify(
                "worker_problem",
                worker_id=worker.pk,
                # The e-mail says it in each reader's language.
                silent_minutes=minutes,
            )


def expire_orders(now, report: SweepReport) -> None:
    for order in Order.objects.filter(expires_at__lte=now).exclude(
        status=OrderStatus.EXPIRED
    )[:BATCH]:
        if order.move_to(
            OrderStatus.EXPIRED, message=gettext_noop("Retention period ended.")
        ):
            report.expired += 1
    # Two steps: MongoDB cannot update() across a relation (DESIGN 3).
    expired = Order.objects.filter(status=OrderStatus.EXPIRED).values_list(
        "pk", flat=True
    )
    report.deletable += Image.objects.filter(
        order_id__in=list(expired), state__in=pipeline.LIVE_IMAGES
    ).update(state=ImageState.DELETABLE)


def _order_ids(queryset) -> set:
    return set(queryset.values_list("order_id", flat=True))


def repair(report: SweepReport) -> None:
    """Finish order steps that a process died in the middle of.

    A fixed number of queries whatever the number of orders: each step looks for
    orders whose next object is missing, by sets of ids.
    """
    for image in Image.objects.filter(
        state=ImageState.VERIFIED,
        order__status__in=[OrderStatus.PENDING, OrderStatus.BUILDING],
    )[:BATCH]:
        pipeline.on_image_verified(image)
        report.repaired += 1

    built = set(
        Order.objects.filter(
            status=OrderStatus.BUILT, kind=OrderKind.PHYSICAL
        ).values_list("pk", flat=True)[:BATCH]
    )
    if built:
        tasks = Task.objects.filter(order_id__in=built)
        with_download = _order_ids(tasks.filter(kind=TaskKind.DOWNLOAD))
        with_writes = _order_ids(tasks.filter(kind=TaskKind.WRITE))
        downloaded = tasks.filter(kind=TaskKind.DOWNLOAD, status=TaskStatus.SUCCEEDED)
        for order in Order.objects.filter(
            pk__in=built - with_download, image__isnull=False
        ).select_related("image"):
            pipeline.create_download_task(order, order.image)
            report.repaired += 1
        for download in downloaded.exclude(order_id__in=with_writes).select_related(
            "order"
        ):
            pipeline.create_write_tasks(download.order, download)
            report.repaired += 1

    writing = set(
        Order.objects.filter(status=OrderStatus.WRITING).values_list("pk", flat=True)[
            :BATCH
        ]
    )
    if writing:
        unfinished = _order_ids(
            Task.objects.filter(order_id__in=writing, kind=TaskKind.WRITE).exclude(
                status=TaskStatus.SUCCEEDED
            )
        )
        for order in Order.objects.filter(pk__in=writing - unfinished):
            pipeline.complete_if_all_written(order)
            report.repaired += 1
