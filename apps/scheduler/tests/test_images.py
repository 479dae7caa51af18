"""Images: declared by the creator, verified only when the warehouse agrees."""

from django.core import mail
from django.test import TestCase

from apps.common.errors import Conflict
from apps.scheduler.models import Image, ImageState, Task, TaskStatus
from apps.scheduler.services.claims import claim_task
from apps.scheduler.services.images import declare_image, warehouse_received
from apps.scheduler.testing import World, api, order
from apps.scheduler.testing import image as make_image

IMG, BMAP = "1" * 64, "2" * 64


class ImageTests(TestCase):
    def setUp(self):
        self.world = World()

    def claimed(self):
        if not hasattr(self, "config"):
            from apps.scheduler.testing import configuration

            self.config = configuration(self.world.client)
        placed = order(self.world.client, config=self.config)
        task = claim_task(worker=self.world.creator).task
        return placed, task

    def declare(self, task, **fields):
        values = {
            "file_name": "image.img",
            "size": 100,
            "sha256": IMG,
            "bmap_name": "image.bmap",
            "bmap_size": 10,
            "bmap_sha256": BMAP,
            **fields,
        }
        return declare_image(task=task, lease_id=task.lease_id, **values)

    def receive(self, placed, name, size, sha):
        return warehouse_received(
            warehouse=self.world.warehouse,
            path=f"orders/{placed.pk}/{name}",
            size=size,
            sha256=sha,
        )

    def test_two_orders_may_both_name_their_image_image_img(self):
        first_order, first = self.claimed()
        second_order, second = self.claimed()
        self.declare(first)
        self.declare(second)
        self.assertEqual(Image.objects.filter(file_name="image.img").count(), 2)
        self.receive(first_order, "image.img", 100, IMG)
        self.receive(first_order, "image.bmap", 10, BMAP)
        states = dict(Image.objects.values_list("order_id", "state"))
        self.assertEqual(states[first_order.pk], ImageState.VERIFIED)
        self.assertEqual(states[second_order.pk], ImageState.UPLOADING)

    def test_a_report_before_the_declaration_is_a_conflict_to_retry(self):
        placed, _task = self.claimed()
        with self.assertRaises(Conflict) as refused:
            self.receive(placed, "image.img", 100, IMG)
        self.assertEqual(refused.exception.code, "not_declared")

    def test_a_hash_mismatch_rejects_the_image_and_builds_again(self):
        placed, task = self.claimed()
        self.declare(task)
        with self.captureOnCommitCallbacks(execute=True):
            image = self.receive(placed, "image.img", 100, "9" * 64)
        self.assertEqual(image.state, ImageState.REJECTED)
        task.refresh_from_db()
        self.assertEqual((task.status, task.attempts), (TaskStatus.PENDING, 1))
        self.assertIn("not what the creator declared", task.error)
        self.assertTrue(any("problem" in m.subject for m in mail.outbox))
        placed.refresh_from_db()
        self.assertEqual(placed.status, "building")

    def test_a_repeated_report_of_a_verified_image_changes_nothing(self):
        placed, task = self.claimed()
        self.declare(task)
        self.receive(placed, "image.img", 100, IMG)
        self.receive(placed, "image.bmap", 10, BMAP)
        again = self.receive(placed, "image.img", 100, IMG)
        self.assertEqual(again.state, ImageState.VERIFIED)
        self.assertEqual(Task.objects.filter(kind="download").count(), 1)


class DeletionsListTests(TestCase):
    def test_the_deletions_are_a_plain_list_as_the_schema_says(self):
        world = World()
        image = make_image(
            order(world.client), world.warehouse, state=ImageState.DELETABLE
        )
        response = api(world.warehouse_account).get("/api/v1/warehouses/deletions/")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual([row["id"] for row in response.json()], [str(image.pk)])
        schema = self.client.get("/api/schema/?format=json").json()
        answer = schema["paths"]["/api/v1/warehouses/deletions/"]["get"]["responses"]
        described = answer["200"]["content"]["application/json"]["schema"]
        self.assertEqual(described["type"], "array")
