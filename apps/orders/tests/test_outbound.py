"""The API refuses at once a content URL the creator would refuse to fetch
(DESIGN 6): an address that is not public, localhost, a name whose addresses
are none of them public; the settings refuse a catalog on such an address and a
bad allowed list. The test settings allow loopback: each test here says the
list it needs."""

import socket
from unittest import mock

from django.test import SimpleTestCase, TestCase, override_settings

from apps.common import outbound
from apps.common.tests.test_settings import manage
from apps.orders.models import Configuration, Order
from apps.scheduler.testing import ZIM, World, api, configuration
from apps.scheduler.testing import order as place

CONFIGURATIONS = "/api/v1/configurations/"
ORDERS = "/api/v1/orders/"


def body(**entry) -> dict:
    return {
        "name": "School kit",
        "ssid": "Kiwix",
        "language": "fr",
        "timezone": "Europe/Paris",
        "admin_password": "hotspot-admin-pw",
        "contents": [{**ZIM, **entry}],
    }


def stub_dns(names: dict[str, str]):
    """The system resolver answering ``names`` (host -> address) and nothing
    else; the API's memory of answers is forgotten before and after."""

    def resolve(host, port):
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = names[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    outbound._resolved.clear()
    patch = mock.patch.object(outbound, "resolve", resolve)
    patch.start()
    return lambda: (patch.stop(), outbound._resolved.clear())


@override_settings(OUTBOUND_ALLOWED_NETWORKS=[])
class ContentUrlTests(TestCase):
    def setUp(self):
        self.world = World()
        self.client_api = api(self.world.client)
        self.addCleanup(
            stub_dns({"intranet.example": "10.0.0.7", "cdn.example": "8.8.8.8"})
        )

    def post(self, **entry):
        return self.client_api.post(CONFIGURATIONS, body(**entry), format="json")

    def test_each_kind_of_address_that_is_not_public_is_refused_at_once(self):
        cases = {
            "http://127.0.0.1:6379/x.zim": "127.0.0.1 is not a public address",
            "http://[::1]:8080/x.zim": "::1 is not a public address",
            "http://10.1.2.3/x.zim": "10.1.2.3 is not a public address",
            "http://192.168.1.1/x.zim": "192.168.1.1 is not a public address",
            "http://169.254.169.254/x.zim": "169.254.169.254 is not a public",
            "http://100.64.0.1/x.zim": "100.64.0.1 is not a public address",
            "http://0.0.0.0/x.zim": "0.0.0.0 is not a public address",
            "http://224.0.0.1/x.zim": "224.0.0.1 is not a public address",
            "http://[::ffff:127.0.0.1]/x.zim": "127.0.0.1 is not a public address",
            "http://[fd00:ec2::254]/x.zim": "fd00:ec2::254 is not a public",
            "http://localhost:6379/x.zim": "localhost: 127.0.0.1 is not a public",
            "http://admin.localhost/x.zim": "admin.localhost: 127.0.0.1 is not a",
            "http://intranet.example/x.zim": "intranet.example: 10.0.0.7 is not a",
        }
        for url, reason in cases.items():
            with self.subTest(url=url):
                response = self.post(url=url)
                self.assertEqual(response.status_code, 400, response.content)
                (message,) = response.json()["contents"]
                start = f"Content entry 1: url {url} is refused: {reason}"
                self.assertTrue(message.startswith(start), message)
                self.assertIn("public addresses only", message)
        self.assertFalse(Configuration.objects.exists())

    def test_a_checksum_url_is_checked_the_same_way_and_the_entry_named(self):
        second = {**ZIM, "url": "http://cdn.example/b.zim"}
        entry = {"checksum_url": "http://169.254.169.254/latest/x.zim.sha256"}
        contents = [{**ZIM, "url": "http://cdn.example/a.zim"}, {**second, **entry}]
        del contents[1]["sha256"]
        response = self.client_api.post(
            CONFIGURATIONS, {**body(), "contents": contents}, format="json"
        )
        self.assertEqual(response.status_code, 400, response.content)
        (message,) = response.json()["contents"]
        self.assertTrue(
            message.startswith(
                "Content entry 2: checksum_url http://169.254.169.254/latest/"
                "x.zim.sha256 is refused: 169.254.169.254 is not a public address"
            ),
            message,
        )

    def test_public_names_and_names_that_do_not_resolve_now_are_accepted(self):
        # A name that does not resolve is checked again when the creator
        # connects: refusing it would refuse every URL while DNS is down.
        for url in ("http://cdn.example/x.zim", "http://zims.invalid/x.zim"):
            with self.subTest(url=url):
                Configuration.objects.all().delete()
                response = self.post(url=url)
                self.assertEqual(response.status_code, 201, response.content)

    def test_the_setting_allows_networks_and_hosts(self):
        with override_settings(OUTBOUND_ALLOWED_NETWORKS=["10.0.0.0/8", "mirror.lan"]):
            for url in ("http://10.1.2.3/x.zim", "http://mirror.lan/x.zim"):
                with self.subTest(url=url):
                    Configuration.objects.all().delete()
                    self.assertEqual(self.post(url=url).status_code, 201)
            self.assertEqual(self.post(url="http://192.168.1.1/x.zim").status_code, 400)

    def test_an_order_of_a_configuration_whose_url_is_now_refused_is_refused(self):
        with override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"]):
            config = configuration(self.world.client)  # ZIM is on 127.0.0.1
            place(self.world.client, config)
        response = self.client_api.post(
            ORDERS,
            {
                "configuration": str(config.pk),
                "card_size_gb": 8,
                "quantity": 1,
                "recipient_name": "Ada School",
                "recipient_email": "ada@example.org",
                "shipping_address": "1 rue de l'Ecole, Paris",
            },
            format="json",
        )
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("127.0.0.1 is not a public address", str(response.json()))
        self.assertEqual(Order.objects.count(), 1)


class SettingsTests(SimpleTestCase):
    def test_a_bad_allowed_item_and_a_catalog_on_a_private_address_stop_start_up(self):
        result = manage(
            "check",
            OUTBOUND_ALLOWED_NETWORKS="10.0.0.0/8,10.0.0.0/33",
            CATALOG_URLS="http://127.0.0.1:8080,https://library.kiwix.org",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "OUTBOUND_ALLOWED_NETWORKS: (imager.E061) OUTBOUND_ALLOWED_NETWORKS: "
            "'10.0.0.0/33' is neither a network",
            result.stderr,
        )
        self.assertIn(
            "CATALOG_URLS: (imager.E062) CATALOG_URLS: http://127.0.0.1:8080: "
            "127.0.0.1 is not a public address.",
            result.stderr,
        )

    def test_a_catalog_on_an_allowed_network_or_host_starts(self):
        result = manage(
            "check",
            OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8, kiwix.lan",
            CATALOG_URLS="http://127.0.0.1:8080,http://kiwix.lan",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
