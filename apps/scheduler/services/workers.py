"""Workers register, send heartbeats with their capabilities, and report slots."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.scheduler.models import (
    WORKER_KINDS_OF_ROLE,
    Slot,
    SlotState,
    Warehouse,
    Worker,
    WorkerKind,
)


def check_kind(account, kind: str) -> None:
    if kind not in WORKER_KINDS_OF_ROLE.get(account.role, ()):
        raise ValidationError(
            {
                "kind": _("A %(role)s account cannot run a %(kind)s worker.")
                % {"role": account.role, "kind": kind}
            }
        )


def register_worker(
    *,
    account,
    kind: str,
    host: str,
    version: str = "",
    capabilities: dict | None = None,
    slots: list[dict] | None = None,
) -> Worker:
    """Create or refresh the worker (account, kind, host); idempotent."""
    check_kind(account, kind)
    now = timezone.now()
    fields = {
        "version": version,
        "capabilities": capabilities or {},
        "last_seen": now,
        "offline_since": None,
    }
    worker = Worker.objects.filter(account=account, kind=kind, host=host).first()
    if worker is None:
        try:
            with transaction.atomic():
                worker = Worker.objects.create(
                    account=account, kind=kind, host=host, **fields
                )
        except IntegrityError:
            # Two registrations raced; the other one created it.
            worker = Worker.objects.get(account=account, kind=kind, host=host)
    Worker.objects.filter(pk=worker.pk).update(**fields)
    for key, value in fields.items():
        setattr(worker, key, value)
    if slots is not None:
        if kind != WorkerKind.WRITER:
            raise ValidationError({"slots": _("Only writers have slots.")})
        sync_slots(worker, slots)
    return worker


def sync_slots(worker: Worker, slots: list[dict]) -> None:
    """Make the worker's slots the given ones; a slot it no longer has goes away."""
    names = [slot["name"] for slot in slots]
    if len(set(names)) != len(names):
        raise ValidationError({"slots": _("Slot names must be unique.")})
    existing = {slot.name: slot for slot in worker.slots.all()}
    for spec in slots:
        slot = existing.get(spec["name"])
        if slot is None:
            Slot.objects.create(
                worker=worker, name=spec["name"], device_path=spec["device_path"]
            )
        elif slot.device_path != spec["device_path"] or slot.state == SlotState.OFFLINE:
            Slot.objects.filter(pk=slot.pk).update(
                device_path=spec["device_path"],
                state=SlotState.EMPTY,
                updated_at=timezone.now(),
            )
    gone = set(existing) - set(names)
    if gone:
        Slot.objects.filter(worker=worker, name__in=gone).delete()


def heartbeat(*, worker_id, capabilities: dict | None = None) -> dict:
    """The worker is alive (and has these capabilities); returns what changed."""
    fields = {"last_seen": timezone.now(), "offline_since": None}
    if capabilities is not None:
        fields["capabilities"] = capabilities
    Worker.objects.filter(pk=worker_id).update(**fields)
    return fields


def warehouse_heartbeat(*, account, name: str, **reported) -> Warehouse:
    """A warehouse reports its address and space; the first report creates it."""
    fields = {**reported, "last_seen": timezone.now(), "account": account}
    warehouse = Warehouse.objects.filter(name=name).first()
    if warehouse is not None and warehouse.account_id != account.pk:
        raise PermissionDenied(_("This warehouse belongs to another account."))
    if warehouse is None:
        warehouse = Warehouse.objects.create(name=name, **fields)
    else:
        Warehouse.objects.filter(pk=warehouse.pk).update(**fields)
        warehouse.refresh_from_db()
    Warehouse.objects.forget_pick()
    return warehouse


def report_slot(
    *,
    worker: Worker,
    name: str,
    state: str,
    percent: float = 0,
    card_capacity: int | None = None,
    card_serial: str = "",
    message: str = "",
) -> Slot:
    slot = Slot.objects.filter(worker=worker, name=name).first()
    if slot is None:
        raise ValidationError(
            {
                "name": _("This worker has no slot %(name)s; register it first.")
                % {"name": name}
            }
        )
    changes = {
        "state": state,
        "percent": percent,
        "card_capacity": card_capacity,
        "card_serial": card_serial,
        "message": message,
        "updated_at": timezone.now(),
    }
    if state in {SlotState.EMPTY, SlotState.OFFLINE}:
        changes["task"] = None
    Slot.objects.filter(pk=slot.pk).update(**changes)
    for key, value in changes.items():
        setattr(slot, key, value)
    return slot
