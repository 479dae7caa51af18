"""Order pages: the form (the pipeline's rules as field errors), the list, the
detail whose progress part refreshes itself while the order is active, cancel,
the frozen YAML and the download slot; who sees and does what."""

import html
import re

from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders.models import Order, OrderEvent, OrderStatus
from apps.orders.testing import link_claims
from apps.orders.tests.pages import PageTestCase
from apps.scheduler.models import Task, TaskKind, TaskStatus, Warehouse
from apps.scheduler.testing import ZIM, configuration, image, order

NEW = "/orders/new/"
LIST = "/orders/"


def order_data(config, **fields) -> dict:
    return {
        "configuration": str(config.pk),
        "kind": "physical",
        "card_size_gb": "8",
        "quantity": "2",
        "recipient_name": "Ada School",
        "recipient_email": "ada@example.org",
        "recipient_phone": "+221 33 000 00 00",
        "shipping_address": "1 rue de l'Ecole\nDakar",
        **fields,
    }


class OrderPageTestCase(PageTestCase):
    def setUp(self):
        super().setUp()
        self.config.image_bytes = self.config.render().min_size
        self.config.save()

    def url(self, placed, action="") -> str:
        return f"/orders/{placed.pk}/{action}"


class OrderFormTests(OrderPageTestCase):
    def test_the_form_starts_from_the_chosen_configuration_and_its_card(self):
        response = self.client.get(f"{NEW}?configuration={self.config.pk}")
        form = response.context["form"]
        self.assertEqual(form.initial["configuration"], self.config.pk)
        self.assertEqual(form.initial["card_size_gb"], 8)
        self.assertEqual(form.initial["recipient_email"], "client@example.org")
        self.assertContains(response, 'data-testid="order-smallest-card">8 GB')
        for testid in ("order-kind", "order-card-size", "order-quantity"):
            self.assertContains(response, f'data-testid="{testid}"')

    def test_a_client_chooses_among_its_own_configurations_only(self):
        configuration(self.other, name="Other kit")
        response = self.client.get(NEW)
        choices = [
            label
            for _value, label in response.context["form"]
            .fields["configuration"]
            .choices
        ]
        self.assertEqual(len(choices), 1)
        self.assertTrue(choices[0].startswith("School kit · fits a 8 GB card"))

    def test_placing_an_order_stores_it_with_its_build_and_opens_it(self):
        response = self.client.post(NEW, order_data(self.config))
        placed = Order.objects.get()
        self.assertRedirects(response, self.url(placed))
        self.assertEqual(
            (placed.owner, placed.status, placed.quantity, placed.card_size_gb),
            (self.owner, "pending", 2, 8),
        )
        self.assertEqual(placed.config["contents"], [ZIM])
        self.assertTrue(Task.objects.filter(order=placed, kind="create").exists())
        self.assertEqual(OrderEvent.objects.get(order=placed).actor, self.owner)

    def test_a_download_order_needs_no_recipient_name_nor_address(self):
        response = self.client.post(
            NEW,
            order_data(
                self.config,
                kind="download",
                quantity="1",
                recipient_name="",
                shipping_address="",
            ),
        )
        placed = Order.objects.get()
        self.assertRedirects(response, self.url(placed))
        self.assertEqual(placed.kind, "download")

    def test_the_pipelines_refusals_land_on_their_fields(self):
        big = configuration(
            self.owner, name="Big kit", contents=[{**ZIM, "size": 10 * 10**9}]
        )
        cases = [
            (order_data(big), "card_size_gb", "GiB too much"),
            (order_data(big), "card_size_gb", "Choose a 32 GB card"),
            (
                order_data(self.config, recipient_name="", shipping_address=" "),
                "recipient_name",
                "named recipient",
            ),
            (
                order_data(self.config, recipient_name="", shipping_address=" "),
                "shipping_address",
                "shipping address",
            ),
            (
                order_data(self.config, kind="download", quantity="2"),
                "quantity",
                "exactly one image",
            ),
            (order_data(self.config, quantity="0"), "quantity", "greater than"),
            (order_data(self.config, recipient_email="nope"), "recipient_email", ""),
            (order_data(self.config, card_size_gb="10"), "card_size_gb", "valid"),
            (order_data(self.config, recipient_phone="call me"), "recipient_phone", ""),
        ]
        for data, field, words in cases:
            with self.subTest(field=field, words=words):
                response = self.client.post(NEW, data)
                self.assertEqual(response.status_code, 200)
                errors = response.context["form"].errors
                self.assertIn(field, errors)
                self.assertIn(words, " ".join(errors[field]))
                self.assertContains(response, 'class="invalid-feedback"')
        self.assertFalse(Order.objects.exists(), "a refused order is not stored")
        self.assertFalse(Task.objects.exists())

    def test_another_clients_configuration_cannot_be_ordered(self):
        others = configuration(self.other, name="Other kit")
        response = self.client.post(NEW, order_data(others))
        self.assertIn("configuration", response.context["form"].errors)
        self.assertFalse(Order.objects.exists())

    def test_operators_may_order_from_a_clients_configuration_as_the_api_allows(self):
        response = self.as_user(self.manager).post(NEW, order_data(self.config))
        placed = Order.objects.get()
        self.assertRedirects(response, self.url(placed))
        self.assertEqual(placed.owner, self.manager)

    def test_the_form_needs_a_customer_and_the_csrf_token(self):
        self.assert_sent_to_login(NEW)
        self.assert_refused_to_workers(NEW)
        self.assert_refused_to_workers(NEW, "post", order_data(self.config))
        self.assert_csrf_needed(NEW, order_data(self.config))
        self.assertFalse(Order.objects.exists())


class OrderListTests(OrderPageTestCase):
    def setUp(self):
        super().setUp()
        self.mine = order(self.owner, self.config)
        self.done = order(self.owner, self.config)
        Order.objects.filter(pk=self.done.pk).update(status=OrderStatus.SHIPPED)
        self.theirs = order(self.other, configuration(self.other, name="Other kit"))

    def rows(self, response) -> set:
        return {placed.pk for placed, _progress in response.context["rows"]}

    def test_a_client_lists_its_own_orders(self):
        response = self.client.get(LIST)
        self.assertEqual(self.rows(response), {self.mine.pk, self.done.pk})
        self.assertContains(response, 'data-testid="order-row"', count=2)

    def test_active_and_finished_orders_are_shown_apart(self):
        active = self.client.get(LIST + "?show=active")
        self.assertEqual(self.rows(active), {self.mine.pk})
        finished = self.client.get(LIST + "?show=finished")
        self.assertEqual(self.rows(finished), {self.done.pk})

    def test_operators_list_everyones_orders(self):
        response = self.as_user(self.manager).get(LIST)
        self.assertEqual(
            self.rows(response), {self.mine.pk, self.done.pk, self.theirs.pk}
        )
        self.assertContains(response, "other-client")

    def test_the_list_needs_a_customer(self):
        self.assert_sent_to_login(LIST)
        self.assert_refused_to_workers(LIST)


class OrderDetailTests(OrderPageTestCase):
    def setUp(self):
        super().setUp()
        self.config.wifi_password = "wifi-secret-1"
        self.config.save()
        self.placed = order(self.owner, self.config, quantity=2)
        Task.objects.filter(order=self.placed).update(
            status=TaskStatus.SUCCEEDED, percent=100
        )
        for copy, percent in ((1, 42.5), (2, 0)):
            Task.objects.create(
                order=self.placed,
                kind=TaskKind.WRITE,
                copy_number=copy,
                status=TaskStatus.RUNNING if percent else TaskStatus.PENDING,
                phase="writing" if percent else "",
                percent=percent,
            )
        self.placed.move_to(OrderStatus.BUILDING, message="Build started.")

    def test_the_detail_shows_the_timeline_and_each_copys_phase_and_percentage(self):
        response = self.client.get(self.url(self.placed))
        self.assertContains(response, 'data-testid="timeline-event"', count=2)
        self.assertContains(response, "Order placed.")
        self.assertContains(response, "Build started.")
        bar = re.search(
            r'data-testid="copy-progress-1" data-percent="([\d.]+)"',
            response.content.decode(),
        )
        self.assertEqual(bar.group(1), "42.5")
        self.assertContains(response, 'data-testid="copy-progress-2"')
        self.assertContains(response, 'data-testid="task-phase">writing')
        self.assertEqual(response.context["progress"], round((100 + 42.5) / 3, 1))

    def test_the_detail_never_shows_the_hotspots_passwords(self):
        response = self.client.get(self.url(self.placed))
        self.assertNotContains(response, "hotspot-admin-pw")
        self.assertNotContains(response, "wifi-secret-1")

    def test_an_active_order_refreshes_its_progress_part_by_itself(self):
        response = self.client.get(self.url(self.placed))
        self.assertContains(
            response,
            f'hx-get="/orders/{self.placed.pk}/progress/" hx-trigger="every 3s"',
        )
        part = self.client.get(
            self.url(self.placed, "progress/"), HTTP_HX_REQUEST="true"
        )
        self.assertContains(part, 'id="order-progress"')
        self.assertContains(part, 'hx-trigger="every 3s"')
        self.assertNotContains(part, "<html")
        self.assertContains(part, 'data-testid="order-cancel"')

    def test_a_finished_order_stops_asking(self):
        Order.objects.filter(pk=self.placed.pk).update(status=OrderStatus.SHIPPED)
        part = self.client.get(self.url(self.placed, "progress/"))
        self.assertContains(part, 'id="order-progress"')
        self.assertNotContains(part, "hx-trigger")
        self.assertNotContains(part, 'data-testid="order-cancel"')

    def test_another_clients_order_is_not_found_and_operators_see_it(self):
        for action in ("", "progress/", "cancel/", "recipe.yaml"):
            with self.subTest(action=action):
                url = self.url(self.placed, action)
                self.assert_not_found_for_other_clients(url)
                self.assert_sent_to_login(url)
                self.assert_refused_to_workers(url)
        self.assertEqual(
            self.as_user(self.manager).get(self.url(self.placed)).status_code, 200
        )

    def test_the_frozen_yaml_downloads_with_no_store(self):
        response = self.client.get(self.url(self.placed, "recipe.yaml"))
        self.assertEqual(response.content.decode(), self.placed.recipe)
        self.assertEqual(response["Cache-Control"], "no-store")
        self.assertIn("attachment", response["Content-Disposition"])


class CancelTests(OrderPageTestCase):
    def setUp(self):
        super().setUp()
        self.placed = order(self.owner, self.config)

    def test_cancelling_asks_first_then_stops_the_order_and_its_work(self):
        page = self.client.get(self.url(self.placed, "cancel/"))
        self.assertContains(page, 'data-testid="order-cancel-confirm"')
        self.placed.refresh_from_db()
        self.assertEqual(self.placed.status, OrderStatus.PENDING)
        response = self.client.post(
            self.url(self.placed, "cancel/"), {"reason": "Wrong content"}
        )
        self.assertRedirects(response, self.url(self.placed))
        self.placed.refresh_from_db()
        self.assertEqual(self.placed.status, OrderStatus.CANCELED)
        event = OrderEvent.objects.get(order=self.placed, status="canceled")
        self.assertEqual((event.actor, event.message), (self.owner, "Wrong content"))
        self.assertEqual(
            set(
                Task.objects.filter(order=self.placed).values_list("status", flat=True)
            ),
            {TaskStatus.CANCELED},
        )

    def test_a_finished_order_cannot_be_canceled(self):
        Order.objects.filter(pk=self.placed.pk).update(status=OrderStatus.SHIPPED)
        response = self.client.post(self.url(self.placed, "cancel/"), follow=True)
        self.assertContains(response, "cannot be canceled")
        self.placed.refresh_from_db()
        self.assertEqual(self.placed.status, OrderStatus.SHIPPED)
        self.assertFalse(OrderEvent.objects.filter(status="canceled").exists())

    def test_operators_cancel_a_clients_order(self):
        self.as_user(self.manager).post(self.url(self.placed, "cancel/"))
        self.placed.refresh_from_db()
        self.assertEqual(self.placed.status, OrderStatus.CANCELED)

    def test_cancelling_needs_the_csrf_token_and_the_right_caller(self):
        url = self.url(self.placed, "cancel/")
        self.assert_csrf_needed(url)
        self.assert_not_found_for_other_clients(url, "post")
        self.assert_sent_to_login(url, "post")
        self.assert_refused_to_workers(url, "post")
        self.placed.refresh_from_db()
        self.assertEqual(self.placed.status, OrderStatus.PENDING)


class DownloadSlotTests(OrderPageTestCase):
    def setUp(self):
        super().setUp()
        self.warehouse = Warehouse.objects.create(
            name="main",
            account=make_user(Role.WAREHOUSE, "warehouse"),
            ftp_url="ftp://127.0.0.1:2121",
            download_url="https://images.example.org",
            last_seen=timezone.now(),
        )
        self.placed = order(self.owner, self.config, kind="download", quantity=1)

    def test_the_link_appears_once_the_image_is_built(self):
        response = self.client.get(self.url(self.placed))
        self.assertContains(response, 'data-testid="order-download"')
        self.assertNotContains(response, 'data-testid="order-download-link"')
        built = image(self.placed, self.warehouse)
        Order.objects.filter(pk=self.placed.pk).update(
            status=OrderStatus.BUILT, image=built
        )
        response = self.client.get(self.url(self.placed))
        # A signed link to this order's image, made for who looks at the page.
        found = re.search(
            r'href="([^"]+)" data-testid="order-download-link"', response.text
        )
        self.assertIsNotNone(found, response.text)
        link = html.unescape(found[1])
        self.assertTrue(
            link.startswith(
                f"https://images.example.org/orders/{self.placed.pk}/image.img?token="
            )
        )
        claims = link_claims(link)
        self.assertEqual(claims["order"], str(self.placed.pk))
        self.assertEqual(claims["user_id"], str(self.owner.pk))
        # Nothing more happens to a built download order: the page stops asking.
        self.assertNotContains(response, "hx-trigger")

    def test_a_card_order_has_no_download_slot(self):
        cards = order(self.owner, self.config)
        response = self.client.get(self.url(cards))
        self.assertNotContains(response, 'data-testid="order-download"')
