"""Whole orders walked through the API: build, upload, download, write, ship."""

import yaml
from django.core import mail
from django.test import TestCase

from apps.orders.models import Order
from apps.orders.testing import link_claims
from apps.scheduler.models import Image, Task, TaskEvent, TaskKind, TaskStatus
from apps.scheduler.testing import ZIM, World, api, event

SHA_IMG = "1" * 64
SHA_BMAP = "2" * 64


class WalkTestCase(TestCase):
    def setUp(self):
        self.world = World(slots=("slot-1", "slot-2"))
        self.client_api = api(self.world.client)
        self.creator_api = api(self.world.creator_account)
        self.host_api = api(self.world.host_account)
        self.warehouse_api = api(self.world.warehouse_account)
        self.manager_api = api(self.world.manager)

    def place(self, **fields):
        config = self.client_api.post(
            "/api/v1/configurations/",
            {
                "name": "School kit",
                "ssid": "Kiwix",
                "language": "fr",
                "timezone": "Europe/Paris",
                "admin_login": "admin",
                "admin_password": "hotspot-admin-pw",
                "wifi_password": "",
                "contents": [ZIM],
            },
            format="json",
        )
        self.assertEqual(config.status_code, 201, config.content)
        self.assertNotIn("admin_password", config.json())
        body = {
            "configuration": config.json()["id"],
            "kind": "physical",
            "card_size_gb": 8,
            "quantity": 3,
            "recipient_name": "Ada School",
            "recipient_email": "ada@example.org",
            "shipping_address": "1 rue de l'Ecole, Paris",
            **fields,
        }
        response = self.client_api.post("/api/v1/orders/", body, format="json")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["status"], "pending")
        return Order.objects.get(pk=response.json()["id"])

    def claim(self, client, worker, **extra):
        response = client.post(
            "/api/v1/tasks/claim/", {"worker": str(worker.pk), **extra}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()

    def build(self, order):
        """The creator builds and uploads; the warehouse verifies."""
        task = self.claim(self.creator_api, self.world.creator, free_disk=10**11)[
            "task"
        ]
        self.assertEqual(task["kind"], "create")
        # The work is where to upload; the frozen recipe (image-creator's YAML)
        # comes with the task, from its own endpoint.
        self.assertEqual(set(task["work"]), {"upload_folder", "warehouse"})
        fetched = self.creator_api.get(f"/api/v1/tasks/{task['id']}/recipe/")
        self.assertEqual(fetched.json()["recipe"], order.recipe)
        recipe = yaml.safe_load(fetched.json()["recipe"])
        self.assertEqual(recipe["offspot"]["ap"]["ssid"], "Kiwix")
        self.assertEqual(task["work"]["upload_folder"], f"orders/{order.pk}")
        order.refresh_from_db()
        self.assertEqual(order.status, "building")
        renew = self.creator_api.post(
            f"/api/v1/tasks/{task['id']}/renew/",
            {"lease_id": task["lease_id"], "phase": "building", "percent": 40},
            format="json",
        )
        self.assertEqual(renew.status_code, 200, renew.content)
        self.assertFalse(renew.json()["cancel"])
        declared = self.creator_api.post(
            f"/api/v1/tasks/{task['id']}/image/",
            {
                "lease_id": task["lease_id"],
                "file_name": "image.img",
                "size": 5 * 10**9,
                "sha256": SHA_IMG,
                "bmap_name": "image.bmap",
                "bmap_size": 2000,
                "bmap_sha256": SHA_BMAP,
            },
            format="json",
        )
        self.assertEqual(declared.status_code, 200, declared.content)
        done = event(self.creator_api, task["id"], task["lease_id"], "succeeded")
        self.assertEqual(done.status_code, 200, done.content)
        order.refresh_from_db()
        self.assertEqual(order.status, "building")  # not before the warehouse agrees
        for path, size, sha in (
            (f"orders/{order.pk}/image.img", 5 * 10**9, SHA_IMG),
            (f"orders/{order.pk}/image.bmap", 2000, SHA_BMAP),
        ):
            received = self.warehouse_api.post(
                "/api/v1/warehouses/received/",
                {"path": path, "size": size, "sha256": sha},
                format="json",
            )
            self.assertEqual(received.status_code, 200, received.content)
        self.assertEqual(received.json()["state"], "verified")
        order.refresh_from_db()
        self.assertEqual(order.status, "built")


class PhysicalOrderWalkTests(WalkTestCase):
    def test_a_three_copy_order_goes_from_placed_to_shipped_with_a_failed_card(self):
        order = self.place()
        self.build(order)
        self.assertEqual(Image.objects.get().state, "verified")

        download = self.claim(self.host_api, self.world.downloader, free_disk=10**11)[
            "task"
        ]
        self.assertEqual(download["kind"], "download")
        self.assertEqual(download["work"]["image"]["sha256"], SHA_IMG)
        info = self.host_api.get(f"/api/v1/tasks/{download['id']}/download-info/")
        self.assertEqual(info.json()["path"], f"orders/{order.pk}/image.img")
        self.assertEqual(info.json()["ftp_url"], "ftp://127.0.0.1:2121")
        mail.outbox.clear()
        event(self.host_api, download["id"], download["lease_id"], "succeeded")
        writes = Task.objects.filter(order=order, kind=TaskKind.WRITE)
        self.assertEqual(
            sorted(writes.values_list("copy_number", flat=True)), [1, 2, 3]
        )
        self.assertEqual(set(writes.values_list("host", flat=True)), {"host-1"})
        self.assertEqual(
            [m.subject for m in mail.outbox],
            [
                "Insert a card in slot slot-1 of host-1",
                "Insert a card in slot slot-2 of host-1",
            ],
        )

        card = {"card_capacity": 7_900_000_000}
        first = self.claim(self.host_api, self.world.writer, slot="slot-1", **card)
        order.refresh_from_db()
        self.assertEqual(order.status, "writing")
        second = self.claim(self.host_api, self.world.writer, slot="slot-2", **card)
        for claimed in (first, second):
            self.assertEqual(claimed["task"]["kind"], "write")
            progress = event(
                self.host_api,
                claimed["task"]["id"],
                claimed["task"]["lease_id"],
                "progress",
                phase="writing",
                percent=50,
            )
            self.assertEqual(progress.status_code, 200)

        # The card in slot-2 is pulled out: that copy waits for another card.
        pulled = event(
            self.host_api,
            second["task"]["id"],
            second["task"]["lease_id"],
            "card_failed",
            reason="removed",
            message="card removed during writing",
        )
        self.assertEqual(pulled.status_code, 200, pulled.content)
        failed_copy = Task.objects.get(pk=second["task"]["id"])
        self.assertEqual(
            (failed_copy.status, failed_copy.card_failures, failed_copy.host),
            ("pending", 1, "host-1"),
        )
        event(
            self.host_api, first["task"]["id"], first["task"]["lease_id"], "succeeded"
        )

        # Two more cards finish the two remaining copies.
        for slot in ("slot-2", "slot-1"):
            claimed = self.claim(self.host_api, self.world.writer, slot=slot, **card)
            self.assertIsNotNone(claimed["task"], claimed["reason"])
            done = event(
                self.host_api,
                claimed["task"]["id"],
                claimed["task"]["lease_id"],
                "succeeded",
                result={"bytes_written": 123, "verified": True},
            )
            self.assertEqual(done.status_code, 200)
        nothing = self.claim(self.host_api, self.world.writer, slot="slot-1", **card)
        self.assertIsNone(nothing["task"])

        order.refresh_from_db()
        self.assertEqual(order.status, "pending_shipment")
        self.assertIn(
            "All cards written, ship them: School kit", [m.subject for m in mail.outbox]
        )
        shipped = self.manager_api.post(
            f"/api/v1/orders/{order.pk}/ship/",
            {"carrier": "La Poste", "tracking": "LP123"},
            format="json",
        )
        self.assertEqual(shipped.status_code, 200, shipped.content)
        order.refresh_from_db()
        self.assertEqual(order.status, "shipped")
        self.assertEqual(order.shipment_tracking, "LP123")
        # The recipient reads the hotspot's language (French here), the client
        # their own (English).
        shipped_mails = [
            m
            for m in mail.outbox
            if "on their way" in m.subject or "sont expédiées" in m.subject
        ]
        self.assertEqual(
            sorted(m.to[0] for m in shipped_mails),
            ["ada@example.org", "client@example.org"],
        )
        self.assertIn("LP123", shipped_mails[0].body)

        # Every task succeeded exactly once; the history is complete.
        for task in Task.objects.filter(order=order):
            self.assertEqual(task.status, TaskStatus.SUCCEEDED)
            self.assertEqual(
                TaskEvent.objects.filter(task=task, type="succeeded").count(), 1
            )
        history = list(order.events.values_list("status", flat=True))
        self.assertEqual(
            history,
            ["pending", "building", "built", "writing", "pending_shipment", "shipped"],
        )
        detail = self.client_api.get(f"/api/v1/orders/{order.pk}/").json()
        self.assertEqual(detail["progress"], 100.0)
        self.assertNotIn("admin_password", detail["config"])


class DownloadOrderWalkTests(WalkTestCase):
    def test_a_download_order_ends_built_with_a_link(self):
        mail.outbox.clear()
        order = self.place(kind="download", quantity=1)
        self.build(order)
        detail = self.client_api.get(f"/api/v1/orders/{order.pk}/").json()
        where = f"http://127.0.0.1:8080/orders/{order.pk}/image.img?token="
        self.assertTrue(detail["download_url"].startswith(where), detail)
        claims = link_claims(detail["download_url"])
        self.assertEqual(
            (claims["order"], claims["files"], claims["user_id"]),
            (str(order.pk), ["image.img", "image.bmap"], str(self.world.client.pk)),
        )
        self.assertEqual(detail["download"]["image_url"], detail["download_url"])
        self.assertIsNotNone(detail["expires_at"])
        self.assertFalse(Task.objects.filter(order=order, kind="download").exists())
        ready = [
            m for m in mail.outbox if "is ready" in m.subject or "prête" in m.subject
        ]
        self.assertEqual(
            sorted(m.to[0] for m in ready), ["ada@example.org", "client@example.org"]
        )
        for message in ready:
            # A link of its own, made for the owner when the image was ready.
            link = next(w for w in message.body.split() if w.startswith(where))
            self.assertEqual(link_claims(link)["order"], str(order.pk))
            self.assertRegex(message.body, "(works until|fonctionne jusqu)")
        placed = [m for m in mail.outbox if "Order received" in m.subject]
        self.assertEqual([m.to for m in placed], [["client@example.org"]])
