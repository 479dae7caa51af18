"""The orders pages: the list with its filters, search and pages; one order with
its recipient, history, tasks, logs and why they wait; shipping, cancelling and
anonymizing from the page, with what the database keeps."""

from datetime import timedelta

from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.operators.tests.scene import PageTestCase
from apps.operators.views.orders import PAGE_SIZE
from apps.orders.models import Order, OrderEvent, OrderKind, OrderStatus
from apps.scheduler.models import Task, TaskEvent, TaskKind, TaskStatus

LIST = reverse("ops:orders")


def shown(response) -> set[str]:
    """The ids of the orders a list page shows."""
    return {str(order.pk) for order in response.context["orders"]}


class OrderListTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()

    def test_operators_see_every_clients_orders(self):
        other = make_user(Role.CLIENT, "other-client", full_name="Bea Other")
        mine = self.shop.orders(2)
        theirs = self.shop.orders(1, owner=other)
        response = self.client.get(LIST)
        self.assertEqual(shown(response), {str(o.pk) for o in mine + theirs})
        self.assertContains(response, "other-client")
        self.assertContains(response, "School kit")
        self.assertContains(response, 'data-testid="order-row"', count=3)

    def test_filters_by_status_group_kind_card_size_and_day(self):
        writing = self.shop.orders(1, OrderStatus.WRITING)[0]
        shipped = self.shop.orders(1, OrderStatus.SHIPPED, card_size_gb=32)[0]
        download = self.shop.orders(1, OrderStatus.BUILT, kind=OrderKind.DOWNLOAD)[0]
        old = self.shop.orders(
            1, created_at=timezone.now() - timedelta(days=40), card_size_gb=32
        )[0]
        cases = {
            "status=writing": {writing},
            "status=finished": {shipped},
            "status=active": {writing, download, old},
            "kind=download": {download},
            "card_size=32": {shipped, old},
            f"placed_to={(timezone.now() - timedelta(days=30)).date()}": {old},
            f"placed_from={timezone.now().date()}&card_size=32": {shipped},
        }
        for query, expected in cases.items():
            response = self.client.get(f"{LIST}?{query}")
            self.assertEqual(shown(response), {str(o.pk) for o in expected}, query)

    def test_searches_an_orders_whole_id_its_client_and_its_recipient(self):
        bea = make_user(
            Role.CLIENT, "bea", full_name="Béatrice Martin", email="bea@school.org"
        )
        first = self.shop.orders(1)[0]
        hers = self.shop.orders(1, owner=bea)[0]
        carla = self.shop.orders(1, recipient_name="Carla Lycée")[0]
        cases = {
            str(first.pk): {first},
            f"  {first.pk.hex.upper()} ": {first},
            "martin": {hers},
            "school.org": {hers},
            "carla": {carla},
            "nobody-at-all": set(),
        }
        for text, expected in cases.items():
            response = self.client.get(LIST, {"q": text})
            self.assertEqual(shown(response), {str(o.pk) for o in expected}, text)

    def test_pages_of_fifty_keep_the_filters_in_their_links(self):
        self.shop.orders(PAGE_SIZE + 3, OrderStatus.WRITING)
        self.shop.orders(2, OrderStatus.SHIPPED)
        first = self.client.get(LIST, {"status": "writing"})
        self.assertEqual(len(first.context["orders"]), PAGE_SIZE)
        self.assertContains(first, "status=writing&amp;page=2")
        second = self.client.get(LIST, {"status": "writing", "page": 2})
        self.assertEqual(len(second.context["orders"]), 3)
        self.assertContains(second, "53 orders")
        self.assertTrue(shown(first).isdisjoint(shown(second)))

    def test_a_bad_filter_says_why_and_shows_everything(self):
        self.shop.orders(2)
        response = self.client.get(
            LIST,
            {"status": "lost", "placed_from": "2026-02-02", "placed_to": "2026-01-01"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(shown(response)), 2)
        form = response.context["form"]
        self.assertIn("status", form.errors)
        self.assertIn("placed_to", form.errors)

    def test_the_list_costs_the_same_queries_for_five_orders_as_for_fifty(self):
        self.shop.orders(5)  # the client named "client" placed them
        self.client.get(LIST)  # warm-up: the session, the content types
        with CaptureQueriesContext(connection) as few:
            self.client.get(LIST, {"q": "client"})
        many = [make_user(Role.CLIENT, f"client-{n}") for n in range(45)]
        for client in many:
            self.shop.orders(1, owner=client)
        with self.assertNumQueries(len(few)):
            response = self.client.get(LIST, {"q": "client"})
        self.assertEqual(len(shown(response)), PAGE_SIZE)

    def test_the_list_never_reads_the_recipe_or_the_configuration_snapshot(self):
        self.shop.orders(3)
        with CaptureQueriesContext(connection) as captured:
            self.client.get(LIST)
        reads = [q["sql"] for q in captured if "orders_order" in q["sql"]]
        self.assertTrue(reads)
        for sql in reads:
            self.assertNotIn('"recipe"', sql)


class OrderDetailTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()
        self.order = self.shop.orders(
            1, OrderStatus.WRITING, quantity=3, recipient_phone="+33 1 23 45 67 89"
        )[0]
        OrderEvent.objects.create(
            order=self.order,
            status="pending",
            actor=self.shop.client,
            message="Placed.",
        )
        now = timezone.now()
        Task.objects.create(
            order=self.order,
            kind=TaskKind.CREATE,
            status=TaskStatus.SUCCEEDED,
            percent=100,
            log_tail="mke2fs done\nuploaded 2 GB",
            finished_at=now,
        )
        self.done, self.running, self.waiting = self.shop.writes(self.order, copies=3)
        Task.objects.filter(pk=self.done.pk).update(
            status=TaskStatus.SUCCEEDED, percent=100
        )
        Task.objects.filter(pk=self.running.pk).update(
            status=TaskStatus.RUNNING,
            phase="writing",
            percent=42,
            worker=self.shop.writer,
            lease_expires_at=now + timedelta(minutes=2),
            lease_id="11111111-1111-1111-1111-111111111111",
        )
        Task.objects.filter(pk=self.waiting.pk).update(
            card_failures=1, error="verify mismatch at byte 4096"
        )
        TaskEvent.objects.create(
            task=self.waiting, type="card_failed", data={"message": "verify mismatch"}
        )
        self.page = reverse("ops:order", args=[self.order.pk])

    def test_shows_the_order_recipient_history_and_tasks(self):
        response = self.client.get(self.page)
        for text in (
            str(self.order.pk),
            "School kit",
            "3 \N{MULTIPLICATION SIGN} 8 GB",
            "1 of 3 written",
            "Ada School",
            "ada@example.org",
            "+33 1 23 45 67 89",
            "75001 Paris",
            "Placed.",
            "mke2fs done",
            "verify mismatch at byte 4096",
            "1 / 3",  # card failures of the waiting copy
        ):
            self.assertContains(response, text)
        self.assertContains(response, 'data-testid="task"', count=4)
        self.assertContains(response, 'aria-valuenow="42"')

    def test_says_why_a_waiting_task_waits_and_who_holds_a_running_one(self):
        response = self.client.get(self.page)
        reasons = {
            task.pk: " ".join(task.why["reasons"])
            for task in response.context["tasks"]
            if task.why
        }
        self.assertIn(
            "Waiting for a card in a free slot of host-1", reasons[self.waiting.pk]
        )
        self.assertIn("1 of 3 cards failed", reasons[self.waiting.pk])
        self.assertIn("Held by writer@host-1", reasons[self.running.pk])
        self.assertNotIn(self.done.pk, reasons)
        self.assertContains(response, "Why it waits:")

    def test_never_shows_the_hotspots_passwords(self):
        response = self.client.get(self.page)
        self.assertNotContains(response, "hotspot-admin-pw")
        self.assertNotContains(response, "wifi-secret-pw")

    def test_copies_waiting_on_one_host_are_diagnosed_once(self):
        order = self.shop.orders(1, OrderStatus.BUILT, quantity=20)[0]
        self.shop.writes(order, copies=20)
        page = reverse("ops:order", args=[order.pk])
        self.client.get(page)
        with CaptureQueriesContext(connection) as twenty:
            response = self.client.get(page)
        self.assertEqual(sum(1 for t in response.context["tasks"] if t.why), 20)
        other = self.shop.orders(1, OrderStatus.BUILT, quantity=2)[0]
        self.shop.writes(other, copies=2)
        with self.assertNumQueries(len(twenty)):
            self.client.get(reverse("ops:order", args=[other.pk]))


class ShipTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()
        self.order = self.shop.orders(1, OrderStatus.PENDING_SHIPMENT)[0]
        self.url = reverse("ops:order-ship", args=[self.order.pk])

    def test_the_page_of_an_order_to_ship_has_the_ship_form(self):
        response = self.client.get(reverse("ops:order", args=[self.order.pk]))
        self.assertContains(response, 'data-testid="ship-form"')
        self.assertContains(response, 'name="carrier"')
        self.assertContains(response, 'name="tracking"')

    def test_shipping_moves_the_order_records_who_and_tells_the_recipient(self):
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                self.url, {"carrier": "La Poste", "tracking": "LP42"}, follow=True
            )
        self.assertRedirects(response, reverse("ops:order", args=[self.order.pk]))
        stored = Order.objects.get(pk=self.order.pk)
        self.assertEqual(stored.status, OrderStatus.SHIPPED)
        self.assertEqual(
            (stored.shipment_carrier, stored.shipment_tracking), ("La Poste", "LP42")
        )
        event = OrderEvent.objects.get(order=stored)
        self.assertEqual((event.status, event.actor), ("shipped", self.shop.manager))
        self.assertIn("ada@example.org", [a for m in mail.outbox for a in m.to])
        self.assertContains(response, "The order is marked shipped.")

    def test_a_missing_carrier_is_a_field_error_and_nothing_moves(self):
        response = self.client.post(self.url, {"carrier": "", "tracking": "LP42"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("carrier", response.context["ship_form"].errors)
        self.assertContains(response, "is-invalid", status_code=400)
        stored = Order.objects.get(pk=self.order.pk)
        self.assertEqual(stored.status, OrderStatus.PENDING_SHIPMENT)
        self.assertFalse(OrderEvent.objects.exists())

    def test_an_order_still_writing_cannot_be_shipped(self):
        Order.objects.filter(pk=self.order.pk).update(status=OrderStatus.WRITING)
        response = self.client.post(self.url, {"carrier": "DHL"})
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "Only orders whose cards are all written", response.context["errors"][0]
        )
        self.assertContains(response, 'data-testid="order-error"', status_code=400)
        self.assertEqual(Order.objects.get(pk=self.order.pk).status, "writing")

    def test_a_get_is_not_a_shipment(self):
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 405)
        self.assertEqual(Order.objects.get(pk=self.order.pk).status, "pending_shipment")


class CancelTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()
        self.order = self.shop.orders(1, OrderStatus.BUILT)[0]
        (self.copy,) = self.shop.writes(self.order)

    def test_cancelling_stops_the_waiting_copies_and_records_the_reason(self):
        response = self.client.post(
            reverse("ops:order-cancel", args=[self.order.pk]), {"reason": "Duplicate"}
        )
        self.assertRedirects(response, reverse("ops:order", args=[self.order.pk]))
        self.assertEqual(Order.objects.get(pk=self.order.pk).status, "canceled")
        self.assertEqual(Task.objects.get(pk=self.copy.pk).status, "canceled")
        event = OrderEvent.objects.get(order=self.order)
        self.assertEqual((event.message, event.actor), ("Duplicate", self.shop.manager))

    def test_a_shipped_order_cannot_be_canceled(self):
        Order.objects.filter(pk=self.order.pk).update(status=OrderStatus.SHIPPED)
        response = self.client.post(reverse("ops:order-cancel", args=[self.order.pk]))
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "cannot be canceled", status_code=400)
        self.assertEqual(Order.objects.get(pk=self.order.pk).status, "shipped")


class AnonymizePageTests(PageTestCase):
    def setUp(self):
        super().setUp()
        self.as_manager()
        self.order = self.shop.orders(
            1, OrderStatus.SHIPPED, shipment_tracking="LP42", recipient_phone="+331"
        )[0]
        self.page = reverse("ops:order", args=[self.order.pk])

    def test_a_finished_order_offers_to_erase_its_personal_data(self):
        self.assertContains(self.client.get(self.page), 'data-testid="anonymize-form"')
        response = self.client.post(
            reverse("ops:order-anonymize", args=[self.order.pk])
        )
        self.assertRedirects(response, self.page)
        stored = Order.objects.get(pk=self.order.pk)
        self.assertEqual(
            (stored.recipient_name, stored.recipient_email, stored.shipping_address),
            ("", "", ""),
        )
        self.assertEqual(stored.config["admin_password"], "")
        event = OrderEvent.objects.get(order=stored)
        self.assertEqual(event.actor, self.shop.manager)
        after = self.client.get(self.page)
        self.assertContains(after, 'data-testid="anonymized"')
        self.assertNotContains(after, 'data-testid="anonymize-form"')
        self.assertNotContains(after, "Ada School")

    def test_an_active_order_is_not_anonymized(self):
        Order.objects.filter(pk=self.order.pk).update(status=OrderStatus.WRITING)
        self.assertNotContains(
            self.client.get(self.page), 'data-testid="anonymize-form"'
        )
        response = self.client.post(
            reverse("ops:order-anonymize", args=[self.order.pk])
        )
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "Only finished orders", status_code=400)
        self.assertEqual(
            Order.objects.get(pk=self.order.pk).recipient_name, "Ada School"
        )
        self.assertFalse(OrderEvent.objects.exists())
