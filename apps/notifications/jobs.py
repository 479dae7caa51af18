"""rq jobs that render and send notification e-mails."""

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import translation

from apps.accounts.models import Role
from apps.orders.models import Order
from apps.scheduler.models import Slot, Task, Worker

log = logging.getLogger(__name__)

# Who reads each notification: the client who ordered, the cards' recipient, or the
# operators (managers' addresses and OPERATOR_EMAILS).
AUDIENCE = {
    "order_placed": ("owner",),
    "image_ready": ("owner", "recipient"),
    "insert_card": ("operators",),
    "card_written": ("operators",),
    "order_written": ("operators",),
    "order_shipped": ("owner", "recipient"),
    "order_failed": ("owner", "operators"),
    "worker_problem": ("operators",),
}


def operator_emails() -> dict[str, str]:
    """Operators' addresses and the language each reads: a manager's own
    preference, the site's language for OPERATOR_EMAILS (no account to ask)."""
    found = dict.fromkeys(settings.OPERATOR_EMAILS, settings.LANGUAGE_CODE)
    managers = (
        get_user_model()
        .objects.filter(role__in=Role.staff(), is_active=True)
        .exclude(email="")
        .values_list("email", "language")
    )
    found.update(managers)
    return found


def _context(context: dict) -> dict:
    loaded = {"site_url": settings.SITE_URL, "message": context.get("message", "")}
    if "order_id" in context:
        loaded["order"] = Order.objects.select_related("owner").get(
            pk=context["order_id"]
        )
    if "task_id" in context:
        loaded["task"] = Task.objects.get(pk=context["task_id"])
    if "slot_id" in context:
        loaded["slot"] = Slot.objects.select_related("worker").get(
            pk=context["slot_id"]
        )
    if "worker_id" in context:
        loaded["worker"] = Worker.objects.get(pk=context["worker_id"])
    for key in ("host", "slot_name", "download_url"):
        if key in context:
            loaded[key] = context[key]
    if "silent_minutes" in context:
        loaded["silent_minutes"] = int(context["silent_minutes"])
    if "download_expires_at" in context:
        loaded["download_expires_at"] = datetime.fromisoformat(
            context["download_expires_at"]
        )
    return loaded


def recipients(kind: str, loaded: dict) -> list[tuple[str, str, str]]:
    """(address, language, reader) for this notification, without duplicate
    addresses; the reader (``owner``, ``recipient`` or ``operators``) decides
    what the e-mail shows: a recipient without an account gets no link to the
    order's page."""
    found: dict[str, tuple[str, str]] = {}
    order = loaded.get("order")
    for who in AUDIENCE[kind]:
        if who == "owner" and order and order.owner.email:
            found.setdefault(order.owner.email, (order.owner.language, who))
        elif who == "recipient" and order and order.recipient_email:
            language = order.config.get("language", settings.LANGUAGE_CODE)
            found.setdefault(order.recipient_email, (language, who))
        elif who == "operators":
            for address, language in sorted(operator_emails().items()):
                found.setdefault(address, (language, who))
    return [(address, *found[address]) for address in sorted(found)]


def send_notification(kind: str, context: dict) -> int:
    """Render and send one notification; returns how many e-mails were sent."""
    loaded = _context(context)
    sent = 0
    for address, language, reader in recipients(kind, loaded):
        known = dict(settings.LANGUAGES)
        context = {**loaded, "reader": reader}
        with translation.override(language if language in known else "en"):
            subject = render_to_string(f"notifications/{kind}.subject.txt", context)
            body = render_to_string(f"notifications/{kind}.body.txt", context)
        sent += send_mail(
            " ".join(subject.split()),
            body.strip() + "\n",
            settings.DEFAULT_FROM_EMAIL,
            [address],
        )
    if not sent:
        log.info("notification %s had no recipient", kind)
    return sent
