"""Claiming a task: one conditional update per candidate, so that of many workers
asking at once each task goes to exactly one, on SQLite, PostgreSQL and MongoDB
alike (no ``select_for_update``, no transaction: DESIGN 3).

This is the busiest endpoint, so its reads are few and fixed: the candidates carry
the room they need and the work to hand out (``Task.needed_bytes``, ``Task.work``),
and the worker's identity and the warehouse choice come from the process's memory
(``WorkerManager.identity``, ``WarehouseManager.pick``).
"""

import random
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.orders import pipeline
from apps.scheduler.models import (
    TASK_KIND_OF,
    Slot,
    SlotState,
    Task,
    TaskKind,
    TaskStatus,
    Warehouse,
    WorkerIdentity,
)
from apps.scheduler.services.workers import heartbeat

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


def claim_task(
    *,
    worker: WorkerIdentity,
    free_disk: int | None = None,
    slot_name: str = "",
    card_capacity: int | None = None,
    card_serial: str = "",
) -> Claim:
    """Lease the next task this worker can do, or say why there is none.

    A claim that leases a task proves the worker alive through its lease; one that
    finds nothing is the idle worker's heartbeat.
    """
    kind = TASK_KIND_OF[worker.kind]
    pending = Task.objects.filter(kind=kind, status=TaskStatus.PENDING)
    extra: dict = {}
    slot = None
    if kind == TaskKind.CREATE:
        warehouse = Warehouse.objects.pick()
        if warehouse is None:
            heartbeat(worker_id=worker.pk)
            return Claim(None, _("No warehouse is online; start one."), "no_warehouse")
        extra["warehouse"] = warehouse
    elif kind == TaskKind.DOWNLOAD:
        extra["host"] = worker.host
    else:
        slot = Slot.objects.filter(worker_id=worker.pk, name=slot_name).first()
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

    claim = _lease_one(kind, pending, worker, free_disk, card_capacity, extra)
    if claim.task is None:
        heartbeat(worker_id=worker.pk)
    else:
        _after_claim(claim.task, slot)
    return claim


def _lease_one(kind, pending, worker, free_disk, card_capacity, extra) -> Claim:
    for _round in range(ROUNDS):
        candidates = list(pending.order_by("created_at")[:CANDIDATES])
        if not candidates:
            # Also after a lost race: an earlier round's reason no longer holds.
            reason = _("No %(kind)s task is waiting.") % {"kind": kind}
            return Claim(None, reason, "nothing_waiting")
        fitting, reason, code = _fitting(
            kind, candidates, free_disk, card_capacity, extra
        )
        if not fitting:
            return Claim(None, reason, code)
        random.shuffle(fitting)
        for candidate in fitting:
            if _try_lease(candidate, worker, extra):
                return Claim(candidate)
    return Claim(None, _("Other workers took the waiting tasks; ask again."), "busy")


def _fitting(kind, candidates, free_disk, card_capacity, extra):
    """The candidates this worker has room for, and why none fits otherwise."""
    smallest = min(t.needed_bytes for t in candidates)
    if kind == TaskKind.CREATE:
        warehouse = extra["warehouse"]
        fitting = [
            t
            for t in candidates
            if t.needed_bytes <= warehouse.free_bytes
            and (free_disk is None or t.needed_bytes <= free_disk)
        ]
        where = (
            _("the warehouse") if smallest > warehouse.free_bytes else _("this disk")
        )
        why = _("The next image needs %(size)d bytes; %(where)s has less.")
        return fitting, why % {"size": smallest, "where": where}, "no_room"
    limit = free_disk if kind == TaskKind.DOWNLOAD else card_capacity
    if limit is None:
        return candidates, "", ""
    fitting = [t for t in candidates if t.needed_bytes <= limit]
    if kind == TaskKind.WRITE:
        # A copy asks for a card of the size ordered, not just one its image
        # fits on (apps.orders.pipeline.create_write_tasks).
        why = _(
            "Card too small: the copy needs a card of %(size)d bytes at least "
            "(the size ordered), this one has %(cap)d."
        )
        return fitting, why % {"size": smallest, "cap": limit}, "card_too_small"
    why = _("Not enough free disk: the image has %(size)d bytes, the disk %(free)d.")
    return fitting, why % {"size": smallest, "free": limit}, "no_room"


def _try_lease(candidate: Task, worker: WorkerIdentity, extra: dict) -> bool:
    now = timezone.now()
    changes = {
        "status": TaskStatus.LEASED,
        "lease_id": uuid4(),
        "lease_expires_at": now + timedelta(seconds=settings.LEASE_SECONDS),
        "worker_id": worker.pk,
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
    if won:
        for key, value in changes.items():
            setattr(candidate, key, value)
    return bool(won)


def _after_claim(task: Task, slot: Slot | None) -> None:
    task.record("claimed")
    if task.kind == TaskKind.CREATE:
        pipeline.on_build_claimed(task)
    elif task.kind == TaskKind.WRITE:
        Slot.objects.filter(pk=slot.pk).update(
            task=task,
            state=SlotState.CARD_PRESENT,
            percent=0,
            updated_at=timezone.now(),
        )
        pipeline.on_write_claimed(task)
