"""The catalog's read API: who may read it, the picker's search and filters,
pages of a constant number of queries, the sources' state, offspot-config's
packages."""

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Role
from apps.accounts.testing import bearer, make_user
from apps.catalog.models import CatalogSource, Entry
from apps.catalog.testing import make_entries

ENTRIES = "/api/v1/catalog/entries/"
SOURCES = "/api/v1/catalog/sources/"
PACKAGES = "/api/v1/catalog/packages/"


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(**bearer(user))
    return client


class EntryApiTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.source = CatalogSource.objects.create(url="https://library.kiwix.org")
        cls.entries = make_entries(cls.source, 30)
        cls.client_user = make_user(Role.CLIENT)
        cls.manager = make_user(Role.MANAGER)

    def test_an_anonymous_caller_gets_401(self):
        self.assertEqual(api().get(ENTRIES).status_code, 401)
        self.assertEqual(api().get(PACKAGES).status_code, 401)

    def test_a_worker_account_gets_403(self):
        creator = make_user(Role.CREATOR)
        self.assertEqual(api(creator).get(ENTRIES).status_code, 403)
        warehouse = make_user(Role.WAREHOUSE)
        self.assertEqual(api(warehouse).get(PACKAGES).status_code, 403)

    def test_clients_and_staff_read_pages_of_entries_by_title(self):
        for user in (self.client_user, self.manager):
            response = api(user).get(ENTRIES, {"limit": 10, "offset": 5})
            self.assertEqual(response.status_code, 200)
            body = response.json()
            self.assertEqual(body["count"], 30)
            titles = [row["title"] for row in body["results"]]
            self.assertEqual(len(titles), 10)
            self.assertEqual(titles, sorted(titles))
        row = body["results"][0]
        entry = Entry.objects.get(pk=row["id"])
        self.assertEqual(row["languages"], entry.language_list)
        self.assertEqual(row["tags"], entry.tag_list)
        self.assertEqual(row["download_url"], entry.download_url)
        self.assertEqual(row["checksum_url"], entry.checksum_url)
        self.assertEqual(row["size"], entry.size)
        self.assertNotIn("search_text", row)

    def test_a_nul_in_a_filter_is_a_400_naming_it(self):
        # PostgreSQL refused the NUL with a 500 (schemathesis, issue 13).
        for name in ("search", "category"):
            with self.subTest(name=name):
                response = api(self.client_user).get(ENTRIES, {name: "a\x00b"})
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn("NUL", response.json()[name][0])

    def test_search_language_and_category_narrow_the_list(self):
        target = self.entries[7]
        word = target.title.split()[1]
        response = api(self.client_user).get(
            ENTRIES,
            {
                "search": word.upper(),
                "language": target.language_list[0],
                "category": target.category,
            },
        )
        rows = response.json()["results"]
        self.assertIn(str(target.pk), [row["id"] for row in rows])
        for row in rows:
            entry = Entry.objects.get(pk=row["id"])
            self.assertIn(word, entry.search_text)
            self.assertEqual(entry.category, target.category)
            self.assertIn(target.language_list[0], entry.language_list)

    def test_a_two_letter_language_is_read_as_its_iso_639_3_code(self):
        french = api(self.client_user).get(ENTRIES, {"language": "fra"}).json()
        self.assertGreater(french["count"], 0)
        self.assertEqual(
            api(self.client_user).get(ENTRIES, {"language": "fr"}).json(), french
        )

    def test_a_bad_language_or_a_long_search_is_a_400_that_says_how(self):
        response = api(self.client_user).get(ENTRIES, {"language": "french"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("639", response.json()["language"][0])
        response = api(self.client_user).get(ENTRIES, {"search": "x" * 201})
        self.assertEqual(response.status_code, 400)

    def test_removed_entries_are_not_listed_but_are_found_by_id(self):
        removed = self.entries[0]
        Entry.objects.filter(pk=removed.pk).update(removed_at=timezone.now())
        body = api(self.client_user).get(ENTRIES, {"limit": 100}).json()
        self.assertEqual(body["count"], 29)
        self.assertNotIn(str(removed.pk), [row["id"] for row in body["results"]])
        response = api(self.client_user).get(f"{ENTRIES}{removed.pk}/")
        self.assertEqual(response.status_code, 200)
        self.assertIsNotNone(response.json()["removed_at"])

    def test_the_api_never_writes(self):
        response = api(self.manager).post(ENTRIES, {"title": "x"}, format="json")
        self.assertEqual(response.status_code, 405)
        self.assertEqual(Entry.objects.count(), 30)

    def test_a_page_costs_the_same_queries_with_30_or_530_entries(self):
        user = api(self.client_user)

        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                response = user.get(ENTRIES, {"limit": 500, "search": "e"})
            self.assertEqual(response.status_code, 200)
            return len(captured)

        few = queries()
        make_entries(self.source, 500, first=1000)
        self.assertEqual(queries(), few)


class SourceApiTests(TestCase):
    def test_staff_read_when_each_source_last_succeeded_and_why_it_failed(self):
        now = timezone.now()
        CatalogSource.objects.create(
            url="https://library.kiwix.org",
            last_success_at=now - timezone.timedelta(hours=3),
            last_attempt_at=now,
            failing_since=now - timezone.timedelta(minutes=20),
            last_error="https://library.kiwix.org/…: timed out",
        )
        self.assertEqual(api().get(SOURCES).status_code, 401)
        self.assertEqual(api(make_user(Role.CLIENT)).get(SOURCES).status_code, 403)
        response = api(make_user(Role.MANAGER)).get(SOURCES)
        self.assertEqual(response.status_code, 200)
        (row,) = response.json()["results"]
        self.assertIn("last refreshed 3\xa0hours ago", row["state"])
        self.assertIn("failing since 20\xa0minutes ago", row["state"])
        self.assertIn(
            "failed because: https://library.kiwix.org/…: timed out", row["state"]
        )


class PackageApiTests(TestCase):
    def test_offspot_config_apps_and_files_are_offered(self):
        response = api(make_user(Role.CLIENT)).get(PACKAGES)
        self.assertEqual(response.status_code, 200)
        rows = response.json()
        kinds = {row["kind"] for row in rows}
        self.assertEqual(kinds, {"app", "files"})
        idents = [row["ident"] for row in rows]
        self.assertIn("file-manager.offspot.kiwix.org", idents)
        self.assertTrue(all(row["size"] > 0 for row in rows))
