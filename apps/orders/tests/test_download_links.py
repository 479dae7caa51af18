"""Download links of download orders (apps/orders/links.py): when there is one,
what its token says, how long it works, and where the API shows it. The
warehouse's side (serving the files) is tested live in
tests/test_warehouse_http.py."""

from datetime import UTC, datetime, timedelta

from django.test import TestCase, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.orders.links import download_link
from apps.orders.models import Order, OrderKind, OrderStatus
from apps.orders.testing import link_claims
from apps.scheduler.models import ImageState, Warehouse
from apps.scheduler.testing import World, api, configuration, image, order


class DownloadLinkTestCase(TestCase):
    def setUp(self):
        self.world = World()
        self.client_api = api(self.world.client)
        self.order = self.built(kind=OrderKind.DOWNLOAD)

    def built(self, **fields) -> Order:
        values = {"recipient_name": "", "shipping_address": "", **fields}
        placed = order(
            self.world.client,
            configuration(self.world.client, name=f"Kit {Order.objects.count()}"),
            **values,
        )
        placed.image = image(placed, self.world.warehouse)
        placed.status = OrderStatus.BUILT
        placed.expires_at = timezone.now() + timedelta(days=14)
        placed.save()
        return placed

    def url(self, placed=None) -> str:
        return f"/api/v1/orders/{(placed or self.order).pk}/download/"


class LinkTests(DownloadLinkTestCase):
    def test_a_link_names_the_order_its_two_files_and_who_asked(self):
        answer = self.client_api.get(self.url())
        self.assertEqual(answer.status_code, 200, answer.content)
        data = answer.json()
        base = f"http://127.0.0.1:8080/orders/{self.order.pk}"
        self.assertTrue(data["image_url"].startswith(f"{base}/image.img?token="))
        self.assertTrue(data["bmap_url"].startswith(f"{base}/image.bmap?token="))
        claims = link_claims(data["image_url"])
        self.assertEqual(link_claims(data["bmap_url"]), claims)
        self.assertEqual(
            (claims["token_type"], claims["order"], claims["files"]),
            ("download", str(self.order.pk), ["image.img", "image.bmap"]),
        )
        self.assertEqual(claims["user_id"], str(self.world.client.pk))
        expires = datetime.fromisoformat(data["expires_at"])
        self.assertEqual(expires, datetime.fromtimestamp(claims["exp"], UTC))
        self.assertAlmostEqual(
            (expires - timezone.now()).total_seconds(), 24 * 3600, delta=60
        )

    def test_each_call_makes_a_fresh_link(self):
        first = self.client_api.get(self.url()).json()["image_url"]
        second = self.client_api.get(self.url()).json()["image_url"]
        self.assertNotEqual(first, second)
        self.assertNotEqual(link_claims(first)["jti"], link_claims(second)["jti"])

    def test_staff_get_links_in_their_own_name(self):
        data = api(self.world.manager).get(self.url()).json()
        self.assertEqual(
            link_claims(data["image_url"])["user_id"], str(self.world.manager.pk)
        )

    @override_settings(DOWNLOAD_LINK_HOURS=2)
    def test_a_link_works_for_download_link_hours(self):
        expires = datetime.fromisoformat(
            self.client_api.get(self.url()).json()["expires_at"]
        )
        self.assertAlmostEqual(
            (expires - timezone.now()).total_seconds(), 2 * 3600, delta=60
        )

    def test_a_link_never_outlives_the_order(self):
        soon = timezone.now() + timedelta(hours=1)
        Order.objects.filter(pk=self.order.pk).update(expires_at=soon)
        data = self.client_api.get(self.url()).json()
        self.assertEqual(link_claims(data["image_url"])["exp"], int(soon.timestamp()))

    def test_a_link_is_no_access_token_for_the_api(self):
        url = self.client_api.get(self.url()).json()["image_url"]
        token = url.split("?token=")[1]
        stranger = APIClient()
        stranger.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        self.assertEqual(stranger.get("/api/v1/users/me/").status_code, 401)
        self.assertEqual(stranger.get(self.url()).status_code, 401)


class NoLinkTests(DownloadLinkTestCase):
    def assert_no_link(self, code, placed=None):
        answer = self.client_api.get(self.url(placed))
        self.assertEqual(answer.status_code, 409, answer.content)
        self.assertEqual(answer.json()["code"], code)
        self.assertTrue(answer.json()["detail"])

    def test_a_physical_order_has_no_link(self):
        physical = self.built(
            kind=OrderKind.PHYSICAL,
            recipient_name="Ada School",
            shipping_address="1 rue de l'Ecole",
        )
        self.assert_no_link("not_a_download_order", physical)

    def test_no_link_before_the_image_is_verified_or_once_the_order_is_over(self):
        for status in (OrderStatus.BUILDING, OrderStatus.EXPIRED, OrderStatus.CANCELED):
            with self.subTest(status=status):
                Order.objects.filter(pk=self.order.pk).update(status=status)
                self.assert_no_link("not_ready")
        Order.objects.filter(pk=self.order.pk).update(status=OrderStatus.BUILT)
        self.order.image.state = ImageState.DELETABLE
        self.order.image.save()
        self.assert_no_link("not_ready")
        Order.objects.filter(pk=self.order.pk).update(image=None)
        self.assert_no_link("not_ready")

    def test_no_link_past_the_order_s_retention(self):
        past = timezone.now() - timedelta(minutes=1)
        Order.objects.filter(pk=self.order.pk).update(expires_at=past)
        self.assert_no_link("not_ready")

    def test_no_link_when_the_warehouse_serves_no_downloads(self):
        Warehouse.objects.filter(pk=self.world.warehouse.pk).update(download_url="")
        self.assert_no_link("no_download_server")


class OrderAnswerTests(DownloadLinkTestCase):
    def test_order_answers_carry_a_fresh_link_of_download_orders_only(self):
        physical = self.built(
            kind=OrderKind.PHYSICAL,
            recipient_name="Ada School",
            shipping_address="1 rue de l'Ecole",
        )
        rows = {
            row["id"]: row
            for row in self.client_api.get("/api/v1/orders/").json()["results"]
        }
        self.assertIsNone(rows[str(physical.pk)]["download_url"])
        url = rows[str(self.order.pk)]["download_url"]
        self.assertEqual(link_claims(url)["order"], str(self.order.pk))

        detail = self.client_api.get(f"/api/v1/orders/{self.order.pk}/").json()
        self.assertEqual(detail["download"]["image_url"], detail["download_url"])
        self.assertTrue(
            detail["download"]["bmap_url"].endswith(
                detail["download_url"].split("?")[1]
            )
        )
        physical_detail = self.client_api.get(f"/api/v1/orders/{physical.pk}/").json()
        self.assertIsNone(physical_detail["download"])

    def test_the_service_says_why_there_is_no_link(self):
        Order.objects.filter(pk=self.order.pk).update(status=OrderStatus.BUILDING)
        placed = Order.objects.get(pk=self.order.pk)
        with self.assertRaisesMessage(Exception, "not ready to download"):
            download_link(placed, user=self.world.client)


class WarehouseAddressTests(TestCase):
    def test_a_warehouse_may_announce_a_download_address_on_a_lan_host_name(self):
        world = World()
        answer = api(world.warehouse_account).post(
            "/api/v1/warehouses/heartbeat/",
            {
                "name": "main",
                "ftp_url": "ftp://warehouse:2121",
                "download_url": "http://warehouse:2180",
                "capacity_bytes": 10**12,
                "free_bytes": 10**11,
            },
            format="json",
        )
        self.assertEqual(answer.status_code, 200, answer.content)
        world.warehouse.refresh_from_db()
        self.assertEqual(world.warehouse.download_url, "http://warehouse:2180")
        bad = api(world.warehouse_account).post(
            "/api/v1/warehouses/heartbeat/",
            {
                "name": "main",
                "ftp_url": "ftp://warehouse:2121",
                "download_url": "file:///etc/passwd",
                "capacity_bytes": 1,
                "free_bytes": 1,
            },
            format="json",
        )
        self.assertEqual(bad.status_code, 400)
        self.assertIn("download_url", bad.json())
