"""Queue e-mail notifications after the database write that caused them.

``notify`` only records what happened (ids, never objects); the rq job loads fresh
rows, renders translated templates and sends. Without Redis the job runs at once
(django-rq's ASYNC=False), with Redis an ``rqworker`` sends it.
"""

import logging

import django_rq
from django.conf import settings
from django.db import transaction

from apps.notifications.jobs import send_notification

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
        # ASYNC is read here, not at import, so settings can switch it.
        is_async = settings.RQ_QUEUES["default"].get("ASYNC", True)
        try:
            queue = django_rq.get_queue("default", is_async=is_async)
            queue.enqueue(send_notification, kind, context)
        except Exception:
            # A lost e-mail must not fail the request that caused it.
            log.exception("could not queue the %s notification", kind)

    transaction.on_commit(enqueue)
