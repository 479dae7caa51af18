"""Queue e-mail notifications after the database write that caused them.

``notify`` only records what happened (ids, never objects); the rq job loads fresh
rows, renders translated templates and sends. Without Redis the job runs at once
(django-rq's ASYNC=False), with Redis an ``rqworker`` sends it. When Redis is
configured but down, the notification waits in the database
(``PendingNotification``) and ``queue_pending`` (run by every sweep) queues it
once Redis is back.
"""

import logging

import django_rq
from django.conf import settings
from django.db import transaction

from apps.notifications.jobs import send_notification
from apps.notifications.models import PendingNotification

log = logging.getLogger(__name__)

KINDS = {
    "order_placed",
    "image_ready",
    "insert_card",
    "card_written",
    "order_written",
    "order_shipped",
    "order_failed",
    "worker_problem",
}


def notify(kind: str, **context) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown notification {kind!r}")
    context = {key: str(value) for key, value in context.items() if value is not None}

    def enqueue():
        try:
            _enqueue(kind, context)
        except Exception as exc:
            # A late e-mail must not fail the request that caused it: it waits
            # in the database until Redis answers again.
            log.warning("could not queue the %s notification (%s); kept", kind, exc)
            try:
                PendingNotification.objects.create(kind=kind, context=context)
            except Exception:
                log.exception("the %s notification is lost", kind)

    transaction.on_commit(enqueue)


def _enqueue(kind: str, context: dict) -> None:
    # ASYNC is read here, not at import, so settings can switch it.
    is_async = settings.RQ_QUEUES["default"].get("ASYNC", True)
    queue = django_rq.get_queue("default", is_async=is_async)
    queue.enqueue(send_notification, kind, context)


def queue_pending(limit: int = 500) -> int:
    """Queue the notifications kept while Redis was down, oldest first; stops
    at the first that still cannot be queued. Returns how many were queued.

    Each row is deleted before it is queued (a conditional delete, counted), so
    two sweepers never queue one twice; it is put back if queuing fails."""
    queued = 0
    for pending in PendingNotification.objects.all()[:limit]:
        deleted, _ = PendingNotification.objects.filter(pk=pending.pk).delete()
        if not deleted:
            continue  # another sweeper has it
        try:
            _enqueue(pending.kind, pending.context)
        except Exception as exc:
            pending.save(force_insert=True)
            log.warning("notifications still wait for Redis (%s)", exc)
            break
        queued += 1
    return queued
