"""Claim and list endpoints cost the same number of queries with 10 rows as with
1,000: nothing is loaded once per row (no N+1)."""

from uuid import uuid4

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.orders.models import Configuration, Order, OrderKind, OrderStatus
from apps.scheduler import testing
from apps.scheduler.models import (
    Image,
    ImageState,
    Slot,
    Task,
    TaskKind,
    TaskStatus,
    Worker,
)
from apps.scheduler.testing import ZIM, World, api

FEW, MANY = 10, 1000
PAGE = 500  # the largest page the API serves
ALL = f"?limit={PAGE}"  # the largest page: 500 rows serialized against 10


class QueryCountTestCase(TestCase):
    def setUp(self):
        self.world = World(slots=("slot-1", "slot-2"))
        self.config = Configuration.objects.create(
            owner=self.world.client,
            name="School kit",
            ssid="Kiwix",
            admin_password="hotspot-admin-pw",
            contents=[dict(ZIM)],
        )

    def orders(self, n, status=OrderStatus.PENDING, **fields) -> list[Order]:
        return Order.objects.bulk_create(
            [
                Order(
                    owner=self.world.client,
                    configuration=self.config,
                    config=self.config.snapshot(),
                    card_size_gb=8,
                    content_bytes=self.config.total_size,
                    recipient_name="Ada School",
                    recipient_email="ada@example.org",
                    shipping_address="1 rue de l'Ecole",
                    status=status,
                    **fields,
                )
                for _ in range(n)
            ]
        )

    def images(self, orders) -> list[Image]:
        return Image.objects.bulk_create(
            [
                Image(
                    order=order,
                    warehouse=self.world.warehouse,
                    file_name=f"{order.pk}.img",
                    size=5 * 10**9,
                    sha256="1" * 64,
                    bmap_name=f"{order.pk}.bmap",
                    bmap_size=2000,
                    bmap_sha256="2" * 64,
                    state=ImageState.VERIFIED,
                )
                for order in orders
            ]
        )

    def tasks(self, n, kind, **fields) -> list[Task]:
        """``n`` pending tasks of ``kind``, one order each, ready to be claimed."""
        status = {
            TaskKind.CREATE: OrderStatus.PENDING,
            TaskKind.DOWNLOAD: OrderStatus.BUILT,
            TaskKind.WRITE: OrderStatus.BUILT,
        }[kind]
        orders = self.orders(n, status=status)
        images = self.images(orders) if kind != TaskKind.CREATE else [None] * n
        if kind == TaskKind.WRITE:
            fields.update(host="host-1", copy_number=1)
        return Task.objects.bulk_create(
            [
                Task(order=order, kind=kind, image=image, **fields)
                for order, image in zip(orders, images, strict=True)
            ]
        )

    def queries(self, request, expect=200) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = request()
        self.assertEqual(response.status_code, expect, response.content)
        return len(captured)

    def assert_constant(self, grow, *requests, expect=200) -> list:
        """Each request costs as many queries after ``grow`` (FEW to MANY rows);
        returns the answers with MANY rows."""
        for request in requests:
            request()  # warm-up: the process's caches are not the endpoint's cost
        few = [self.queries(request, expect) for request in requests]
        grow()
        answers = []
        for request, count in zip(requests, few, strict=True):
            with self.assertNumQueries(count):
                answers.append(request())
            self.assertEqual(answers[-1].status_code, expect, answers[-1].content)
        return answers


class ClaimQueryTests(QueryCountTestCase):
    def claim(self, account, worker, **extra):
        client = api(account)

        def request():
            response = client.post(
                "/api/v1/tasks/claim/",
                {"worker": str(worker.pk), "free_disk": 10**11, **extra},
                format="json",
            )
            self.assertIsNotNone(response.json()["task"], response.content)
            return response

        return request

    def test_claiming_a_create_task_costs_the_same_among_1000_as_among_10(self):
        self.tasks(FEW + 2, TaskKind.CREATE)
        request = self.claim(self.world.creator_account, self.world.creator)
        self.assert_constant(lambda: self.tasks(MANY - FEW, TaskKind.CREATE), request)
        self.assertEqual(Task.objects.filter(status=TaskStatus.LEASED).count(), 3)

    def test_claiming_a_download_task_costs_the_same_among_1000_as_among_10(self):
        self.tasks(FEW + 2, TaskKind.DOWNLOAD)
        request = self.claim(self.world.host_account, self.world.downloader)
        self.assert_constant(lambda: self.tasks(MANY - FEW, TaskKind.DOWNLOAD), request)
        self.assertEqual(Task.objects.filter(status=TaskStatus.LEASED).count(), 3)

    def test_claiming_a_write_task_costs_the_same_among_1000_as_among_10(self):
        self.tasks(FEW + 2, TaskKind.WRITE)
        request = self.claim(
            self.world.host_account,
            self.world.writer,
            slot="slot-1",
            card_capacity=7_900_000_000,
        )
        self.assert_constant(lambda: self.tasks(MANY - FEW, TaskKind.WRITE), request)
        self.assertEqual(Task.objects.filter(status=TaskStatus.LEASED).count(), 3)


class ListQueryTests(QueryCountTestCase):
    def get(self, account, url):
        client = api(account)
        return lambda: client.get(url)

    def test_listing_tasks_costs_the_same_for_1000_as_for_10(self):
        writer = self.world.writer
        slot = Slot.objects.filter(worker=writer).first()

        def grow(n):
            # Every relation the list shows is set: order, worker, slot, image.
            self.tasks(
                n,
                TaskKind.WRITE,
                status=TaskStatus.LEASED,
                worker=writer,
                slot=slot,
                lease_id=uuid4(),
                lease_expires_at=timezone.now(),
            )

        grow(FEW)
        # Managers see every task; the writer host's account the ones it holds.
        requests = [
            self.get(account, f"/api/v1/tasks/{ALL}")
            for account in (self.world.manager, self.world.host_account)
        ]
        for answer in self.assert_constant(lambda: grow(MANY - FEW), *requests):
            self.assertEqual(len(answer.json()["results"]), PAGE)

    def test_listing_orders_costs_the_same_for_1000_as_for_10(self):
        def grow(n):
            self.orders(n // 2)
            downloads = self.orders(
                n - n // 2, status=OrderStatus.BUILT, kind=OrderKind.DOWNLOAD
            )
            for order, image in zip(downloads, self.images(downloads), strict=True):
                order.image = image
            Order.objects.bulk_update(downloads, ["image"])

        grow(FEW)
        requests = [
            self.get(account, f"/api/v1/orders/{ALL}")
            for account in (self.world.manager, self.world.client)
        ]
        for answer in self.assert_constant(lambda: grow(MANY - FEW), *requests):
            rows = answer.json()["results"]
            self.assertEqual(len(rows), PAGE)
            self.assertTrue(any(row["download_url"] for row in rows))

    def test_listing_workers_costs_the_same_for_1000_as_for_10(self):
        def grow(n):
            start = Worker.objects.count()
            workers = Worker.objects.bulk_create(
                [
                    Worker(
                        account=self.world.host_account,
                        kind="writer",
                        host=f"host-{start + i}",
                    )
                    for i in range(n)
                ]
            )
            Slot.objects.bulk_create(
                [
                    Slot(worker=worker, name=name, device_path=f"/dev/{name}")
                    for worker in workers
                    for name in ("slot-1", "slot-2")
                ]
            )

        grow(FEW)
        request = self.get(self.world.manager, f"/api/v1/workers/{ALL}")
        [answer] = self.assert_constant(lambda: grow(MANY - FEW), request)
        rows = answer.json()["results"]
        self.assertEqual(len(rows), PAGE)
        self.assertEqual(rows[-1]["slots"][0]["host"], rows[-1]["host"])

    def test_listing_slots_costs_the_same_for_1000_as_for_10(self):
        task = self.tasks(1, TaskKind.WRITE)[0]

        def grow(n):
            start = Slot.objects.count()
            Slot.objects.bulk_create(
                [
                    Slot(
                        worker=self.world.writer,
                        name=f"extra-{start + i}",
                        device_path=f"/dev/extra-{start + i}",
                        task=task,
                    )
                    for i in range(n)
                ]
            )

        grow(FEW)
        request = self.get(self.world.manager, f"/api/v1/slots/{ALL}")
        [answer] = self.assert_constant(lambda: grow(MANY - FEW), request)
        self.assertEqual(len(answer.json()["results"]), PAGE)

    def test_listing_configurations_costs_the_same_for_1000_as_for_10(self):
        def grow(n):
            start = Configuration.objects.count()
            Configuration.objects.bulk_create(
                [
                    Configuration(
                        owner=self.world.client,
                        name=f"Kit {start + i}",
                        ssid="Kiwix",
                        admin_password="hotspot-admin-pw",
                        contents=[dict(ZIM)],
                    )
                    for i in range(n)
                ]
            )

        grow(FEW - 1)  # and the one of setUp
        requests = [
            self.get(account, f"/api/v1/configurations/{ALL}")
            for account in (self.world.manager, self.world.client)
        ]
        for answer in self.assert_constant(lambda: grow(MANY - FEW), *requests):
            self.assertEqual(len(answer.json()["results"]), PAGE)


class HotPathQueryTests(QueryCountTestCase):
    """The requests every worker sends most, with the process warm: it has met the
    worker and chosen a warehouse (bench/README.md, API)."""

    def test_a_build_claim_costs_six_queries_and_a_renewal_three(self):
        for _ in range(3):
            testing.order(self.world.client, self.config)
        client = api(self.world.creator_account)
        body = {"worker": str(self.world.creator.pk), "free_disk": 10**11}

        def claim():
            response = client.post("/api/v1/tasks/claim/", body, format="json")
            self.assertEqual(response.status_code, 200, response.content)
            return response.json()["task"]

        claim()
        # The user, the candidates, the lease, its event, the order's move and
        # the order's event.
        with self.assertNumQueries(6):
            task = claim()
        self.assertEqual(task["work"]["upload_folder"], f"orders/{task['order']}")
        self.assertEqual(
            Order.objects.get(pk=task["order"]).status, OrderStatus.BUILDING
        )
        # The user, the task, the fenced update.
        with self.assertNumQueries(3):
            renewed = client.post(
                f"/api/v1/tasks/{task['id']}/renew/",
                {"lease_id": task["lease_id"], "percent": 10},
                format="json",
            )
        self.assertEqual(renewed.status_code, 200, renewed.content)
        self.assertEqual(Task.objects.get(pk=task["id"]).percent, 10)
