"""Why is this task not running? Answers for the operator, in plain words."""

from django.utils import timezone
from django.utils.translation import gettext as _

from apps.scheduler.models import (
    WORKER_KIND_OF,
    Slot,
    SlotState,
    Task,
    TaskKind,
    TaskStatus,
    Warehouse,
    Worker,
)


def _ago(moment, now) -> str:
    minutes = int((now - moment).total_seconds() // 60)
    return _("%(n)d minutes ago") % {"n": minutes}


def diagnose(task: Task) -> dict:
    now = timezone.now()
    reasons: list[str] = []
    answer = {
        "task": task.pk,
        "status": task.status,
        "running": False,
        "reasons": reasons,
    }
    if task.status in TaskStatus.TERMINAL:
        reasons.append(_("The task is finished: %(s)s.") % {"s": task.status})
        if task.error:
            reasons.append(task.error)
        return answer
    if task.status in TaskStatus.HELD:
        answer["running"] = True
        worker = task.worker
        reasons.append(
            _("Held by %(w)s (last seen %(ago)s), phase %(p)s at %(pc).0f%%.")
            % {
                "w": worker or "?",
                "ago": _ago(worker.last_seen, now) if worker else "?",
                "p": task.phase or "-",
                "pc": task.percent,
            }
        )
        if task.lease_expires_at and task.lease_expires_at <= now:
            reasons.append(
                _("Its lease expired; the sweeper will give it to another worker.")
            )
        if task.cancel_requested:
            reasons.append(_("Cancel requested; waiting for the worker to stop."))
        return answer

    kind = WORKER_KIND_OF[task.kind]
    workers = Worker.objects.filter(kind=kind)
    if task.kind == TaskKind.WRITE:
        workers = workers.filter(host=task.host)
    online = list(workers.online(now))
    if not online:
        last = workers.order_by("-last_seen").first()
        where = _(" on host %(h)s") % {"h": task.host} if task.host else ""
        if last is None:
            reasons.append(
                _("No %(k)s worker%(where)s has ever registered; start one.")
                % {"k": kind, "where": where}
            )
        else:
            reasons.append(
                _("No %(k)s worker%(where)s is online: %(w)s was last seen %(ago)s.")
                % {
                    "k": kind,
                    "where": where,
                    "w": last,
                    "ago": _ago(last.last_seen, now),
                }
            )
    if task.kind == TaskKind.CREATE:
        need = task.needed_bytes
        warehouses = list(Warehouse.objects.online(now))
        if not warehouses:
            reasons.append(_("No warehouse is online to receive the image."))
        elif max(w.free_bytes for w in warehouses) < need:
            reasons.append(
                _("No warehouse has %(n)d bytes free for the image.") % {"n": need}
            )
        small = [
            w
            for w in online
            if w.capabilities.get("free_disk") is not None
            and w.capabilities["free_disk"] < need
        ]
        if online and len(small) == len(online):
            reasons.append(_("No creator has %(n)d bytes of free disk.") % {"n": need})
    elif task.kind == TaskKind.DOWNLOAD and task.image:
        small = [
            w
            for w in online
            if w.capabilities.get("free_disk") is not None
            and w.capabilities["free_disk"] < task.image.size
        ]
        if online and len(small) == len(online):
            reasons.append(
                _("No writer host has %(n)d bytes of free disk for the image.")
                % {"n": task.image.size}
            )
    elif task.kind == TaskKind.WRITE:
        slots = list(Slot.objects.filter(worker__host=task.host))
        free = [s for s in slots if s.state in {SlotState.EMPTY, SlotState.DONE}]
        busy = [s for s in slots if s.state in {SlotState.WRITING, SlotState.VERIFYING}]
        if not slots:
            reasons.append(_("Host %(h)s has no slots registered.") % {"h": task.host})
        elif not free and busy:
            reasons.append(_("Every slot of %(h)s is busy writing.") % {"h": task.host})
        else:
            reasons.append(
                _("Waiting for a card in a free slot of %(h)s.") % {"h": task.host}
            )
        if task.card_failures:
            reasons.append(
                _("%(n)d of %(b)d cards failed so far; last: %(e)s")
                % {"n": task.card_failures, "b": task.card_budget, "e": task.error}
            )
        if any(s.card_capacity and s.card_capacity < task.needed_bytes for s in slots):
            reasons.append(
                _(
                    "A card in a slot is too small: the copy needs a card of the "
                    "size ordered, %(n)d bytes at least."
                )
                % {"n": task.needed_bytes}
            )
    if task.attempts:
        reasons.append(
            _("Attempt %(a)d of %(m)d; last error: %(e)s")
            % {"a": task.attempts + 1, "m": task.max_attempts, "e": task.error or "-"}
        )
    if not reasons:
        reasons.append(_("A worker should claim it at its next poll."))
    return answer
