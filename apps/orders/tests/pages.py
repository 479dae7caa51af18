"""What the client pages' tests share: one account of each kind, and the checks
every page gets (anonymous callers sent to log in, worker accounts refused,
another client's rows not found, POSTs refused without the CSRF token)."""

import shutil
import tempfile

from django.test import Client, TestCase, override_settings

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.catalog.models import CatalogSource
from apps.catalog.testing import make_entries
from apps.scheduler.testing import configuration

LOGIN = "/accounts/login/"


class PageTestCase(TestCase):
    """A client (``self.owner``) with a configuration, another client, a manager
    and a worker account; the test client is logged in as the owner."""

    media: str

    @classmethod
    def setUpClass(cls):
        # Branding uploads land in a folder of their own, removed afterwards.
        cls.media = tempfile.mkdtemp(prefix="imager-media-")
        cls._media = override_settings(MEDIA_ROOT=cls.media)
        cls._media.enable()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls._media.disable()
        shutil.rmtree(cls.media, ignore_errors=True)

    def setUp(self):
        self.owner = make_user(Role.CLIENT, "client", email="client@example.org")
        self.other = make_user(Role.CLIENT, "other-client")
        self.manager = make_user(Role.MANAGER, "manager", email="ops@example.org")
        self.worker = make_user(Role.WRITER, "writer-host")
        self.config = configuration(self.owner)
        self.client.force_login(self.owner)

    def as_user(self, user) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    def assert_sent_to_login(self, url, method="get", data=None):
        response = getattr(self.as_user(None), method)(url, data or {})
        self.assertEqual(response.status_code, 302, url)
        self.assertTrue(response["Location"].startswith(LOGIN + "?next="), url)
        return response

    def assert_refused_to_workers(self, url, method="get", data=None):
        response = getattr(self.as_user(self.worker), method)(url, data or {})
        self.assertEqual(response.status_code, 403, url)
        return response

    def assert_not_found_for_other_clients(self, url, method="get", data=None):
        response = getattr(self.as_user(self.other), method)(url, data or {})
        self.assertEqual(response.status_code, 404, url)
        return response

    def assert_csrf_needed(self, url, data=None, user=None):
        """A POST without the CSRF token is refused (403) by a browser client
        that enforces it; returns the answer."""
        client = Client(enforce_csrf_checks=True)
        client.force_login(user or self.owner)
        response = client.post(url, data or {})
        self.assertEqual(response.status_code, 403, url)
        self.assertIn(b"CSRF", response.content)
        return response


def catalog(count: int) -> list:
    """A catalog source with ``count`` synthetic entries, as an import writes."""
    source = CatalogSource.objects.create(url="https://library.example.org")
    return make_entries(source, count)
