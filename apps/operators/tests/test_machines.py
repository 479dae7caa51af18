"""Workers, warehouses and catalog sources for operators: who is online (the one
rule, leases included), since when the others are silent, what each worker holds,
each warehouse's free space, and since when a failing catalog keeps its last good
copy."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.catalog.models import CatalogSource
from apps.operators.tests.scene import PageTestCase
from apps.orders.models import OrderStatus
from apps.scheduler.models import Task, TaskKind, TaskStatus, Warehouse, Worker
from apps.scheduler.services.workers import register_worker

PAGE = reverse("ops:machines")


class MachinesTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()

    def rows(self, response) -> dict:
        return {f"{w.kind}@{w.host}": w for w in response.context["workers"]}

    def test_lists_every_worker_with_its_state_last_report_and_task(self):
        hour_ago = timezone.now() - timedelta(hours=1)
        Worker.objects.filter(pk=self.shop.creator.pk).update(
            last_seen=hour_ago, offline_since=hour_ago
        )
        order = self.shop.orders(1, OrderStatus.WRITING)[0]
        (copy,) = self.shop.writes(order)
        Task.objects.filter(pk=copy.pk).update(
            status=TaskStatus.RUNNING,
            worker=self.shop.writer,
            phase="verifying",
            percent=77,
            lease_expires_at=timezone.now() + timedelta(minutes=2),
        )
        response = self.client.get(PAGE)
        rows = self.rows(response)
        self.assertEqual(
            set(rows), {"creator@builder-1", "downloader@host-1", "writer@host-1"}
        )
        self.assertFalse(rows["creator@builder-1"].is_online)
        self.assertTrue(rows["writer@host-1"].is_online)
        self.assertEqual(rows["writer@host-1"].held[0]["percent"], 77)
        self.assertEqual(rows["downloader@host-1"].held, [])
        self.assertContains(
            response, 'data-worker="creator@builder-1" data-online="no"'
        )
        self.assertContains(response, "verifying 77%")
        self.assertContains(response, "93.1\xa0GB")  # the downloader's free disk

    def test_a_worker_silent_but_renewing_its_lease_is_online(self):
        order = self.shop.orders(1, OrderStatus.BUILDING)[0]
        task = Task.objects.create(
            order=order,
            kind=TaskKind.CREATE,
            status=TaskStatus.RUNNING,
            worker=self.shop.creator,
            lease_expires_at=timezone.now() + timedelta(minutes=1),
        )
        Worker.objects.filter(pk=self.shop.creator.pk).update(
            last_seen=timezone.now() - timedelta(hours=2)
        )
        rows = self.rows(self.client.get(PAGE))
        self.assertTrue(rows["creator@builder-1"].is_online)
        self.assertEqual(rows["creator@builder-1"].held[0]["id"], task.pk)

    def test_lists_the_warehouses_free_space_and_which_are_online(self):
        Warehouse.objects.create(
            name="old",
            account=self.shop.warehouse_account,
            ftp_url="ftp://old:2121",
            capacity_bytes=10**12,
            free_bytes=5 * 10**10,
            last_seen=timezone.now() - timedelta(days=1),
        )
        response = self.client.get(PAGE)
        self.assertContains(response, 'data-warehouse="main" data-online="yes"')
        self.assertContains(response, 'data-warehouse="old" data-online="no"')
        self.assertContains(response, "46.6\xa0GB free of 931.3\xa0GB")
        old = next(w for w in response.context["warehouses"] if w.name == "old")
        self.assertAlmostEqual(old.used_percent, 95.0)

    def test_a_failing_catalog_says_since_when_it_keeps_its_last_good_copy(self):
        now = timezone.now()
        CatalogSource.objects.create(
            url="https://library.kiwix.org",
            last_success_at=now - timedelta(hours=3),
            last_attempt_at=now,
            failing_since=now - timedelta(minutes=20),
            last_error="HTTP 503 from the server",
            entry_count=1234,
        )
        CatalogSource.objects.create(
            url="http://kiwix.lan", last_success_at=now, entry_count=5
        )
        response = self.client.get(PAGE)
        self.assertContains(response, 'data-failing="yes"', count=1)
        self.assertContains(
            response,
            "last refreshed 3\xa0hours ago; failing since 20\xa0minutes ago; the "
            "last attempt failed because: HTTP 503 from the server",
        )
        self.assertContains(response, "the catalog clients pick from is the last one")
        self.assertContains(response, "1234 entries")

    def test_the_page_costs_the_same_queries_for_three_workers_or_thirty(self):
        order = self.shop.orders(1, OrderStatus.WRITING)[0]
        Task.objects.create(
            order=order,
            kind=TaskKind.WRITE,
            status=TaskStatus.RUNNING,
            worker=self.shop.writer,
        )
        self.client.get(PAGE)
        with CaptureQueriesContext(connection) as few:
            self.client.get(PAGE)
        orders = self.shop.orders(9, OrderStatus.WRITING)
        for number in range(9):
            account = make_user(Role.WRITER, f"host-{number}-account")
            for kind in ("writer", "downloader", "writer"):
                worker = register_worker(
                    account=account, kind=kind, host=f"h{number}-{kind}-{len(kind)}"
                )
            Task.objects.create(
                order=orders[number],
                kind=TaskKind.WRITE,
                status=TaskStatus.RUNNING,
                worker=worker,
            )
        with self.assertNumQueries(len(few)):
            response = self.client.get(PAGE)
        self.assertGreater(len(response.context["workers"]), 20)
