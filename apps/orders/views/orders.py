"""Order pages: the order form, the list, the detail whose progress refreshes by
itself (htmx polls a part of the page while the order is active), the frozen
YAML and cancelling. Clients see their own orders; staff see all."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from apps.orders import pipeline
from apps.orders.forms import CancelForm, OrderForm, add_errors
from apps.orders.links import download_link_or_none
from apps.orders.models import Configuration, Order, OrderEvent, OrderKind, OrderStatus
from apps.orders.views.access import customer_required, posted, visible_order
from apps.orders.views.configurations import attachment
from apps.scheduler.models import Task, TaskKind

PAGE_SIZE = 25
#: Seconds between two refreshes of an active order's progress.
POLL_SECONDS = 3
#: The build, the transfer to the writer host, then every copy.
TASK_ORDER = [TaskKind.CREATE, TaskKind.DOWNLOAD, TaskKind.WRITE]
SHOWN = {
    "active": OrderStatus.ACTIVE,
    "finished": OrderStatus.TERMINAL,
}


@customer_required
def order_list(request):
    shown = request.GET.get("show", "all")
    orders = Order.objects.visible_to(request.user).prefetch_related(
        "owner", Prefetch("tasks", Task.objects.only("id", "order", "percent"))
    )
    if shown in SHOWN:
        orders = orders.filter(status__in=SHOWN[shown])
    page = Paginator(orders, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "orders/order_list.html",
        {
            "page": page,
            "shown": shown if shown in SHOWN else "all",
            "rows": [(order, pipeline.progress(order.tasks.all())) for order in page],
        },
    )


@customer_required
@require_http_methods(["GET", "POST"])
def order_create(request):
    """The order form; ``?configuration=<id>`` chooses the configuration."""
    initial = {"recipient_email": request.user.email}
    chosen = None
    wanted = request.GET.get("configuration", "")
    if _is_uuid(wanted):
        visible = Configuration.objects.visible_to(request.user)
        chosen = visible.filter(pk=wanted).first()
    if chosen is not None:
        initial["configuration"] = chosen.pk
        initial["card_size_gb"] = chosen.min_card_size_gb
    form = OrderForm(posted(request), initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            order = pipeline.place_order(owner=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_errors(form, exc)
        else:
            messages.success(
                request, _("Your order is placed: follow it on this page.")
            )
            return redirect("client:order_detail", order.pk)
    return render(
        request,
        "orders/order_form.html",
        {
            "form": form,
            "chosen": chosen,
            "smallest_card": chosen.min_card_size_gb if chosen else None,
            "has_configurations": form.fields["configuration"].queryset.exists(),
        },
    )


def _is_uuid(value: str) -> bool:
    try:
        Order._meta.pk.to_python(value)
    except ValidationError:
        return False
    return True


def still_moving(order: Order) -> bool:
    """Whether the order's page should keep asking for news: while it is active,
    but a built download order only waits for its link to expire."""
    built_download = (
        order.kind == OrderKind.DOWNLOAD and order.status == OrderStatus.BUILT
    )
    return order.is_active and not built_download


def progress_context(request, pk) -> dict:
    """What the progress part shows: status, each task (the build, the transfer
    to the writer host and every copy) with its phase and percentage, and the
    status timeline; it asks again every few seconds while the order is active."""
    queryset = Order.objects.prefetch_related(
        "image__warehouse",
        Prefetch("events", OrderEvent.objects.prefetch_related("actor")),
        Prefetch("tasks", Task.objects.order_by("created_at", "copy_number")),
    )
    order = visible_order(request, pk, queryset)
    tasks = list(order.tasks.all())
    order_of_kinds = [TaskKind.CREATE, TaskKind.DOWNLOAD, TaskKind.WRITE]
    tasks.sort(
        key=lambda task: (order_of_kinds.index(task.kind), task.copy_number or 0)
    )
    return {
        "order": order,
        "tasks": tasks,
        "progress": pipeline.progress(tasks),
        "events": list(order.events.all()),
        # A fresh signed link (apps/orders/links.py), made for who looks.
        "download": download_link_or_none(order, user=request.user),
        "poll_seconds": POLL_SECONDS if still_moving(order) else None,
    }


@customer_required
def order_detail(request, pk):
    context = progress_context(request, pk)
    order = context["order"]
    config = order.shown_config()
    return render(
        request,
        "orders/order_detail.html",
        {**context, "config": config, "contents": config.get("contents", [])},
    )


@customer_required
def order_progress(request, pk):
    """The part of the detail page that refreshes itself (htmx)."""
    return render(request, "orders/_order_progress.html", progress_context(request, pk))


@customer_required
@require_http_methods(["GET", "POST"])
def order_cancel(request, pk):
    """Confirm, then cancel an active order; its workers stop at their next
    renewal."""
    order = visible_order(request, pk)
    form = CancelForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            pipeline.cancel_order(
                order=order, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("The order is canceled."))
        return redirect("client:order_detail", order.pk)
    if not order.is_active:
        messages.info(
            request,
            _("A %(status)s order cannot be canceled.")
            % {"status": order.get_status_display()},
        )
        return redirect("client:order_detail", order.pk)
    return render(request, "orders/order_cancel.html", {"order": order, "form": form})


@customer_required
def order_recipe(request, pk):
    """The image-creator YAML frozen on the order when it was placed."""
    order = visible_order(request, pk)
    if not order.recipe:
        raise Http404(_("This order was placed before recipes were kept."))
    return attachment(order.recipe, "application/yaml", f"order-{order.pk}.yaml")
