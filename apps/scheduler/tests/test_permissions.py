"""Who may call each endpoint of the orders and scheduler APIs, and what it changes.

One table row per endpoint scenario: the callers that pass and the status they get.
Anyone else gets 403, the anonymous caller 401. Every caller gets a fresh subject;
a refused call must leave the subject's database state as it was, an allowed one
must do what the endpoint promises. A last test fails when an endpoint of these
apps is missing from the table.
"""

import re
from uuid import uuid4

from django.test import TestCase
from django.urls import URLPattern, URLResolver, get_resolver

from apps.orders.models import Configuration, Order, OrderStatus
from apps.scheduler.models import (
    Image,
    Slot,
    TaskKind,
    Warehouse,
    Worker,
)
from apps.scheduler.tests.cast import (
    CALLERS,
    CUSTOMERS,
    SHA_IMG,
    STAFF,
    V1,
    WORKERS,
    Cast,
    Row,
    answers_recipe,
    answers_subject,
    built_download_order,
    claim_body,
    claim_with_another_accounts_worker,
    claimed_by_caller,
    config_body,
    created_for_caller,
    deletable_image,
    fresh,
    gives_download_links,
    held_create,
    held_tasks,
    held_write,
    ids,
    image_body,
    image_declared,
    lease,
    main_state,
    new_config,
    new_order,
    new_task,
    none,
    ok,
    one_task_per_holder,
    order_body,
    order_state,
    own_deletions,
    pending_of_each_kind,
    pks,
    previews_recipe,
    register_body,
    registered,
    renewed,
    sees_held_or_all,
    sees_own,
    sees_own_workers,
    state_is,
    subject_of,
    task_state,
    uploading_image,
)

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
        "configuration-recipe",
        "get",
        "a configuration's rendered recipe is previewed by its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        subject_of(new_config),
        lambda s: f"{V1}/configurations/{s.pk}/recipe/",
        check=previews_recipe,
    ),
    Row(
        "configuration-detail",
        "patch",
        "a configuration is changed by its owner only: staff read it (403)",
        {**ok("client"), **ok(*STAFF, status=403), "stranger": 404},
        subject_of(new_config),
        lambda s: f"{V1}/configurations/{s.pk}/",
        lambda c, s, _: {"ssid": "Renamed"},
        lambda c, s: fresh(s, "ssid"),
        state_is(ssid="Renamed"),
    ),
    Row(
        "configuration-detail",
        "delete",
        "a configuration is deleted by its owner only: staff read it (403)",
        {**ok("client", status=204), **ok(*STAFF, status=403), "stranger": 404},
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
        "order-recipe",
        "get",
        "an order's frozen recipe is downloaded by its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        subject_of(new_order),
        lambda s: f"{V1}/orders/{s.pk}/recipe/",
        check=answers_recipe,
    ),
    Row(
        "order-download",
        "get",
        "a download order's links are made for its owner and staff only",
        {**ok(*CUSTOMERS), "stranger": 404},
        subject_of(built_download_order),
        lambda s: f"{V1}/orders/{s.pk}/download/",
        check=gives_download_links,
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
        "task-recipe",
        "get",
        "a build's recipe is sent to the creator holding it only",
        {"creator": 200, "writer": 404, "downloader": 404},
        held_create,
        lambda s: f"{V1}/tasks/{s.pk}/recipe/",
        check=lambda t, c, s, _, r: t.assertEqual(
            (r.json()["recipe"], r["Cache-Control"]), (s.order.recipe, "no-store")
        ),
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
