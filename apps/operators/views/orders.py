"""Orders for operators: every order with filters and search, one order with its
history, tasks and why they wait, and the actions: ship, cancel, anonymize."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models.fields.json import KT
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from apps.operators.access import staff_required
from apps.operators.forms import CancelForm, OrderFilterForm, ShipForm
from apps.orders import pipeline
from apps.orders.models import Order, OrderEvent, OrderStatus
from apps.scheduler.models import Image, Task, TaskEvent, TaskKind, TaskStatus
from apps.scheduler.services.diagnose import diagnose

PAGE_SIZE = 50
#: Task events shown on an order's page, newest first.
TASK_EVENTS_SHOWN = 50
#: A status's colour (Bootstrap's names); active ones are "primary".
STATUS_TONES = {
    OrderStatus.PENDING_SHIPMENT: "warning",
    OrderStatus.SHIPPED: "success",
    OrderStatus.FAILED: "danger",
    OrderStatus.CANCELED: "secondary",
    OrderStatus.EXPIRED: "secondary",
}
KIND_ORDER = {TaskKind.CREATE: 0, TaskKind.DOWNLOAD: 1, TaskKind.WRITE: 2}
#: The order's columns a list row shows: not the configuration snapshot (up to
#: 500 content entries) nor the recipe (hundreds of kilobytes with branding).
LIST_FIELDS = (
    "id",
    "owner",
    "kind",
    "card_size_gb",
    "quantity",
    "status",
    "recipient_name",
    "recipient_email",
    "created_at",
    "updated_at",
)


@require_GET
@staff_required
def order_list(request):
    form = OrderFilterForm(request.GET or None)
    orders = (
        Order.objects.only(*LIST_FIELDS)
        .annotate(name=KT("config__name"))
        .order_by("-created_at", "-id")
    )
    page = Paginator(form.filter(orders), PAGE_SIZE).get_page(request.GET.get("page"))
    # One query for the page's clients, not one per row; no join (DESIGN 3).
    rows = list(page.object_list)
    owners = {
        user.pk: user
        for user in get_user_model()
        .objects.filter(pk__in={order.owner_id for order in rows})
        .only("id", "username", "full_name")
    }
    for order in rows:
        # Set here once, not by template tags 50 times: the list is a hot page.
        order.owner_shown = owners.get(order.owner_id)
        order.tone = STATUS_TONES.get(order.status, "primary")
        order.url = reverse("ops:order", args=[order.pk])
        order.short = order.pk.hex[:8]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "ops/orders/list.html",
        {
            "form": form,
            "page": page,
            "orders": rows,
            "query": query.urlencode(),
            "section": "orders",
        },
    )


def explain(tasks: list[Task]) -> None:
    """Set ``task.why`` to the diagnosis of every task that is not finished.

    Copies waiting on one host get the same answer: it is asked once per kind,
    host and failure history, not once per copy (an order may have 100)."""
    answers: dict[tuple, dict] = {}
    for task in tasks:
        task.why = None
        if task.status in TaskStatus.TERMINAL:
            continue
        key = (
            (task.pk,)
            if task.status in TaskStatus.HELD
            else (task.kind, task.host, task.attempts, task.card_failures, task.error)
        )
        if key not in answers:
            answers[key] = diagnose(task)
        task.why = answers[key]


def detail_context(order: Order, **forms) -> dict:
    events = list(
        OrderEvent.objects.filter(order=order).order_by("at").prefetch_related("actor")
    )
    tasks = sorted(
        Task.objects.filter(order=order)
        .defer("work", "result")
        .prefetch_related("worker", "slot", "image"),
        key=lambda task: (
            KIND_ORDER[task.kind],
            task.copy_number or 0,
            task.created_at,
        ),
    )
    explain(tasks)
    task_events = list(
        TaskEvent.objects.filter(task_id__in=[task.pk for task in tasks])
        .exclude(type="log")
        .order_by("-at")[:TASK_EVENTS_SHOWN]
    )
    labels = {task.pk: task for task in tasks}
    for event in task_events:
        event.task_shown = labels.get(event.task_id)
    image = (
        Image.objects.filter(pk=order.image_id).prefetch_related("warehouse").first()
        if order.image_id
        else None
    )
    writes = [task for task in tasks if task.kind == TaskKind.WRITE]
    anonymized = pipeline.is_anonymized(order)
    order.tone = STATUS_TONES.get(order.status, "primary")
    return {
        "order": order,
        "shown_config": order.shown_config(),
        "events": events,
        "tasks": tasks,
        "task_events": task_events,
        "image": image,
        "written": sum(task.status == TaskStatus.SUCCEEDED for task in writes),
        "anonymized": anonymized,
        "can_ship": order.status == OrderStatus.PENDING_SHIPMENT,
        "can_cancel": order.is_active,
        "can_anonymize": order.status in OrderStatus.TERMINAL and not anonymized,
        "ship_form": forms.get("ship_form") or ShipForm(),
        "cancel_form": forms.get("cancel_form") or CancelForm(),
        # Refusals of the whole action (the order may not, or changed meanwhile).
        "errors": forms.get("errors", []),
        "section": "orders",
    }


def the_order(pk) -> Order:
    # The recipe (hundreds of kilobytes) is never shown: it holds passwords.
    return get_object_or_404(Order.objects.defer("recipe"), pk=pk)


@require_GET
@staff_required
def order_detail(request, pk):
    return render(request, "ops/orders/detail.html", detail_context(the_order(pk)))


def refused(request, order, status=400, **forms):
    response = render(request, "ops/orders/detail.html", detail_context(order, **forms))
    response.status_code = status
    return response


def split_errors(form, error: ValidationError) -> list[str]:
    """A refusal of the pipeline: what names a field of ``form`` goes on it; the
    rest (``status``: the order may not, or changed meanwhile) is returned, for
    the top of the page (the form may not even be shown any more)."""
    general = []
    for field, messages_ in error.message_dict.items():
        for message in messages_:
            if field in form.fields:
                form.add_error(field, message)
            else:
                general.append(message)
    return general


@require_POST
@staff_required
def ship(request, pk):
    order = the_order(pk)
    form = ShipForm(request.POST)
    errors = []
    if form.is_valid():
        try:
            pipeline.ship_order(order=order, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            errors = split_errors(form, error)
        else:
            messages.success(request, _("The order is marked shipped."))
            return redirect("ops:order", pk=order.pk)
    return refused(request, order, ship_form=form, errors=errors)


@require_POST
@staff_required
def cancel(request, pk):
    order = the_order(pk)
    form = CancelForm(request.POST)
    errors = []
    if form.is_valid():
        try:
            pipeline.cancel_order(
                order=order, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as error:
            errors = split_errors(form, error)
        else:
            messages.success(request, _("The order is canceled."))
            return redirect("ops:order", pk=order.pk)
    return refused(request, order, cancel_form=form, errors=errors)


@require_POST
@staff_required
def anonymize(request, pk):
    order = the_order(pk)
    try:
        pipeline.anonymize_order(order=order, actor=request.user)
    except ValidationError as error:
        return refused(request, order, errors=error.messages)
    messages.success(request, _("The order's personal data is erased."))
    return redirect("ops:order", pk=order.pk)
