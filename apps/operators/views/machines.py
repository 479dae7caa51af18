"""Workers, warehouses and catalog sources: who is online, since when they are
silent, what each worker holds, how much room each warehouse has, and how the
catalog's last refreshes went."""

from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.catalog.models import CatalogSource
from apps.operators.access import staff_required
from apps.operators.board import TASK_FIELDS, orders_by_id
from apps.scheduler.models import Task, TaskStatus, Warehouse, Worker


@require_GET
@staff_required
def machines(request):
    now = timezone.now()
    accounts = get_user_model().objects.only("id", "username")
    workers = list(
        Worker.objects.order_by("kind", "host").prefetch_related(
            Prefetch("account", queryset=accounts), "slots"
        )
    )
    online = set(
        Worker.objects.filter(pk__in=[w.pk for w in workers])
        .online(now)
        .values_list("pk", flat=True)
    )
    held = list(
        Task.objects.filter(
            worker_id__in=[w.pk for w in workers], status__in=TaskStatus.HELD
        ).values(*TASK_FIELDS, "worker_id")
    )
    orders = orders_by_id(task["order_id"] for task in held)
    holding = {}
    for task in held:
        task["order"] = orders.get(task["order_id"])
        holding.setdefault(task["worker_id"], []).append(task)
    for worker in workers:
        worker.is_online = worker.pk in online
        worker.held = holding.get(worker.pk, [])
        worker.free_disk = (worker.capabilities or {}).get("free_disk")
    warehouses = list(Warehouse.objects.order_by("name"))
    for warehouse in warehouses:
        warehouse.used_percent = (
            100 * (1 - warehouse.free_bytes / warehouse.capacity_bytes)
            if warehouse.capacity_bytes
            else None
        )
    return render(
        request,
        "ops/machines.html",
        {
            "workers": workers,
            "warehouses": warehouses,
            "sources": list(CatalogSource.objects.order_by("url")),
            "now": now,
            "section": "machines",
        },
    )
