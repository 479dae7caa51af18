"""Who may call each endpoint of the orders and scheduler APIs, and what it changes.

One table row per endpoint scenario: the callers that pass and the status they get.
Anyone else gets 403, the anonymous caller 401. Every caller gets a fresh subject;
a refused call must leave the subject's database state as it was, an allowed one
must do what the endpoint promises. A last test fails when an endpoint of these
apps is missing from the table.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import uuid4

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import TestCase
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders.models import Configuration, Order, OrderKind, OrderStatus
from apps.orders.services import snapshot
from apps.scheduler.models import (
    Image,
    ImageState,
    Slot,
    Task,
    TaskEvent,
    TaskKind,
    TaskStatus,
    Warehouse,
    Worker,
)
from apps.scheduler.services.workers import register_worker
from apps.scheduler.testing import ZIM, CommittingAPIClient, World, api

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SHA_IMG = "1" * 64
SHA_BMAP = "2" * 64
CALLERS = (
    "anonymous",
    "admin",
    "manager",
    "client",
    "stranger",  # another client
    "creator",
    "downloader",  # a downloader account of its own, on host-2
    "writer",  # the writer host's account: its downloader and writer, on host-1
    "warehouse",  # owns the warehouse "main"
    "annex",  # another warehouse account, owns "annex"
)
STAFF = ("admin", "manager")
CUSTOMERS = (*STAFF, "client")
WORKERS = ("creator", "downloader", "writer")


class Cast:
    """One account per caller, with the workers and warehouses they own."""

    def __init__(self):
        self.world = world = World(slots=("slot-1", "slot-2"))
        self.users = {
            "admin": make_user(Role.ADMIN, "admin"),
            "manager": world.manager,
            "client": world.client,
            "stranger": make_user(Role.CLIENT, "stranger", email="eve@example.org"),
            "creator": world.creator_account,
            "downloader": make_user(Role.DOWNLOADER, "downloader"),
            "writer": world.host_account,
            "warehouse": world.warehouse_account,
            "annex": make_user(Role.WAREHOUSE, "annex"),
        }
        self.workers = {
            "creator": world.creator,
            "downloader": register_worker(
                account=self.users["downloader"], kind="downloader", host="host-2"
            ),
            "writer": world.writer,
        }
        self.main = world.warehouse
        self.annex = Warehouse.objects.create(
            name="annex",
            account=self.users["annex"],
            ftp_url="ftp://127.0.0.1:2122",
            capacity_bytes=10**9,
            free_bytes=10**9,
        )

    def client_for(self, caller: str):
        if caller == "anonymous":
            return CommittingAPIClient()
        return api(self.users[caller])


# Builders of fresh subjects, straight into the database.


def new_config(cast: Cast, owner: str = "client") -> Configuration:
    return Configuration.objects.create(
        owner=cast.users[owner],
        name=f"Kit {uuid4().hex[:8]}",
        ssid="Kiwix",
        language="fr",
        timezone="Europe/Paris",
        admin_password="hotspot-admin-pw",
        contents=[dict(ZIM)],
    )


def new_order(cast: Cast, owner: str = "client", status=OrderStatus.PENDING) -> Order:
    config = new_config(cast, owner)
    return Order.objects.create(
        owner=config.owner,
        configuration=config,
        config=snapshot(config),
        kind=OrderKind.PHYSICAL,
        card_size_gb=8,
        content_bytes=config.total_size,
        recipient_name="Ada School",
        recipient_email="ada@example.org",
        shipping_address="1 rue de l'Ecole, Paris",
        status=status,
    )


def new_image(cast: Cast, order: Order, state=ImageState.VERIFIED) -> Image:
    name = uuid4().hex
    return Image.objects.create(
        order=order,
        warehouse=cast.main,
        file_name=f"{name}.img",
        size=5 * 10**9,
        sha256=SHA_IMG,
        bmap_name=f"{name}.bmap",
        bmap_size=2000,
        bmap_sha256=SHA_BMAP,
        state=state,
    )


ORDER_STATUS_OF_TASK = {
    TaskKind.CREATE: OrderStatus.BUILDING,
    TaskKind.DOWNLOAD: OrderStatus.BUILT,
    TaskKind.WRITE: OrderStatus.WRITING,
}


def new_task(cast: Cast, kind: str, holder: Worker | None = None) -> Task:
    """A task of ``kind``, pending, or leased by ``holder`` when given."""
    order = new_order(cast, status=ORDER_STATUS_OF_TASK[kind])
    fields: dict = {"order": order, "kind": kind}
    if kind == TaskKind.CREATE:
        fields["warehouse"] = cast.main
    else:
        fields["image"] = new_image(cast, order)
    if kind == TaskKind.WRITE:
        fields.update(host="host-1", copy_number=1)
    if holder is not None:
        now = timezone.now()
        fields.update(
            status=TaskStatus.LEASED,
            lease_id=uuid4(),
            lease_expires_at=now + timedelta(minutes=2),
            worker=holder,
            started_at=now,
        )
        if kind != TaskKind.CREATE:
            fields["host"] = holder.host
    return Task.objects.create(**fields)


def held_write(cast, caller):
    return new_task(cast, TaskKind.WRITE, cast.workers["writer"])


def held_create(cast, caller):
    return new_task(cast, TaskKind.CREATE, cast.workers["creator"])


def held_create_with_logo(cast, caller):
    task = held_create(cast, caller)
    name = default_storage.save(f"branding/{uuid4().hex}.png", ContentFile(PNG))
    Order.objects.filter(pk=task.order_id).update(
        config={**task.order.config, "branding": {"logo": name, "favicon": None}}
    )
    return task


def pending_of_each_kind(cast, caller):
    return [new_task(cast, kind) for kind in TaskKind.values]


def one_task_per_holder(cast, caller):
    return [
        held_write(cast, caller),
        held_create(cast, caller),
        new_task(cast, TaskKind.DOWNLOAD, cast.workers["downloader"]),
        new_task(cast, TaskKind.WRITE),
    ]


# What the checks read back.


def ids(response) -> set[str]:
    data = response.json()
    rows = data["results"] if isinstance(data, dict) else data
    return {str(row["id"]) for row in rows}


def pks(queryset) -> set[str]:
    return {str(pk) for pk in queryset.values_list("pk", flat=True)}


def fresh(obj, *fields):
    row = type(obj).objects.filter(pk=obj.pk).values(*fields).first()
    return None if row is None else tuple(row[field] for field in fields)


def held_tasks():
    return sorted(
        Task.objects.filter(status__in=TaskStatus.HELD).values_list("pk", "worker_id")
    )


def owned_or_all(model, cast, caller):
    """What a list shows: the caller's own rows, or every row for staff."""
    if caller in STAFF:
        return pks(model.objects.all())
    return pks(model.objects.filter(owner=cast.users[caller]))


def sees_own(model):
    def check(test, cast, subject, caller, response):
        test.assertEqual(ids(response), owned_or_all(model, cast, caller))
        test.assertTrue(ids(response), "the list should not be empty")

    return check


def sees_held_or_all(test, cast, subject, caller, response):
    if caller in STAFF:
        expected = pks(Task.objects.all())
    else:
        expected = pks(
            Task.objects.filter(
                worker__account=cast.users[caller], status__in=TaskStatus.HELD
            )
        )
    test.assertEqual(ids(response), expected)


def sees_own_workers(test, cast, subject, caller, response):
    workers = Worker.objects.all()
    if caller not in STAFF:
        workers = workers.filter(account=cast.users[caller])
    test.assertEqual(ids(response), pks(workers))
    test.assertTrue(ids(response))


def answers_subject(test, cast, subject, caller, response):
    test.assertEqual(str(response.json()["id"]), str(subject.pk))


def created_for_caller(model, **fields):
    def check(test, cast, subject, caller, response):
        row = model.objects.get(pk=response.json()["id"])
        test.assertEqual(row.owner, cast.users[caller])
        for name, value in fields.items():
            test.assertEqual(getattr(row, name), value)

    return check


def state_is(**expected):
    """A check that the subject's row now has ``expected`` values."""

    def check(test, cast, subject, caller, response):
        row = type(subject).objects.get(pk=subject.pk)
        for name, value in expected.items():
            test.assertEqual(getattr(row, name), value, name)

    return check


def nothing(cast, subject):
    return None


def no_check(test, cast, subject, caller, response):
    pass


def config_body(cast, subject, caller):
    return {
        "name": f"Kit of {caller}",
        "ssid": "Kiwix",
        "language": "fr",
        "timezone": "Europe/Paris",
        "admin_password": "hotspot-admin-pw",
        "contents": [ZIM],
    }


def order_body(cast, subject, caller):
    return {
        "configuration": str(subject.pk),
        "card_size_gb": 8,
        "quantity": 2,
        "recipient_name": "Ada School",
        "recipient_email": "ada@example.org",
        "shipping_address": "1 rue de l'Ecole, Paris",
    }


def own_worker(cast, caller) -> Worker:
    return cast.workers.get(caller, cast.workers["writer"])


def claim_body(cast, subject, caller):
    return {
        "worker": str(own_worker(cast, caller).pk),
        "free_disk": 10**11,
        "slot": "slot-1",
        "card_capacity": 7_900_000_000,
    }


def claim_with_another_accounts_worker(cast, subject, caller):
    other = "creator" if caller != "creator" else "writer"
    return claim_body(cast, subject, other)


def claimed_by_caller(test, cast, subject, caller, response):
    claimed = response.json()["task"]
    test.assertIsNotNone(claimed, response.json()["reason"])
    task = Task.objects.get(pk=claimed["id"])
    test.assertEqual(task.status, TaskStatus.LEASED)
    test.assertEqual(task.worker, own_worker(cast, caller))
    test.assertEqual(str(task.lease_id), claimed["lease_id"])


def register_body(cast, subject, caller):
    kind = caller if caller in WORKERS else "writer"
    return {"kind": kind, "host": f"new-{caller}", "version": "1.0"}


def registered(test, cast, subject, caller, response):
    worker = Worker.objects.get(pk=response.json()["id"])
    test.assertEqual(
        (worker.account, worker.kind, worker.host),
        (cast.users[caller], caller, f"new-{caller}"),
    )


def lease(task, **data):
    return {"lease_id": str(task.lease_id), **data}


def task_state(task):
    fields = ("status", "lease_id", "lease_expires_at", "percent", "phase", "log_tail")
    return (*fresh(task, *fields), TaskEvent.objects.filter(task=task).count())


def order_state(order):
    tasks = sorted(
        Task.objects.filter(order=order).values_list("status", "cancel_requested")
    )
    return (*fresh(order, "status", "shipment_tracking"), tasks)


def renewed(test, cast, subject, caller, response):
    task = Task.objects.get(pk=subject.pk)
    test.assertEqual(task.percent, 40)
    test.assertGreater(task.lease_expires_at, subject.lease_expires_at)
    test.assertIs(response.json()["cancel"], False)


def image_body(cast, subject, caller):
    return lease(
        subject,
        file_name="image.img",
        size=5 * 10**9,
        sha256=SHA_IMG,
        bmap_name="image.bmap",
        bmap_size=2000,
        bmap_sha256=SHA_BMAP,
    )


def image_declared(test, cast, subject, caller, response):
    image = Image.objects.get(order=subject.order)
    test.assertEqual((image.file_name, image.state), ("image.img", "uploading"))
    test.assertEqual(Task.objects.get(pk=subject.pk).image, image)


def main_state(cast, subject):
    return fresh(cast.main, "free_bytes", "account_id")


def uploading_image(cast, caller):
    return new_image(cast, new_order(cast, status=OrderStatus.BUILDING), "uploading")


def deletable_image(cast, caller):
    return new_image(cast, new_order(cast, status=OrderStatus.CANCELED), "deletable")


def own_deletions(test, cast, subject, caller, response):
    warehouse = Warehouse.objects.get(account=cast.users[caller])
    expected = pks(Image.objects.filter(warehouse=warehouse, state="deletable"))
    test.assertEqual(ids(response), expected)
    test.assertEqual(str(subject.pk) in ids(response), warehouse == cast.main)


@dataclass(frozen=True)
class Row:
    """One endpoint scenario: who passes with which status, and what it changes."""

    name: str  # the URL's name, e.g. "order-ship"
    method: str
    says: str  # the test's name, a sentence
    allowed: dict[str, int]  # callers that pass the permission; others get 403
    arrange: Callable[[Cast, str], Any]  # a fresh subject for one caller
    url: Callable[[Any], str]
    body: Callable[[Cast, Any, str], dict] | None = None
    state: Callable[[Cast, Any], Any] = nothing  # must not change when refused
    check: Callable = no_check  # what an allowed call must have done

    def expected(self, caller: str) -> int:
        return 401 if caller == "anonymous" else self.allowed.get(caller, 403)


def ok(*callers, status=200) -> dict[str, int]:
    return dict.fromkeys(callers, status)


def none(cast, caller):
    return None


def subject_of(factory):
    return lambda cast, caller: factory(cast)


V1 = "/api/v1"
TABLE = [
    # Configurations: customers, each on their own.
    Row(
        "configuration-list",
        "get",
        "clients list only their own configurations and staff list all",
        ok(*CUSTOMERS, "stranger"),
        lambda c, _: [new_config(c, "client"), new_config(c, "stranger")],
        lambda s: f"{V1}/configurations/?limit=1000",
        check=sees_own(Configuration),
    ),
    Row(
        "configuration-list",
        "post",
        "customers create configurations they own",
        ok(*CUSTOMERS, "stranger", status=201),
        none,
        lambda s: f"{V1}/configurations/",
        config_body,
        lambda c, s: Configuration.objects.count(),
        created_for_caller(Configuration, ssid="Kiwix"),
    ),
    Row(
        "configuration-detail",
        "get",
        "a configuration is shown to its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        subject_of(new_config),
        lambda s: f"{V1}/configurations/{s.pk}/",
        check=answers_subject,
    ),
    Row(
        "configuration-detail",
        "patch",
        "a configuration is changed by its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        subject_of(new_config),
        lambda s: f"{V1}/configurations/{s.pk}/",
        lambda c, s, _: {"ssid": "Renamed"},
        lambda c, s: fresh(s, "ssid"),
        state_is(ssid="Renamed"),
    ),
    Row(
        "configuration-detail",
        "delete",
        "a configuration is deleted by its owner and staff only",
        {**ok(*CUSTOMERS, status=204), "stranger": 404},
        subject_of(new_config),
        lambda s: f"{V1}/configurations/{s.pk}/",
        state=lambda c, s: fresh(s, "pk"),
        check=lambda t, c, s, _, r: t.assertFalse(
            Configuration.objects.filter(pk=s.pk).exists()
        ),
    ),
    # Orders: placed and canceled by customers, shipped by staff.
    Row(
        "order-list",
        "get",
        "clients list only their own orders and staff list all",
        ok(*CUSTOMERS, "stranger"),
        lambda c, _: [new_order(c, "client"), new_order(c, "stranger")],
        lambda s: f"{V1}/orders/?limit=1000",
        check=sees_own(Order),
    ),
    Row(
        "order-list",
        "post",
        "customers order from their own configurations only",
        {**ok(*CUSTOMERS, status=201), "stranger": 400},
        subject_of(new_config),
        lambda s: f"{V1}/orders/",
        order_body,
        lambda c, s: Order.objects.filter(configuration=s).count(),
        created_for_caller(Order, status="pending", quantity=2),
    ),
    Row(
        "order-detail",
        "get",
        "an order is shown to its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        subject_of(new_order),
        lambda s: f"{V1}/orders/{s.pk}/",
        check=answers_subject,
    ),
    Row(
        "order-cancel",
        "post",
        "an order is canceled by its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        lambda c, _: new_task(c, TaskKind.CREATE).order,
        lambda s: f"{V1}/orders/{s.pk}/cancel/",
        lambda c, s, _: {"reason": "changed my mind"},
        lambda c, s: order_state(s),
        lambda t, c, s, _, r: t.assertEqual(
            order_state(s), ("canceled", "", [("canceled", False)])
        ),
    ),
    Row(
        "order-ship",
        "post",
        "only staff ship a written order, not even its client",
        ok(*STAFF),
        lambda c, _: new_order(c, status=OrderStatus.PENDING_SHIPMENT),
        lambda s: f"{V1}/orders/{s.pk}/ship/",
        lambda c, s, _: {"carrier": "La Poste", "tracking": "LP1"},
        lambda c, s: order_state(s),
        state_is(status="shipped", shipment_tracking="LP1"),
    ),
    # Workers: register and report themselves; staff and workers list them.
    Row(
        "worker-list",
        "get",
        "workers list only their own workers and staff list all",
        ok(*STAFF, *WORKERS),
        none,
        lambda s: f"{V1}/workers/",
        check=sees_own_workers,
    ),
    Row(
        "worker-detail",
        "get",
        "a worker is shown to its account and staff only",
        {**ok(*STAFF, "writer"), "creator": 404, "downloader": 404},
        lambda c, _: c.workers["writer"],
        lambda s: f"{V1}/workers/{s.pk}/",
        check=answers_subject,
    ),
    Row(
        "worker-register",
        "post",
        "worker accounts register workers of their own kind",
        ok(*WORKERS),
        none,
        lambda s: f"{V1}/workers/register/",
        register_body,
        lambda c, s: pks(Worker.objects.all()),
        registered,
    ),
    Row(
        "worker-heartbeat",
        "post",
        "the heartbeat of a worker comes from its own account only",
        {"writer": 200, "creator": 404, "downloader": 404},
        lambda c, _: c.workers["writer"],
        lambda s: f"{V1}/workers/{s.pk}/heartbeat/",
        lambda c, s, _: {"capabilities": {"free_disk": 42}},
        lambda c, s: fresh(s, "capabilities"),
        state_is(capabilities={"free_disk": 42}),
    ),
    Row(
        "worker-keep",
        "get",
        "the images a host must keep are told to its own account only",
        {"writer": 200, "creator": 404, "downloader": 404},
        held_write,
        lambda s: f"{V1}/workers/{s.worker_id}/keep/",
        check=lambda t, c, s, _, r: t.assertIn(str(s.order_id), r.json()["orders"]),
    ),
    Row(
        "worker-slot",
        "post",
        "a slot is reported by the account of its writer only",
        {"writer": 200, "creator": 404, "downloader": 404},
        lambda c, _: Slot.objects.get(worker=c.workers["writer"], name="slot-1"),
        lambda s: f"{V1}/workers/{s.worker_id}/slots/{s.name}/",
        lambda c, s, _: {"state": "card_present", "card_capacity": 8 * 10**9},
        lambda c, s: fresh(s, "state", "card_capacity"),
        state_is(state="card_present", card_capacity=8 * 10**9),
    ),
    # Tasks: workers act on what they hold, with their lease; staff watch.
    Row(
        "task-list",
        "get",
        "workers list only the tasks they hold and staff list all",
        ok(*STAFF, *WORKERS),
        one_task_per_holder,
        lambda s: f"{V1}/tasks/?limit=1000",
        check=sees_held_or_all,
    ),
    Row(
        "task-detail",
        "get",
        "a task is shown to the account holding it and staff only",
        {**ok(*STAFF, "writer"), "creator": 404, "downloader": 404},
        held_write,
        lambda s: f"{V1}/tasks/{s.pk}/",
        check=answers_subject,
    ),
    Row(
        "task-claim",
        "post",
        "worker accounts claim a task of their kind and nobody else leases one",
        ok(*WORKERS),
        pending_of_each_kind,
        lambda s: f"{V1}/tasks/claim/",
        claim_body,
        lambda c, s: held_tasks(),
        claimed_by_caller,
    ),
    Row(
        "task-claim",
        "post",
        "a worker account cannot claim with a worker of another account",
        ok(*WORKERS, status=400),
        pending_of_each_kind,
        lambda s: f"{V1}/tasks/claim/",
        claim_with_another_accounts_worker,
        lambda c, s: held_tasks(),
    ),
    Row(
        "task-renew",
        "post",
        "a write lease is renewed by its writer only",
        {"writer": 200, "creator": 404, "downloader": 404},
        held_write,
        lambda s: f"{V1}/tasks/{s.pk}/renew/",
        lambda c, s, _: lease(s, percent=40),
        lambda c, s: task_state(s),
        renewed,
    ),
    Row(
        "task-renew",
        "post",
        "a download lease is not renewed by another downloader account",
        {"writer": 200, "creator": 404, "downloader": 409},
        lambda c, _: new_task(c, TaskKind.DOWNLOAD, c.world.downloader),
        lambda s: f"{V1}/tasks/{s.pk}/renew/",
        lambda c, s, _: lease(s, percent=40),
        lambda c, s: task_state(s),
        renewed,
    ),
    Row(
        "task-events",
        "post",
        "events of a task come from its lease holder only",
        {"writer": 200, "creator": 404, "downloader": 404},
        held_write,
        lambda s: f"{V1}/tasks/{s.pk}/events/",
        lambda c, s, _: lease(
            s, event_id=str(uuid4()), type="progress", phase="writing", percent=50
        ),
        lambda c, s: task_state(s),
        state_is(status="running", phase="writing", percent=50),
    ),
    Row(
        "task-log",
        "post",
        "the log of a task comes from its lease holder only",
        {"writer": 200, "creator": 404, "downloader": 404},
        held_write,
        lambda s: f"{V1}/tasks/{s.pk}/log/",
        lambda c, s, _: lease(s, text="dd: 50%\n"),
        lambda c, s: task_state(s),
        state_is(log_tail="dd: 50%\n"),
    ),
    Row(
        "task-image",
        "post",
        "an image is declared by the creator holding the build only",
        {"creator": 200, "writer": 404, "downloader": 404},
        held_create,
        lambda s: f"{V1}/tasks/{s.pk}/image/",
        image_body,
        lambda c, s: pks(Image.objects.filter(order=s.order)),
        image_declared,
    ),
    Row(
        "task-download-info",
        "get",
        "where to download an image is told to its holder and staff only",
        {**ok(*STAFF, "writer"), "creator": 404, "downloader": 404},
        held_write,
        lambda s: f"{V1}/tasks/{s.pk}/download-info/",
        check=lambda t, c, s, _, r: t.assertEqual(
            (r.json()["path"], r.json()["ftp_url"]),
            (s.image.path, "ftp://127.0.0.1:2121"),
        ),
    ),
    Row(
        "task-branding",
        "get",
        "the branding of a build is sent to the creator holding it only",
        {"creator": 200, "writer": 404, "downloader": 404},
        held_create_with_logo,
        lambda s: f"{V1}/tasks/{s.pk}/branding/logo/",
        check=lambda t, c, s, _, r: t.assertEqual(b"".join(r.streaming_content), PNG),
    ),
    Row(
        "task-diagnose",
        "get",
        "only staff ask why a task is not running",
        ok(*STAFF),
        lambda c, _: new_task(c, TaskKind.WRITE),
        lambda s: f"{V1}/tasks/{s.pk}/diagnose/",
        check=lambda t, c, s, _, r: t.assertEqual(
            (r.json()["task"], r.json()["running"]), (str(s.pk), False)
        ),
    ),
    # Slots and warehouses.
    Row(
        "slot-list",
        "get",
        "only staff list the slots",
        ok(*STAFF),
        none,
        lambda s: f"{V1}/slots/",
        check=lambda t, c, s, _, r: t.assertEqual(ids(r), pks(Slot.objects.all())),
    ),
    Row(
        "warehouse-list",
        "get",
        "staff and workers list the warehouses",
        ok(*STAFF, *WORKERS),
        none,
        lambda s: f"{V1}/warehouses/",
        check=lambda t, c, s, _, r: t.assertEqual(ids(r), pks(Warehouse.objects.all())),
    ),
    Row(
        "warehouse-heartbeat",
        "post",
        "the heartbeat of a warehouse comes from its own account only",
        {"warehouse": 200, "annex": 403},
        none,
        lambda s: f"{V1}/warehouses/heartbeat/",
        lambda c, s, _: {
            "name": "main",
            "ftp_url": "ftp://127.0.0.1:2121",
            "capacity_bytes": 10**12,
            "free_bytes": 12345,
        },
        main_state,
        lambda t, c, s, _, r: t.assertEqual(
            main_state(c, s), (12345, c.users["warehouse"].pk)
        ),
    ),
    Row(
        "warehouse-received",
        "post",
        "a received file is reported by its own warehouse only",
        {"warehouse": 200, "annex": 409},
        uploading_image,
        lambda s: f"{V1}/warehouses/received/",
        lambda c, s, _: {"path": s.path, "size": s.size, "sha256": SHA_IMG},
        lambda c, s: fresh(s, "state", "received_sha256"),
        state_is(received_sha256=SHA_IMG),
    ),
    Row(
        "warehouse-deletions",
        "get",
        "a warehouse lists only its own images to delete",
        ok("warehouse", "annex"),
        deletable_image,
        lambda s: f"{V1}/warehouses/deletions/",
        check=own_deletions,
    ),
    Row(
        "warehouse-deleted",
        "post",
        "a warehouse marks only its own images deleted",
        {"warehouse": 200, "annex": 400},
        deletable_image,
        lambda s: f"{V1}/warehouses/deletions/{s.pk}/",
        state=lambda c, s: fresh(s, "state"),
        check=state_is(state="deleted"),
    ),
]


class PermissionMatrixTests(TestCase):
    """One generated test per table row (see ``_add_row_tests`` below)."""

    def setUp(self):
        self.cast = Cast()

    def assert_row(self, row: Row):
        for caller in CALLERS:
            with self.subTest(caller=caller):
                subject = row.arrange(self.cast, caller)
                before = row.state(self.cast, subject)
                body = row.body(self.cast, subject, caller) if row.body else None
                request = getattr(self.cast.client_for(caller), row.method)
                response = request(row.url(subject), body, format="json")
                expected = row.expected(caller)
                shown = "(a file)" if response.streaming else response.content
                self.assertEqual(response.status_code, expected, shown)
                if expected < 300:
                    row.check(self, self.cast, subject, caller, response)
                else:
                    self.assertEqual(row.state(self.cast, subject), before)

    def test_every_endpoint_of_the_orders_and_scheduler_apps_is_in_the_table(self):
        table = {(row.name, row.method) for row in TABLE}
        served = served_endpoints()
        self.assertEqual(served - table, set(), "add these endpoints to TABLE")
        self.assertEqual(table - served, set(), "these rows name no endpoint")


def _row_test(row: Row):
    def test(self):
        self.assert_row(row)

    test.__doc__ = f"{row.method.upper()} {row.name}: {row.says}."
    return test


def _add_row_tests():
    for row in TABLE:
        name = "test_" + re.sub(r"\W+", "_", row.says.lower()).strip("_")
        assert not hasattr(PermissionMatrixTests, name), f"two rows say {row.says!r}"
        test = _row_test(row)
        test.__name__ = name
        setattr(PermissionMatrixTests, name, test)


_add_row_tests()

APPS = ("apps.orders.", "apps.scheduler.")
METHODS = {"get", "post", "put", "patch", "delete"}


def served_endpoints() -> set[tuple[str, str]]:
    """(URL name, method) of every view of these apps under /api/v1/."""
    found = set()

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                view = getattr(pattern.callback, "cls", None)
                if view is None or not view.__module__.startswith(APPS):
                    continue
                actions = getattr(pattern.callback, "actions", None) or {
                    method: method for method in METHODS if hasattr(view, method)
                }
                for method in actions:
                    if method in METHODS and method in view.http_method_names:
                        found.add((pattern.name, method))

    walk(get_resolver().url_patterns, "")
    return found
