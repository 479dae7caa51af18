"""Claiming a task: one conditional update per candidate, so that of many workers
asking at once each task goes to exactly one, on SQLite, PostgreSQL and MongoDB
alike (no ``select_for_update``, no transaction: DESIGN 3)."""

import random
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.orders.models import Order
from apps.scheduler.models import (
    Image,
    Slot,
    SlotState,
    Task,
    TaskKind,
    TaskStatus,
    Warehouse,
    Worker,
)
from apps.scheduler.services import flow

# Candidates looked at per round. Workers pick among them at random so that many
# claimers do not all race for the oldest task.
CANDIDATES = 8
ROUNDS = 4


@dataclass
class Claim:
    task: Task | None
    reason: str = ""
    #: Why there is no task, for programs (``reason`` is for people, translated):
    #: no_warehouse, nothing_waiting, no_room, card_too_small or busy.
    code: str = ""


def estimated_image_bytes(order) -> int:
    """Room a build of ``order`` needs, on the creator's disk and the warehouse."""
    return settings.BASE_IMAGE_BYTES + order.content_bytes


def claim_task(
    *,
    worker: Worker,
    free_disk: int | None = None,
    slot_name: str = "",
    card_capacity: int | None = None,
    card_serial: str = "",
) -> Claim:
    """Lease the next task this worker can do, or say why there is none."""
    kind = {"creator": TaskKind.CREATE, "downloader": TaskKind.DOWNLOAD}.get(
        worker.kind, TaskKind.WRITE
    )
    pending = Task.objects.filter(kind=kind, status=TaskStatus.PENDING)
    extra: dict = {}
    slot = None
    if kind == TaskKind.CREATE:
        warehouse = pick_warehouse()
        if warehouse is None:
            return Claim(None, _("No warehouse is online; start one."), "no_warehouse")
        extra["warehouse"] = warehouse
    elif kind == TaskKind.DOWNLOAD:
        extra["host"] = worker.host
    else:
        slot = Slot.objects.filter(worker=worker, name=slot_name).first()
        if slot is None:
            raise ValidationError(
                {"slot": _("Name one of this writer's registered slots.")}
            )
        if not card_capacity:
            raise ValidationError(
                {"card_capacity": _("Give the capacity of the inserted card.")}
            )
        extra.update(slot=slot, card_capacity=card_capacity, card_serial=card_serial)
        pending = pending.filter(host=worker.host)

    reason = _("No %(kind)s task is waiting.") % {"kind": kind}
    code = "nothing_waiting"
    for _round in range(ROUNDS):
        candidates = list(pending.order_by("created_at")[:CANDIDATES])
        if not candidates:
            return Claim(None, reason, code)
        fitting, reason, code = _fitting(
            kind, candidates, free_disk, card_capacity, extra
        )
        if not fitting:
            return Claim(None, reason, code)
        random.shuffle(fitting)
        for candidate in fitting:
            task = _try_lease(candidate, worker, extra)
            if task is not None:
                _after_claim(task, slot)
                return Claim(task)
    return Claim(None, _("Other workers took the waiting tasks; ask again."), "busy")


def _sizes(kind, candidates) -> dict:
    """Bytes each candidate needs, in one query by ids. No select_related: on
    MongoDB a join runs before the filter, over the whole collection."""
    if kind == TaskKind.CREATE:
        ids = {t.order_id for t in candidates}
        content = dict(
            Order.objects.filter(pk__in=ids).values_list("pk", "content_bytes")
        )
        return {
            t.pk: settings.BASE_IMAGE_BYTES + content[t.order_id] for t in candidates
        }
    ids = {t.image_id for t in candidates if t.image_id}
    sizes = dict(Image.objects.filter(pk__in=ids).values_list("pk", "size"))
    return {t.pk: sizes.get(t.image_id, 0) for t in candidates}


def _fitting(kind, candidates, free_disk, card_capacity, extra):
    """The candidates this worker has room for, and why none fits otherwise."""
    sizes = _sizes(kind, candidates)
    if kind == TaskKind.CREATE:
        need = [(t, sizes[t.pk]) for t in candidates]
        warehouse = extra["warehouse"]
        fitting = [
            t
            for t, size in need
            if size <= warehouse.free_bytes and (free_disk is None or size <= free_disk)
        ]
        smallest = min(size for _t, size in need)
        where = (
            _("the warehouse") if smallest > warehouse.free_bytes else _("this disk")
        )
        why = _("The next image needs %(size)d bytes; %(where)s has less.")
        return fitting, why % {"size": smallest, "where": where}, "no_room"
    limit = free_disk if kind == TaskKind.DOWNLOAD else card_capacity
    if limit is None:
        return candidates, "", ""
    fitting = [t for t in candidates if sizes[t.pk] <= limit]
    smallest = min(sizes.values(), default=0)
    if kind == TaskKind.WRITE:
        why = _("Card too small: the image has %(size)d bytes, the card %(cap)d.")
        return fitting, why % {"size": smallest, "cap": limit}, "card_too_small"
    why = _("Not enough free disk: the image has %(size)d bytes, the disk %(free)d.")
    return fitting, why % {"size": smallest, "free": limit}, "no_room"


def _try_lease(candidate: Task, worker: Worker, extra: dict) -> Task | None:
    now = timezone.now()
    lease_id = uuid4()
    changes = {
        "status": TaskStatus.LEASED,
        "lease_id": lease_id,
        "lease_expires_at": now + timedelta(seconds=settings.LEASE_SECONDS),
        "worker": worker,
        "phase": "",
        "percent": 0,
        "phase_started_at": now,
        "started_at": now,
        "updated_at": now,
        "error": "",
        **extra,
    }
    won = Task.objects.filter(pk=candidate.pk, status=TaskStatus.PENDING).update(
        **changes
    )
    if not won:
        return None
    for key, value in changes.items():
        setattr(candidate, key, value)
    return candidate


def _after_claim(task: Task, slot: Slot | None) -> None:
    flow.event(task, "claimed")
    if task.kind == TaskKind.CREATE:
        from apps.orders.models import OrderStatus
        from apps.orders.services import move_order

        order = Order.objects.get(pk=task.order_id)
        task.order = order  # the claim's answer describes the order: no re-read
        if order.status == OrderStatus.PENDING:
            move_order(order, OrderStatus.BUILDING, message="Build started.")
    elif task.kind == TaskKind.WRITE:
        Slot.objects.filter(pk=slot.pk).update(
            task=task,
            state=SlotState.CARD_PRESENT,
            percent=0,
            updated_at=timezone.now(),
        )
        flow.on_write_claimed(task)


def pick_warehouse() -> Warehouse | None:
    """The online warehouse with the most free space."""
    since = timezone.now() - timedelta(seconds=settings.WORKER_OFFLINE_AFTER)
    return (
        Warehouse.objects.filter(last_seen__gte=since).order_by("-free_bytes").first()
    )
