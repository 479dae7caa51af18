"""Claims: every task goes to exactly one worker, however many ask at once."""

import threading
from collections import Counter

from django.db import connections
from django.test import TestCase, TransactionTestCase

from apps.orders.models import Order
from apps.scheduler.models import Task, TaskEvent, TaskKind, TaskStatus
from apps.scheduler.services.claims import claim_task
from apps.scheduler.services.workers import register_worker
from apps.scheduler.testing import World, order
from apps.scheduler.testing import image as make_image

TASKS = 200
CLAIMERS = 20


class ClaimRaceTests(TransactionTestCase):
    def setUp(self):
        self.world = World()
        template = order(self.world.client)
        # Bulk copies of a placed order, each with its pending create task.
        orders = [
            Order(
                owner=self.world.client,
                config=template.config,
                kind=template.kind,
                card_size_gb=template.card_size_gb,
                content_bytes=template.content_bytes,
                recipient_name="Ada",
                recipient_email="ada@example.org",
                shipping_address="Paris",
            )
            for _ in range(TASKS - 1)
        ]
        Order.objects.bulk_create(orders)
        Task.objects.bulk_create(
            [Task(order=o, kind=TaskKind.CREATE, max_attempts=3) for o in orders]
        )
        self.workers = [
            register_worker(
                account=self.world.creator_account, kind="creator", host=f"builder-{i}"
            )
            for i in range(CLAIMERS)
        ]

    def test_twenty_concurrent_claimers_take_each_of_200_tasks_exactly_once(self):
        claimed: list[tuple[str, str]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(CLAIMERS)

        def claimer(worker):
            try:
                start.wait()
                while True:
                    result = claim_task(worker=worker)
                    if result.task is None:
                        if "waiting" in result.reason:
                            return
                        continue  # others won this round; ask again
                    with lock:
                        claimed.append((str(result.task.pk), str(worker.pk)))
            except BaseException as exc:  # reported below, not lost in a thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=claimer, args=(w,)) for w in self.workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        self.assertEqual(errors, [])

        counts = Counter(task for task, _worker in claimed)
        self.assertEqual(len(counts), TASKS)
        self.assertEqual(max(counts.values()), 1)
        # The database agrees: each task leased once, to the worker that got it.
        self.assertEqual(Task.objects.filter(status=TaskStatus.LEASED).count(), TASKS)
        holders = {
            str(task): str(worker)
            for task, worker in Task.objects.values_list("pk", "worker_id")
        }
        for task, worker in claimed:
            self.assertEqual(holders[task], worker)
        claims = Counter(
            TaskEvent.objects.filter(type="claimed").values_list("task_id", flat=True)
        )
        self.assertEqual(set(claims.values()), {1})
        self.assertGreater(len({w for _t, w in claimed}), 1)


class ClaimRuleTests(TestCase):
    def setUp(self):
        self.world = World()

    def test_a_creator_gets_nothing_while_no_warehouse_is_online(self):
        order(self.world.client)
        self.world.warehouse.last_seen = self.world.warehouse.last_seen.replace(
            year=2000
        )
        self.world.warehouse.save()
        result = claim_task(worker=self.world.creator)
        self.assertIsNone(result.task)
        self.assertIn("No warehouse is online", result.reason)
        self.assertEqual(result.code, "no_warehouse")
        self.assertEqual(Task.objects.get().status, TaskStatus.PENDING)

    def test_a_creator_without_disk_for_the_image_is_told_so(self):
        order(self.world.client)
        result = claim_task(worker=self.world.creator, free_disk=1000)
        self.assertIsNone(result.task)
        self.assertIn("this disk has less", result.reason)

    def test_a_card_too_small_for_the_image_leases_nothing_and_says_why(self):

        placed = order(self.world.client, quantity=1)
        image = make_image(placed, self.world.warehouse, size=7_000_000_000)
        Task.objects.create(
            order=placed,
            kind=TaskKind.WRITE,
            host="host-1",
            image=image,
            copy_number=1,
            needed_bytes=image.size,
        )
        result = claim_task(
            worker=self.world.writer, slot_name="slot-1", card_capacity=4_000_000_000
        )
        self.assertIsNone(result.task)
        self.assertIn("Card too small", result.reason)
        self.assertEqual(result.code, "card_too_small")
        self.assertFalse(Task.objects.filter(status=TaskStatus.LEASED).exists())
        fits = claim_task(
            worker=self.world.writer, slot_name="slot-1", card_capacity=7_900_000_000
        )
        self.assertEqual(fits.task.kind, TaskKind.WRITE)
        self.assertEqual(fits.task.slot.name, "slot-1")

    def test_write_tasks_go_only_to_the_host_that_holds_the_image(self):

        placed = order(self.world.client, quantity=1)
        image = make_image(placed, self.world.warehouse, size=100)
        Task.objects.create(
            order=placed, kind=TaskKind.WRITE, host="host-2", image=image, copy_number=1
        )
        result = claim_task(
            worker=self.world.writer, slot_name="slot-1", card_capacity=10**10
        )
        self.assertIsNone(result.task)
