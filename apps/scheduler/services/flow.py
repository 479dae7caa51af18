"""How finished tasks move an order on: build → download → write → ship.

Each step first makes its own change with a conditional update (only one process
wins it), then creates what follows. If a process dies in between, the sweeper's
``repair`` finds the order half-way and finishes the step.
"""

import logging

from django.conf import settings
from django.utils import timezone

from apps.notifications.services import notify
from apps.orders.models import Order, OrderKind, OrderStatus
from apps.orders.services import fail_order, move_order
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

log = logging.getLogger(__name__)


def event(task: Task, type: str, **data) -> None:
    TaskEvent.objects.create(
        task=task,
        type=type,
        lease_id=task.lease_id,
        worker_id=task.worker_id,
        data=data,
    )


def create_build_task(order: Order) -> Task:
    task = Task.objects.create(
        order=order, kind=TaskKind.CREATE, max_attempts=settings.TASK_MAX_ATTEMPTS
    )
    event(task, "created")
    return task


def download_url(image: Image) -> str:
    base = image.warehouse.download_url.rstrip("/")
    return f"{base}/{image.path}" if base else ""


def on_image_verified(image: Image) -> None:
    """The warehouse holds a verified image: the order is built."""
    order = Order.objects.get(pk=image.order_id)
    if order.status in OrderStatus.TERMINAL:
        # Canceled or failed while building: the image is not wanted.
        Image.objects.filter(pk=image.pk).update(state=ImageState.DELETABLE)
        return
    if order.status == OrderStatus.PENDING:
        move_order(order, OrderStatus.BUILDING, message="Image uploaded.")
    moved = move_order(
        order, OrderStatus.BUILT, message="Image built and verified.", image=image
    )
    if not moved:
        return
    if order.kind == OrderKind.DOWNLOAD:
        notify("image_ready", order_id=order.pk, download_url=download_url(image))
    else:
        notify("image_ready", order_id=order.pk)
        create_download_task(order, image)


def create_download_task(order: Order, image: Image) -> Task | None:
    if Task.objects.filter(
        order=order, kind=TaskKind.DOWNLOAD, status__in=TaskStatus.ACTIVE
    ).exists():
        return None
    task = Task.objects.create(
        order=order,
        kind=TaskKind.DOWNLOAD,
        image=image,
        max_attempts=settings.TASK_MAX_ATTEMPTS,
    )
    event(task, "created")
    return task


def on_download_succeeded(task: Task) -> None:
    """The image is on a writer host: one write task per copy, bound to it."""
    order = Order.objects.get(pk=task.order_id)
    if order.status in OrderStatus.TERMINAL:
        return
    create_write_tasks(order, task)


def create_write_tasks(order: Order, download: Task) -> None:
    if Task.objects.filter(order=order, kind=TaskKind.WRITE).exists():
        return
    Task.objects.bulk_create(
        [
            Task(
                order=order,
                kind=TaskKind.WRITE,
                image_id=download.image_id,
                host=download.host,
                copy_number=number,
                max_attempts=settings.TASK_MAX_ATTEMPTS,
                card_budget=settings.CARD_BUDGET,
            )
            for number in range(1, order.quantity + 1)
        ]
    )
    ask_for_cards(order, download.host)


def ask_for_cards(order: Order, host: str, message: str = "") -> None:
    """Tell the operators which empty slots of ``host`` to fill."""
    slots = Slot.objects.filter(
        worker__host=host, state__in=[SlotState.EMPTY, SlotState.DONE]
    ).order_by("name")
    waiting = Task.objects.filter(
        order=order, kind=TaskKind.WRITE, status=TaskStatus.PENDING
    ).count()
    for slot in list(slots)[: max(waiting, 1)]:
        notify(
            "insert_card",
            order_id=order.pk,
            slot_id=slot.pk,
            host=host,
            slot_name=slot.name,
            message=message,
        )


def on_write_claimed(task: Task) -> None:
    order = Order.objects.get(pk=task.order_id)
    if order.status == OrderStatus.BUILT:
        move_order(order, OrderStatus.WRITING, message="Writing the first card.")


def on_write_succeeded(task: Task) -> None:
    order = Order.objects.get(pk=task.order_id)
    slot = Slot.objects.select_related("worker").filter(pk=task.slot_id).first()
    notify(
        "card_written",
        order_id=order.pk,
        task_id=task.pk,
        host=task.host,
        slot_name=slot.name if slot else "",
    )
    complete_if_all_written(order)


def complete_if_all_written(order: Order) -> None:
    # Each writer checks after its own update, so the last one to finish always
    # sees every copy written; the conditional move lets only one of them notify.
    unfinished = (
        Task.objects.filter(order=order, kind=TaskKind.WRITE)
        .exclude(status=TaskStatus.SUCCEEDED)
        .exists()
    )
    if unfinished or not Task.objects.filter(order=order, kind=TaskKind.WRITE).exists():
        return
    if order.status == OrderStatus.BUILT:
        move_order(order, OrderStatus.WRITING)
    if move_order(order, OrderStatus.PENDING_SHIPMENT, message="All cards written."):
        notify("order_written", order_id=order.pk)


def on_create_succeeded(task: Task) -> None:
    image = task.image or Image.objects.filter(order_id=task.order_id).first()
    if image is not None and image.state == ImageState.VERIFIED:
        on_image_verified(image)
    # Otherwise the warehouse's report has not arrived yet; it finishes the step.


def on_task_failed(task: Task, reason: str) -> None:
    order = Order.objects.get(pk=task.order_id)
    fail_order(order, f"{task.get_kind_display()} failed: {reason}")


def cancel_tasks(order: Order) -> None:
    """Stop the order's work: pending tasks end now, held ones at next renewal."""
    now = timezone.now()
    Task.objects.filter(order=order, status=TaskStatus.PENDING).update(
        status=TaskStatus.CANCELED, finished_at=now, updated_at=now
    )
    Task.objects.filter(order=order, status__in=TaskStatus.HELD).update(
        cancel_requested=True, updated_at=now
    )
    # Nothing will read the order's image any more.
    Image.objects.filter(
        order=order,
        state__in=[ImageState.UPLOADING, ImageState.VERIFIED, ImageState.REJECTED],
    ).update(state=ImageState.DELETABLE)
