"""Images: the creator declares what it built, the warehouse reports what it got.

An image is verified only when the warehouse's size and sha256 of the image and of
its block map equal the creator's declaration (DESIGN 6). A mismatch rejects the
image (the warehouse keeps the file aside) and the build is done again.
"""

import re

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.common.errors import Conflict
from apps.notifications.services import notify
from apps.orders import pipeline
from apps.orders.models import Order
from apps.scheduler.models import Image, ImageState, Task, TaskKind, TaskStatus
from apps.scheduler.services.leases import fenced

PATH = re.compile(r"^/?orders/(?P<order>[0-9a-f-]{36})/(?P<name>[^/]+)$")


def declare_image(
    *,
    task: Task,
    lease_id,
    file_name: str,
    size: int,
    sha256: str,
    bmap_name: str,
    bmap_size: int,
    bmap_sha256: str,
) -> Image:
    """The creator, still holding its lease, says what it is about to upload."""
    if task.kind != TaskKind.CREATE:
        raise ValidationError({"task": _("Only create tasks produce images.")})
    if task.warehouse_id is None:
        raise ValidationError({"task": _("This task has no warehouse to upload to.")})
    now = timezone.now()
    # Proves the lease is still held before the declaration replaces anything.
    fenced(task, lease_id, now)
    declared = {
        "size": size,
        "sha256": sha256,
        "bmap_name": bmap_name,
        "bmap_size": bmap_size,
        "bmap_sha256": bmap_sha256,
        "state": ImageState.UPLOADING,
        "received_size": None,
        "received_sha256": "",
        "bmap_received_sha256": "",
        "expires_at": None,
    }
    image = Image.objects.filter(
        warehouse_id=task.warehouse_id, order_id=task.order_id, file_name=file_name
    ).first()
    if image is None:
        image = Image.objects.create(
            order_id=task.order_id,
            warehouse_id=task.warehouse_id,
            file_name=file_name,
            **declared,
        )
    else:
        # A rebuild after a lost lease: the new declaration replaces the old one.
        Image.objects.filter(pk=image.pk).update(**declared)
        image.refresh_from_db()
    Task.objects.held_by(lease_id).filter(pk=task.pk).update(image=image)
    task.image = image
    return image


def warehouse_received(*, warehouse, path: str, size: int, sha256: str) -> Image:
    """The warehouse finished receiving ``path``; verify the image if complete."""
    match = PATH.match(path)
    if not match:
        raise ValidationError(
            {
                "path": _("Expected orders/<order id>/<file name>, got %(p)s.")
                % {"p": path}
            }
        )
    order_id, name = match["order"], match["name"]
    image = (
        Image.objects.filter(warehouse=warehouse, order_id=order_id)
        .filter(file_name=name)
        .first()
        or Image.objects.filter(
            warehouse=warehouse, order_id=order_id, bmap_name=name
        ).first()
    )
    if image is None:
        raise Conflict(
            "not_declared",
            _("No image of this order is declared as %(name)s yet; report it later.")
            % {"name": name},
        )
    if image.state not in {ImageState.UPLOADING, ImageState.REJECTED}:
        return image  # a repeated report of an already verified image
    if name == image.file_name:
        changes = {"received_size": size, "received_sha256": sha256}
        matches = size == image.size and sha256 == image.sha256
    else:
        changes = {"bmap_received_sha256": sha256}
        matches = size == image.bmap_size and sha256 == image.bmap_sha256
    if not matches:
        return reject(image, name, size, sha256, changes)
    Image.objects.filter(pk=image.pk).update(**changes)
    image.refresh_from_db()
    if image.received_sha256 == image.sha256 and (
        image.bmap_received_sha256 == image.bmap_sha256
    ):
        verified = Image.objects.filter(pk=image.pk, state=ImageState.UPLOADING).update(
            state=ImageState.VERIFIED, verified_at=timezone.now()
        )
        image.refresh_from_db()
        if verified:
            pipeline.on_image_verified(image)
    return image


def reject(image: Image, name: str, size: int, sha256: str, changes: dict) -> Image:
    Image.objects.filter(pk=image.pk).update(state=ImageState.REJECTED, **changes)
    image.refresh_from_db()
    message = _(
        "The warehouse received %(name)s with %(size)d bytes and sha256 %(got)s, "
        "which is not what the creator declared."
    ) % {"name": name, "size": size, "got": sha256}
    task = (
        Task.objects.filter(order_id=image.order_id, kind=TaskKind.CREATE)
        .order_by("-created_at")
        .first()
    )
    if task is not None:
        task.record("image_rejected", file=name, sha256=sha256, size=size)
        rebuild(task, message)
    notify("worker_problem", order_id=image.order_id, message=message)
    return image


def rebuild(task: Task, message: str) -> None:
    """Do the build again after a rejected upload, within the attempt budget."""
    now = timezone.now()
    if task.status in TaskStatus.HELD:
        # Taken from whoever holds it, expired or not: its upload is worthless.
        changes = task.retry_or_fail(now, message)
        taken = (
            Task.objects.held_by(task.lease_id)
            .filter(pk=task.pk)
            .update(updated_at=now, **changes)
        )
        if taken and changes["status"] == TaskStatus.FAILED:
            pipeline.on_task_failed(task, message)
    elif task.status == TaskStatus.SUCCEEDED:
        # The creator finished before the warehouse's report.
        pipeline.rebuild(Order.objects.get(pk=task.order_id), task, message)


def deletable(warehouse):
    return Image.objects.filter(warehouse=warehouse, state=ImageState.DELETABLE)


def mark_deleted(*, warehouse, image_id) -> Image:
    image = Image.objects.filter(warehouse=warehouse, pk=image_id).first()
    if image is None:
        raise ValidationError({"image": _("This warehouse has no such image.")})
    Image.objects.filter(pk=image.pk, state=ImageState.DELETABLE).update(
        state=ImageState.DELETED
    )
    image.refresh_from_db()
    return image
