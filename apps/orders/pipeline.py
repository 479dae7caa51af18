"""The order pipeline: place → build → download → write → ship, or cancel and fail;
once finished, anonymize.

Every order rule that spans orders and tasks lives here, and only here: placing an
order and its create task, what each finished task moves on, cancelling, shipping,
failing and erasing a finished order's personal data. Status changes are
``Order.move_to`` (a conditional update, DESIGN 3); each step first makes its own
change, then creates what follows. If a process dies in between, the sweeper's
``repair`` finds the order half-way and calls the same step again.

The scheduler's services (claims, leases, images, sweeper) call in here; nothing
here calls them.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

# A fixed history message is stored in English (gettext_noop) and translated when
# shown: the process that records it (often a worker's API call) is not in the
# language of the person who reads it. Messages with details stay as written.
from django.utils.translation import gettext_noop

from apps.notifications.services import notify
from apps.orders import cards, links, recipes
from apps.orders.models import (
    SECRET_CONFIG_KEYS,
    Configuration,
    Order,
    OrderKind,
    OrderStatus,
)
from apps.scheduler.models import (
    Image,
    ImageState,
    Slot,
    SlotState,
    Task,
    TaskKind,
    TaskStatus,
)

#: Images nothing will read once their order is over.
LIVE_IMAGES = (ImageState.UPLOADING, ImageState.VERIFIED, ImageState.REJECTED)
CHANGED_MEANWHILE = _("The order changed meanwhile; reload it and try again.")

# --- What people do ----------------------------------------------------------------


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

    The configuration is frozen twice: as data (``config``) and rendered by
    offspot-config into image-creator's YAML (``recipe``), whose minimum image
    size must fit the card's real capacity; otherwise the error says by how much
    it is too big and which card would fit.
    """
    order = Order(
        owner=owner,
        configuration=configuration,
        config=configuration.snapshot(),
        kind=kind,
        card_size_gb=card_size_gb,
        quantity=quantity,
        content_bytes=configuration.total_size,
        recipient_name=recipient_name,
        recipient_email=recipient_email,
        recipient_phone=recipient_phone,
        shipping_address=shipping_address,
    )
    order.full_clean(exclude=["image"])
    try:
        recipe = recipes.render(order.config, branding=configuration.branding_images())
    except ValidationError as exc:
        # The configuration's fields, named on the order's field that chose it.
        raise ValidationError(
            {
                "configuration": [
                    _("Fix the configuration first: %(field)s: %(message)s")
                    % {"field": field, "message": message}
                    for field, messages in exc.message_dict.items()
                    for message in messages
                ]
            }
        ) from None
    order.recipe, order.image_bytes = recipe.text, recipe.min_size
    cards.check_fits(order.image_bytes, card_size_gb)
    order.save()
    order.events.create(
        status=OrderStatus.PENDING, actor=owner, message=gettext_noop("Order placed.")
    )
    create_build_task(order)
    notify("order_placed", order_id=order.pk)
    return order


def cancel_order(*, order: Order, actor, reason: str = "") -> Order:
    """Cancel an active order; its workers learn it at their next renewal."""
    if not order.is_active:
        raise ValidationError(
            {
                "status": _("A %(status)s order cannot be canceled.")
                % {"status": order.get_status_display()}
            }
        )
    if not order.move_to(
        OrderStatus.CANCELED, actor=actor, message=reason or gettext_noop("Canceled.")
    ):
        raise ValidationError({"status": CHANGED_MEANWHILE})
    stop_work(order)
    return order


def ship_order(*, order: Order, actor, carrier: str = "", tracking: str = "") -> Order:
    if order.status != OrderStatus.PENDING_SHIPMENT:
        raise ValidationError(
            {"status": _("Only orders whose cards are all written can be shipped.")}
        )
    moved = order.move_to(
        OrderStatus.SHIPPED,
        actor=actor,
        message=gettext_noop("Shipped."),
        shipment_carrier=carrier,
        shipment_tracking=tracking,
        shipped_at=timezone.now(),
    )
    if not moved:
        raise ValidationError({"status": CHANGED_MEANWHILE})
    notify("order_shipped", order_id=order.pk)
    return order


#: What anonymizing erases: who the cards went to and where (a tracking number
#: leads to the address at the carrier).
PERSONAL_FIELDS = (
    "recipient_name",
    "recipient_email",
    "recipient_phone",
    "shipping_address",
    "shipment_tracking",
)


def is_anonymized(order: Order) -> bool:
    # Every order is placed with a recipient e-mail: only anonymizing empties it.
    return not order.recipient_email


def anonymize_order(*, order: Order, actor) -> Order:
    """Erase a finished order's personal data and keep its history.

    The recipient, the address and the tracking number are emptied, and so are
    the hotspot's passwords: in the configuration snapshot and in the frozen
    recipe (the YAML holds them; the order will never be built again). Events,
    tasks and the rest of the snapshot stay. The update is conditional on a
    finished status, so an order cannot come back to life half erased.
    """
    if order.status not in OrderStatus.TERMINAL:
        raise ValidationError(
            {
                "status": _(
                    "Only finished orders (shipped, canceled, failed or expired) "
                    "can be anonymized; this one is %(status)s."
                )
                % {"status": order.get_status_display()}
            }
        )
    if is_anonymized(order):
        raise ValidationError({"status": _("This order is anonymized already.")})
    config = {
        **order.config,
        **{key: "" for key in SECRET_CONFIG_KEYS if key in order.config},
    }
    changes = {
        **dict.fromkeys(PERSONAL_FIELDS, ""),
        "config": config,
        "recipe": "",
        "updated_at": timezone.now(),
    }
    erased = Order.objects.filter(
        pk=order.pk,
        status__in=OrderStatus.TERMINAL,
        recipient_email=order.recipient_email,
    ).update(**changes)
    if not erased:
        raise ValidationError({"status": CHANGED_MEANWHILE})
    for key, value in changes.items():
        setattr(order, key, value)
    order.events.create(
        status=order.status,
        actor=actor,
        message=_("Personal data erased (anonymized) by %(user)s.") % {"user": actor},
    )
    return order


def fail_order(order: Order, reason: str) -> bool:
    moved = order.move_to(OrderStatus.FAILED, message=reason, failure_reason=reason)
    if moved:
        stop_work(order)
        notify("order_failed", order_id=order.pk, message=reason)
    return moved


def stop_work(order: Order) -> None:
    """Stop the order's work: pending tasks end now, held ones at next renewal."""
    now = timezone.now()
    Task.objects.filter(order=order, status=TaskStatus.PENDING).update(
        status=TaskStatus.CANCELED, finished_at=now, updated_at=now
    )
    Task.objects.filter(order=order, status__in=TaskStatus.HELD).update(
        cancel_requested=True, updated_at=now
    )
    Image.objects.filter(order=order, state__in=LIVE_IMAGES).update(
        state=ImageState.DELETABLE
    )


def progress(tasks) -> float:
    """An order's overall percentage from its tasks: building, then each copy
    written, equally weighted."""
    tasks = list(tasks)
    if not tasks:
        return 0.0
    return round(sum(task.percent for task in tasks) / len(tasks), 1)


# --- Building ----------------------------------------------------------------------


def build_task(order: Order) -> Task:
    """The (unsaved) create task of ``order``. It needs room for the image on the
    creator and in the warehouse. Its work says where to upload; the recipe (the
    frozen YAML, a few hundred kilobytes with offspot's branding) is fetched by
    the creator holding the task (``tasks/{id}/recipe/``), so that claims, which
    read several candidate tasks, stay light."""
    return Task(
        order=order,
        kind=TaskKind.CREATE,
        max_attempts=settings.TASK_MAX_ATTEMPTS,
        needed_bytes=order.image_bytes,
        work={"upload_folder": f"orders/{order.pk}"},
    )


def create_build_task(order: Order) -> Task:
    task = build_task(order)
    task.save(force_insert=True)
    task.record("created")
    return task


def on_build_claimed(task: Task) -> None:
    """A creator took the order's build: the order is building (a rebuild of a
    building order changes nothing)."""
    Order.objects.move(
        task.order_id,
        current=OrderStatus.PENDING,
        to=OrderStatus.BUILDING,
        message=gettext_noop("Build started."),
    )


def on_build_succeeded(task: Task) -> None:
    image = task.image or Image.objects.filter(order_id=task.order_id).first()
    if image is not None and image.state == ImageState.VERIFIED:
        on_image_verified(image)
    # Otherwise the warehouse's report has not arrived yet; it finishes the step.


def on_image_verified(image: Image) -> None:
    """The warehouse holds a verified image: the order is built."""
    order = Order.objects.get(pk=image.order_id)
    if order.status in OrderStatus.TERMINAL:
        # Canceled or failed while building: the image is not wanted.
        Image.objects.filter(pk=image.pk).update(state=ImageState.DELETABLE)
        return
    if order.status == OrderStatus.PENDING:
        order.move_to(OrderStatus.BUILDING, message=gettext_noop("Image uploaded."))
    if not order.move_to(
        OrderStatus.BUILT,
        message=gettext_noop("Image built and verified."),
        image=image,
    ):
        return
    if order.kind == OrderKind.DOWNLOAD:
        # A link made now for the owner; the order's page makes fresh ones.
        link = links.download_link_or_none(order)
        notify(
            "image_ready",
            order_id=order.pk,
            download_url=link.image_url if link else None,
            download_expires_at=link.expires_at.isoformat() if link else None,
        )
    else:
        notify("image_ready", order_id=order.pk)
        create_download_task(order, image)


def rebuild(order: Order, failed_build: Task, message: str) -> None:
    """Build again after the warehouse rejected an upload the creator had already
    reported done: a fresh task, so no task ever succeeds twice; within the
    budget of builds, or the order fails."""
    builds = Task.objects.filter(order=order, kind=TaskKind.CREATE).count()
    if builds >= failed_build.max_attempts:
        on_task_failed(failed_build, message)
        return
    order.move_to(OrderStatus.PENDING, message=message)
    create_build_task(order)


# --- Downloading and writing -------------------------------------------------------


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
        needed_bytes=image.size,
        work=image.fetch_work(),
    )
    task.record("created")
    return task


def on_download_succeeded(task: Task) -> None:
    """The image is on a writer host: one write task per copy, bound to it."""
    order = Order.objects.get(pk=task.order_id)
    if order.status in OrderStatus.TERMINAL:
        return
    create_write_tasks(order, task)


def create_write_tasks(order: Order, download: Task) -> None:
    """One write task per copy. Each asks for a card of the size ordered (its
    usable bytes), not merely one the image fits on: a card smaller than what
    was ordered is refused at claim (``card_too_small``)."""
    if Task.objects.filter(order=order, kind=TaskKind.WRITE).exists():
        return
    card_bytes = cards.usable_bytes(order.card_size_gb)
    work = {
        **download.work,
        "card_size_gb": order.card_size_gb,
        "card_bytes": card_bytes,
    }
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
                needed_bytes=card_bytes,
                work=work,
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


def on_card_failed(task: Task, message: str) -> None:
    """A card failed and the copy waits for another one: ask for it."""
    ask_for_cards(
        Order.objects.get(pk=task.order_id),
        task.host,
        message=_("The last card failed (%(m)s); insert another.") % {"m": message},
    )


def on_write_claimed(task: Task) -> None:
    """The first card of the order is being written."""
    Order.objects.move(
        task.order_id,
        current=OrderStatus.BUILT,
        to=OrderStatus.WRITING,
        message=gettext_noop("Writing the first card."),
    )


def on_write_succeeded(task: Task) -> None:
    order = Order.objects.get(pk=task.order_id)
    slot = Slot.objects.filter(pk=task.slot_id).first()
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
    writes = Task.objects.filter(order=order, kind=TaskKind.WRITE)
    if not writes.exists() or writes.exclude(status=TaskStatus.SUCCEEDED).exists():
        return
    if order.status == OrderStatus.BUILT:
        order.move_to(OrderStatus.WRITING)
    if order.move_to(
        OrderStatus.PENDING_SHIPMENT, message=gettext_noop("All cards written.")
    ):
        notify("order_written", order_id=order.pk)


# --- Failing -----------------------------------------------------------------------


def on_task_failed(task: Task, reason: str) -> None:
    order = Order.objects.get(pk=task.order_id)
    fail_order(order, f"{task.get_kind_display()} failed: {reason}")


#: What a succeeded task moves on, by kind.
ON_SUCCEEDED = {
    TaskKind.CREATE: on_build_succeeded,
    TaskKind.DOWNLOAD: on_download_succeeded,
    TaskKind.WRITE: on_write_succeeded,
}
