"""Who may open the operators' pages: managers and admins. Anonymous visitors are
sent to log in and change nothing; clients, worker and warehouse accounts get 403
and change nothing; every POST needs the CSRF token."""

from django.conf import settings
from django.core import mail
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from apps.operators.tests.scene import PageTestCase
from apps.orders.models import Order, OrderEvent, OrderStatus


class AccessTestCase(PageTestCase):
    def setUp(self):
        super().setUp()
        (self.shipping,) = self.shop.orders(1, OrderStatus.PENDING_SHIPMENT)
        (self.shipped,) = self.shop.orders(1, OrderStatus.SHIPPED)
        self.pages = [
            reverse("ops:board"),
            reverse("ops:board-hosts"),
            reverse("ops:orders"),
            reverse("ops:order", args=[self.shipping.pk]),
            reverse("ops:machines"),
            reverse("ops:users"),
            reverse("ops:user-new"),
        ]
        self.posts = [
            (reverse("ops:order-ship", args=[self.shipping.pk]), {"carrier": "DHL"}),
            (reverse("ops:order-cancel", args=[self.shipping.pk]), {"reason": "x"}),
            (reverse("ops:order-anonymize", args=[self.shipped.pk]), {}),
            (
                reverse("ops:user-new"),
                {
                    "username": "newbie",
                    "email": "newbie@example.org",
                    "language": "en",
                    "role": "client",
                    "password_mode": "set",
                    "password1": "a-long-enough-pw-42",
                    "password2": "a-long-enough-pw-42",
                },
            ),
            (
                reverse("ops:user-active", args=[self.shop.client.pk]),
                {"active": "no"},
            ),
            (reverse("ops:user-password", args=[self.shop.client.pk]), {}),
        ]

    def assert_nothing_changed(self):
        self.shipping.refresh_from_db()
        self.shipped.refresh_from_db()
        self.assertEqual(self.shipping.status, OrderStatus.PENDING_SHIPMENT)
        self.assertEqual(self.shipped.recipient_name, "Ada School")
        self.assertFalse(OrderEvent.objects.exists())
        self.assertFalse(User.objects.filter(username="newbie").exists())
        self.assertTrue(User.objects.get(pk=self.shop.client.pk).is_active)
        self.assertEqual(mail.outbox, [])


class AnonymousTests(AccessTestCase):
    def test_every_page_sends_an_anonymous_visitor_to_log_in_and_back(self):
        login = resolve_url(settings.LOGIN_URL)
        for page in self.pages:
            response = self.client.get(page)
            self.assertEqual(response.status_code, 302, page)
            self.assertEqual(response["Location"], f"{login}?next={page}")

    def test_every_action_sends_an_anonymous_visitor_to_log_in_and_changes_nothing(
        self,
    ):
        for url, data in self.posts:
            response = self.client.post(url, data)
            self.assertEqual(response.status_code, 302, url)
            self.assertIn(resolve_url(settings.LOGIN_URL), response["Location"])
        self.assert_nothing_changed()

    def test_the_boards_refresh_tells_htmx_to_load_the_login_page(self):
        response = self.client.get(
            reverse("ops:board-hosts"),
            HTTP_HX_REQUEST="true",
            HTTP_HX_CURRENT_URL="http://testserver/ops/board/?x=1",
        )
        self.assertEqual(response.status_code, 401)
        self.assertEqual(
            response["HX-Redirect"],
            f"{resolve_url(settings.LOGIN_URL)}?next=%2Fops%2Fboard%2F%3Fx%3D1",
        )


class WrongRoleTests(AccessTestCase):
    def test_clients_worker_and_warehouse_accounts_get_403_on_every_page(self):
        for account in self.shop.outsiders:
            self.client.force_login(account)
            for page in self.pages:
                response = self.client.get(page)
                self.assertEqual(response.status_code, 403, (account.role, page))

    def test_clients_worker_and_warehouse_accounts_change_nothing(self):
        for account in self.shop.outsiders:
            self.client.force_login(account)
            for url, data in self.posts:
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 403, (account.role, url))
        self.assert_nothing_changed()

    def test_a_disabled_manager_is_no_operator(self):
        User.objects.filter(pk=self.shop.manager.pk).update(is_active=False)
        self.client.force_login(self.shop.manager)
        response = self.client.get(reverse("ops:orders"))
        self.assertNotEqual(response.status_code, 200)


class OperatorTests(AccessTestCase):
    def test_managers_and_admins_open_every_page(self):
        for account in (self.shop.manager, self.shop.admin):
            self.client.force_login(account)
            for page in self.pages:
                response = self.client.get(page)
                self.assertEqual(response.status_code, 200, (account.role, page))

    def test_the_navigation_shows_the_operators_pages_to_operators_only(self):
        self.client.force_login(self.shop.manager)
        response = self.client.get(reverse("ops:orders"))
        for name in ("board", "orders", "machines", "users"):
            self.assertContains(response, f'data-testid="nav-{name}"')
        self.assertContains(response, reverse("redoc"))
        self.client.force_login(self.shop.client)
        self.assertNotContains(
            self.client.get("/", follow=True), 'data-testid="nav-board"'
        )

    def test_django_admin_and_the_jobs_dashboard_stay_open_to_operators_only(self):
        for page in (reverse("admin:index"), reverse("django_rq:home")):
            self.client.force_login(self.shop.manager)
            self.assertEqual(self.client.get(page).status_code, 200, page)
            self.client.force_login(self.shop.client)
            self.assertEqual(self.client.get(page).status_code, 302, page)

    def test_ops_alone_leads_to_the_board(self):
        self.client.force_login(self.shop.manager)
        self.assertRedirects(self.client.get("/ops/"), reverse("ops:board"))


class CsrfTests(AccessTestCase):
    def test_every_action_without_the_csrf_token_is_refused_and_changes_nothing(self):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(self.shop.admin)
        for url, data in self.posts:
            response = browser.post(url, data)
            self.assertEqual(response.status_code, 403, url)
        self.assert_nothing_changed()

    def test_every_form_of_the_pages_carries_the_csrf_token(self):
        self.client.force_login(self.shop.admin)
        for page in (
            reverse("ops:order", args=[self.shipping.pk]),
            reverse("ops:order", args=[self.shipped.pk]),
            reverse("ops:users"),
            reverse("ops:user-new"),
        ):
            html = self.client.get(page).content.decode()
            posts = html.count('method="post"')
            self.assertGreater(posts, 0, page)
            self.assertEqual(html.count('name="csrfmiddlewaretoken"'), posts, page)

    def test_the_page_hands_htmx_the_csrf_token(self):
        self.client.force_login(self.shop.manager)
        response = self.client.get(reverse("ops:board"))
        self.assertContains(response, "X-CSRFToken")


class UnknownOrderTests(AccessTestCase):
    def test_an_unknown_order_is_404(self):
        self.client.force_login(self.shop.manager)
        response = self.client.get(
            reverse("ops:order", args=["00000000-0000-0000-0000-000000000000"])
        )
        self.assertEqual(response.status_code, 404)

    def test_a_post_to_an_unknown_order_is_404_and_creates_no_event(self):
        self.client.force_login(self.shop.manager)
        missing = "00000000-0000-0000-0000-000000000000"
        response = self.client.post(reverse("ops:order-ship", args=[missing]))
        self.assertEqual(response.status_code, 404)
        self.assertFalse(OrderEvent.objects.exists())
        self.assertEqual(Order.objects.count(), 2)
