"""The cast of the permission table (test_permissions.py): one account per caller,
the subjects each scenario acts on, request bodies and the checks of what changed."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import uuid4

from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders.models import Configuration, Order, OrderKind, OrderStatus
from apps.orders.testing import link_claims
from apps.scheduler.models import (
    Image,
    ImageState,
    Task,
    TaskEvent,
    TaskKind,
    TaskStatus,
    Warehouse,
    Worker,
)
from apps.scheduler.services.workers import register_worker
from apps.scheduler.testing import ZIM, CommittingAPIClient, World, api

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
    recipe = config.render()
    return Order.objects.create(
        owner=config.owner,
        configuration=config,
        config=config.snapshot(),
        recipe=recipe.text,
        image_bytes=recipe.min_size,
        kind=OrderKind.PHYSICAL,
        card_size_gb=8,
        content_bytes=config.total_size,
        recipient_name="Ada School",
        recipient_email="ada@example.org",
        shipping_address="1 rue de l'Ecole, Paris",
        status=status,
    )


def built_download_order(cast: Cast, owner: str = "client") -> Order:
    """A download order whose verified image waits in the main warehouse."""
    order = new_order(cast, owner, status=OrderStatus.BUILT)
    order.kind = OrderKind.DOWNLOAD
    order.image = new_image(cast, order)
    order.save(update_fields=["kind", "image"])
    return order


def gives_download_links(test, cast, subject, caller, response):
    """Links to the subject's files, signed for the caller, not to be cached."""
    data = response.json()
    image = subject.image
    test.assertEqual(response["Cache-Control"], "no-store")
    test.assertTrue(
        data["image_url"].startswith(f"http://127.0.0.1:8080/{image.path}?token=")
    )
    test.assertTrue(
        data["bmap_url"].startswith(f"http://127.0.0.1:8080/{image.bmap_path}?token=")
    )
    claims = link_claims(data["image_url"])
    test.assertEqual(
        (claims["order"], claims["files"], claims["user_id"]),
        (
            str(subject.pk),
            [image.file_name, image.bmap_name],
            str(cast.users[caller].pk),
        ),
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


def answers_recipe(test, cast, subject, caller, response):
    """The order's frozen YAML as a YAML download, kept out of caches."""
    test.assertEqual(response["Content-Type"], "application/yaml; charset=utf-8")
    test.assertEqual(response["Cache-Control"], "no-store")
    test.assertEqual(response.content.decode(), subject.recipe)
    test.assertIn("hotspot-admin-pw", subject.recipe)


def previews_recipe(test, cast, subject, caller, response):
    """The configuration rendered now, with its size and smallest card."""
    data = response.json()
    recipe = subject.render()
    test.assertEqual((data["recipe"], data["image_bytes"]), recipe)
    test.assertEqual(data["min_card_size_gb"], 8)


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
