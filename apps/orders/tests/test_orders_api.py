"""Orders through the API: placing (what is refused and why), the frozen copy of
the configuration, cancelling (and how workers learn it), filters, bad input."""

from django.test import TestCase

from apps.orders.cards import GIB, usable_bytes
from apps.orders.models import Order, OrderEvent, OrderStatus
from apps.scheduler.models import Image, Task, TaskKind, TaskStatus
from apps.scheduler.testing import ZIM, World, api, configuration, event, order

URL = "/api/v1/orders/"


class OrderTestCase(TestCase):
    def setUp(self):
        self.world = World()
        self.client_api = api(self.world.client)
        self.config = configuration(self.world.client)

    def body(self, **fields) -> dict:
        return {
            "configuration": str(self.config.pk),
            "kind": "physical",
            "card_size_gb": 8,
            "quantity": 2,
            "recipient_name": "Ada School",
            "recipient_email": "ada@example.org",
            "shipping_address": "1 rue de l'Ecole\n75001 Paris",
            **fields,
        }

    def place(self, **fields):
        return self.client_api.post(URL, self.body(**fields), format="json")

    def assert_refused(self, response, field, *words):
        """A 400 naming ``field`` with ``words`` in its message; nothing placed."""
        self.assertEqual(response.status_code, 400, response.content)
        errors = response.json()
        self.assertIn(field, errors, errors)
        message = " ".join(errors[field])
        for word in words:
            self.assertIn(word, message)
        self.assertFalse(Order.objects.exists(), "a refused order must not be stored")
        self.assertFalse(Task.objects.exists(), "a refused order has no task")
        return message


class PlaceOrderTests(OrderTestCase):
    def test_a_valid_order_is_pending_with_one_create_task(self):
        response = self.place()
        self.assertEqual(response.status_code, 201, response.content)
        placed = Order.objects.get(pk=response.json()["id"])
        self.assertEqual(
            (placed.status, placed.owner, placed.quantity, placed.content_bytes),
            ("pending", self.world.client, 2, ZIM["size"]),
        )
        task = Task.objects.get(order=placed)
        self.assertEqual((task.kind, task.status), ("create", "pending"))
        # The image needs what offspot-config says: base, content and margin.
        needed = self.config.render().min_size
        self.assertGreater(needed, ZIM["size"])
        self.assertEqual(response.json()["image_bytes"], needed)
        self.assertEqual((placed.image_bytes, task.needed_bytes), (needed, needed))

    def test_content_too_big_for_the_card_says_by_how_much_and_which_card_fits(self):
        self.config.contents = [{**ZIM, "size": 10 * GIB}]
        self.config.save()
        message = self.assert_refused(self.place(card_size_gb=8), "card_size_gb")
        over = (self.config.render().min_size - usable_bytes(8)) / GIB
        self.assertIn(f"{over:.2f} GiB too much", message)
        self.assertIn("Choose a 32 GB card", message)

    def test_content_too_big_for_any_card_says_to_remove_content(self):
        self.config.contents = [{**ZIM, "size": 600 * 10**9}]
        self.config.save()
        message = self.assert_refused(self.place(card_size_gb=512), "card_size_gb")
        self.assertIn("Remove content", message)

    def test_a_card_size_that_is_not_sold_is_refused(self):
        self.assert_refused(self.place(card_size_gb=10), "card_size_gb", "10")

    def test_a_download_order_has_exactly_one_copy(self):
        self.assert_refused(
            self.place(kind="download", quantity=2), "quantity", "exactly one"
        )

    def test_a_download_order_needs_no_recipient_address(self):
        response = self.place(
            kind="download", quantity=1, recipient_name="", shipping_address=""
        )
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(Order.objects.get().kind, "download")

    def test_a_quantity_below_1_or_above_100_is_refused(self):
        for quantity in (0, -1, 101):
            with self.subTest(quantity=quantity):
                self.assert_refused(self.place(quantity=quantity), "quantity")

    def test_a_quantity_that_is_not_a_number_is_refused_without_a_server_error(self):
        self.assert_refused(self.place(quantity="many"), "quantity", "integer")

    def test_a_physical_order_needs_a_recipient_name_and_a_shipping_address(self):
        response = self.place(recipient_name="", shipping_address="  ")
        self.assert_refused(response, "recipient_name", "named recipient")
        self.assert_refused(response, "shipping_address", "shipping address")

    def test_a_recipient_email_is_required_and_checked(self):
        self.assert_refused(
            self.place(recipient_email="not-an-email"), "recipient_email"
        )
        body = self.body()
        del body["recipient_email"]
        response = self.client_api.post(URL, body, format="json")
        self.assert_refused(response, "recipient_email", "required")

    def test_a_client_cannot_order_from_another_clients_configuration(self):
        others = configuration(self.world.manager, name="Staff kit")
        self.assert_refused(
            self.place(configuration=str(others.pk)),
            "configuration",
            "your configurations",
        )

    def test_an_unknown_or_malformed_configuration_id_is_refused(self):
        for pk in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", 12):
            with self.subTest(pk=pk):
                self.assert_refused(self.place(configuration=pk), "configuration")

    def test_a_body_that_is_not_json_is_refused_with_400(self):
        response = self.client_api.post(
            URL, '{"configuration": ', content_type="application/json"
        )
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("JSON", response.json()["detail"])
        self.assertFalse(Order.objects.exists())

    def test_an_order_is_never_changed_by_patch(self):
        placed = order(self.world.client, self.config)
        response = self.client_api.patch(
            f"{URL}{placed.pk}/", {"status": "shipped"}, format="json"
        )
        self.assertEqual(response.status_code, 405, response.content)
        placed.refresh_from_db()
        self.assertEqual(placed.status, "pending")


class FrozenCopyTests(OrderTestCase):
    def test_editing_the_configuration_afterwards_does_not_change_the_order(self):
        response = self.place()
        self.assertEqual(response.status_code, 201, response.content)
        placed = Order.objects.get()
        edit = self.client_api.patch(
            f"/api/v1/configurations/{self.config.pk}/",
            {
                "ssid": "Changed",
                "contents": [{**ZIM, "url": "http://127.0.0.1:9/other.zim"}],
            },
            format="json",
        )
        self.assertEqual(edit.status_code, 200, edit.content)
        placed.refresh_from_db()
        self.assertEqual(placed.config["ssid"], "Kiwix Hotspot")
        self.assertEqual(placed.config["contents"], [ZIM])
        self.assertEqual(placed.config["admin_password"], "hotspot-admin-pw")
        detail = self.client_api.get(f"{URL}{placed.pk}/").json()
        self.assertEqual(detail["config"]["ssid"], "Kiwix Hotspot")
        self.assertNotIn("admin_password", detail["config"])
        self.assertNotIn("wifi_password", detail["config"])

    def test_deleting_the_configuration_keeps_the_order_and_its_copy(self):
        placed = order(self.world.client, self.config)
        deleted = self.client_api.delete(f"/api/v1/configurations/{self.config.pk}/")
        self.assertEqual(deleted.status_code, 204, deleted.content)
        placed.refresh_from_db()
        self.assertIsNone(placed.configuration)
        self.assertEqual(placed.config["name"], "School kit")


class CancelTests(OrderTestCase):
    def writing_order(self):
        """An order whose first copy is being written and second waits for a card."""
        placed = order(self.world.client, self.config, quantity=2)
        Order.objects.filter(pk=placed.pk).update(status=OrderStatus.WRITING)
        Task.objects.filter(order=placed).update(status=TaskStatus.SUCCEEDED)
        image = Image.objects.create(
            order=placed,
            warehouse=self.world.warehouse,
            file_name="image.img",
            size=10**9,
            sha256="1" * 64,
            bmap_name="image.bmap",
            bmap_size=2000,
            bmap_sha256="2" * 64,
            state="verified",
        )
        for copy in (1, 2):
            Task.objects.create(
                order=placed,
                kind=TaskKind.WRITE,
                image=image,
                host="host-1",
                copy_number=copy,
            )
        claimed = api(self.world.host_account).post(
            "/api/v1/tasks/claim/",
            {
                "worker": str(self.world.writer.pk),
                "slot": "slot-1",
                "card_capacity": 8 * 10**9,
            },
            format="json",
        )
        self.assertEqual(claimed.status_code, 200, claimed.content)
        placed.refresh_from_db()
        return placed, claimed.json()["task"]

    def test_cancel_ends_pending_tasks_and_asks_held_ones_to_stop(self):
        placed, held = self.writing_order()
        held_pk = held["id"]
        response = self.client_api.post(
            f"{URL}{placed.pk}/cancel/", {"reason": "School closed"}, format="json"
        )
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["status"], "canceled")
        writes = Task.objects.filter(order=placed, kind=TaskKind.WRITE)
        self.assertEqual(
            sorted(writes.values_list("status", "cancel_requested")),
            [("canceled", False), ("leased", True)],
        )
        self.assertEqual(str(writes.get(status="leased").pk), held_pk)
        self.assertEqual(Image.objects.get().state, "deletable")
        last = OrderEvent.objects.filter(order=placed).order_by("at").last()
        self.assertEqual((last.status, last.message), ("canceled", "School closed"))

        # The writer learns it when it renews, stops, and says so.
        host_api = api(self.world.host_account)
        renewed = host_api.post(
            f"/api/v1/tasks/{held_pk}/renew/",
            {"lease_id": held["lease_id"], "percent": 30},
            format="json",
        )
        self.assertEqual(renewed.status_code, 200, renewed.content)
        self.assertIs(renewed.json()["cancel"], True)
        stopped = event(host_api, held_pk, held["lease_id"], "canceled")
        self.assertEqual(stopped.status_code, 200, stopped.content)
        self.assertEqual(Task.objects.get(pk=held_pk).status, "canceled")

    def test_a_pending_order_is_canceled_with_its_create_task(self):
        placed = order(self.world.client, self.config)
        response = self.client_api.post(f"{URL}{placed.pk}/cancel/", {}, format="json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(
            list(Task.objects.filter(order=placed).values_list("status", flat=True)),
            ["canceled"],
        )

    def test_a_shipped_order_cannot_be_canceled(self):
        placed = order(self.world.client, self.config)
        Order.objects.filter(pk=placed.pk).update(status=OrderStatus.SHIPPED)
        events = OrderEvent.objects.count()
        response = self.client_api.post(f"{URL}{placed.pk}/cancel/", {}, format="json")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("cannot be canceled", " ".join(response.json()["status"]))
        placed.refresh_from_db()
        self.assertEqual(placed.status, "shipped")
        self.assertEqual(OrderEvent.objects.count(), events)

    def test_canceling_twice_is_refused_the_second_time(self):
        placed = order(self.world.client, self.config)
        url = f"{URL}{placed.pk}/cancel/"
        self.assertEqual(self.client_api.post(url, {}).status_code, 200)
        response = self.client_api.post(url, {}, format="json")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("canceled", " ".join(response.json()["status"]))


class ListFilterTests(OrderTestCase):
    def test_orders_are_filtered_by_status(self):
        pending = order(self.world.client, self.config)
        shipped = order(self.world.client, self.config)
        Order.objects.filter(pk=shipped.pk).update(status=OrderStatus.SHIPPED)
        response = self.client_api.get(URL, {"status": "pending"})
        self.assertEqual(response.status_code, 200, response.content)
        ids = [row["id"] for row in response.json()["results"]]
        self.assertEqual(ids, [str(pending.pk)])

    def test_an_unknown_status_filter_is_refused_listing_the_known_ones(self):
        order(self.world.client, self.config)
        response = self.client_api.get(URL, {"status": "lost"})
        self.assertEqual(response.status_code, 400, response.content)
        message = " ".join(response.json()["status"])
        for status in OrderStatus.values:
            self.assertIn(status, message)
