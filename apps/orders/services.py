"""Order rules: placing, moving through statuses, cancelling, shipping.

Status changes are conditional updates on the current status (DESIGN 3): two
processes racing to move an order cannot both succeed, on any backend.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.notifications.services import notify
from apps.orders.models import (
    Configuration,
    Order,
    OrderEvent,
    OrderKind,
    OrderStatus,
)
from workers.creator.capacity import usable_bytes

GIB = 1024**3
# ext4 metadata, reserved blocks and alignment take a few percent of the content.
FILESYSTEM_OVERHEAD = 0.05


def required_bytes(content_bytes: int) -> int:
    """Bytes a card needs for this much content: base system plus overhead."""
    return settings.BASE_IMAGE_BYTES + int(content_bytes * (1 + FILESYSTEM_OVERHEAD))


def smallest_card_gb(content_bytes: int) -> int | None:
    need = required_bytes(content_bytes)
    from workers.creator.capacity import USABLE_BYTES

    fitting = [size for size, usable in sorted(USABLE_BYTES.items()) if usable >= need]
    return fitting[0] if fitting else None


def snapshot(configuration: Configuration) -> dict:
    """The frozen copy an order keeps of its configuration."""
    return {
        "id": str(configuration.pk),
        "name": configuration.name,
        "ssid": configuration.ssid,
        "language": configuration.language,
        "timezone": configuration.timezone,
        "admin_login": configuration.admin_login,
        "admin_password": configuration.admin_password,
        "wifi_password": configuration.wifi_password,
        "branding": {
            "logo": configuration.branding_logo.name or None,
            "favicon": configuration.branding_favicon.name or None,
        },
        "contents": list(configuration.contents),
    }


def place_order(
    *,
    owner,
    configuration: Configuration,
    kind: str,
    card_size_gb: int,
    quantity: int = 1,
    recipient_name: str = "",
    recipient_email: str,
    recipient_phone: str = "",
    shipping_address: str = "",
) -> Order:
    """Validate and store an order, then queue its create task.

    The content must fit the card's real capacity with headroom; otherwise the
    error says by how much it is too big and which card would fit.
    """
    from apps.scheduler.services.flow import create_build_task

    content = configuration.total_size
    order = Order(
        owner=owner,
        configuration=configuration,
        config=snapshot(configuration),
        kind=kind,
        card_size_gb=card_size_gb,
        quantity=quantity,
        content_bytes=content,
        recipient_name=recipient_name,
        recipient_email=recipient_email,
        recipient_phone=recipient_phone,
        shipping_address=shipping_address,
    )
    order.full_clean(exclude=["image"])
    need = required_bytes(content)
    usable = usable_bytes(card_size_gb)
    if need > usable:
        fits = smallest_card_gb(content)
        advice = (
            _("Choose a %(size)d GB card or remove content.") % {"size": fits}
            if fits
            else _("Remove content: no card size is big enough.")
        )
        raise ValidationError(
            {
                "card_size_gb": _(
                    "The content needs %(need).2f GiB with the base system, but a "
                    "%(card)d GB card holds %(usable).2f GiB: %(over).2f GiB too much. "
                )
                % {
                    "need": need / GIB,
                    "card": card_size_gb,
                    "usable": usable / GIB,
                    "over": (need - usable) / GIB,
                }
                + advice
            }
        )
    order.save()
    record(order, OrderStatus.PENDING, actor=owner, message=_("Order placed."))
    create_build_task(order)
    notify("order_placed", order_id=order.pk)
    return order


def record(order: Order, status: str, *, actor=None, message: str = "") -> None:
    OrderEvent.objects.create(order=order, status=status, actor=actor, message=message)


def move_order(
    order: Order, to: str, *, actor=None, message: str = "", **fields
) -> bool:
    """Move ``order`` to status ``to`` if that is allowed from its current status.

    Optimistic: the update is conditional on the status we read. If another
    process moved the order first, we read it again and retry while the move is
    still allowed. Returns whether this call moved it; ``order`` is refreshed.
    """
    for _attempt in range(3):
        current = order.status
        if not order.can_move(to):
            return False
        now = timezone.now()
        changes = {"status": to, "updated_at": now, **fields}
        if to in OrderStatus.TERMINAL or (
            to == OrderStatus.BUILT and order.kind == OrderKind.DOWNLOAD
        ):
            changes.setdefault(
                "expires_at", now + timedelta(days=settings.ORDER_RETENTION_DAYS)
            )
        moved = Order.objects.filter(pk=order.pk, status=current).update(**changes)
        order.refresh_from_db()
        if moved:
            record(order, to, actor=actor, message=message)
            return True
    return False


def cancel_order(*, order: Order, actor, reason: str = "") -> Order:
    """Cancel an active order; its workers learn it at their next renewal."""
    from apps.scheduler.services.flow import cancel_tasks

    if not order.is_active:
        raise ValidationError(
            {
                "status": _("A %(status)s order cannot be canceled.")
                % {"status": order.get_status_display()}
            }
        )
    if not move_order(
        order, OrderStatus.CANCELED, actor=actor, message=reason or _("Canceled.")
    ):
        raise ValidationError(
            {"status": _("The order changed meanwhile; reload it and try again.")}
        )
    cancel_tasks(order)
    return order


def ship_order(*, order: Order, actor, carrier: str = "", tracking: str = "") -> Order:
    if order.status != OrderStatus.PENDING_SHIPMENT:
        raise ValidationError(
            {"status": _("Only orders whose cards are all written can be shipped.")}
        )
    moved = move_order(
        order,
        OrderStatus.SHIPPED,
        actor=actor,
        message=_("Shipped."),
        shipment_carrier=carrier,
        shipment_tracking=tracking,
        shipped_at=timezone.now(),
    )
    if not moved:
        raise ValidationError(
            {"status": _("The order changed meanwhile; reload it and try again.")}
        )
    notify("order_shipped", order_id=order.pk)
    return order


def fail_order(order: Order, reason: str) -> bool:
    moved = move_order(order, OrderStatus.FAILED, message=reason, failure_reason=reason)
    if moved:
        from apps.scheduler.services.flow import cancel_tasks

        cancel_tasks(order)
        notify("order_failed", order_id=order.pk, message=reason)
    return moved
