"""The content picker: search with language and category over a catalog of
thousands, pages at a constant number of queries, adding and removing entries
with the running total, offspot-config's minimum size and the smallest card."""

import json

from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import Entry
from apps.catalog.packages import content_entry
from apps.catalog.testing import make_entries
from apps.orders.cards import smallest_card_gb
from apps.orders.models import Configuration
from apps.orders.services import preview
from apps.orders.tests.pages import PageTestCase, catalog
from apps.orders.tests.test_configuration_pages import form_data
from apps.orders.tests.test_configurations import image_bytes
from apps.scheduler.testing import ZIM

RESULTS = "/configurations/picker/results/"
CHOOSE = "/configurations/picker/choose/"


class PickerTestCase(PageTestCase):
    def setUp(self):
        super().setUp()
        self.entries = catalog(45)

    def results(self, **data):
        return self.client.post(RESULTS, {"contents": "[]", **data})

    def choose(self, chosen, **data):
        return self.client.post(CHOOSE, form_data(contents=json.dumps(chosen), **data))

    def chosen_of(self, response) -> list:
        return json.loads(response.context["contents_json"])


class SearchTests(PickerTestCase):
    def test_results_come_by_pages_of_twenty_in_title_order(self):
        first = self.results()
        self.assertEqual(first.context["page"].paginator.count, 45)
        self.assertContains(first, 'data-testid="picker-result"', count=20)
        titles = [entry.title for entry, _ in first.context["rows"]]
        self.assertEqual(titles, sorted(titles))
        third = self.results(page="3")
        self.assertContains(third, 'data-testid="picker-result"', count=5)
        self.assertContains(third, "Page 3 of 3")
        # offspot-config's apps and files come on the first page only.
        self.assertContains(first, 'data-testid="picker-package"')
        self.assertNotContains(third, 'data-testid="picker-package"')

    def test_words_language_and_category_filter_as_the_catalog_search_does(self):
        for filters in (
            {"q": "chemistry"},
            {"picker_language": "fr"},
            {"picker_language": "fra", "category": "wikipedia"},
            {"q": "history", "category": "ted"},
        ):
            with self.subTest(**filters):
                response = self.results(**filters)
                expected = Entry.objects.search(
                    filters.get("q", ""),
                    language=filters.get("picker_language", ""),
                    category=filters.get("category", ""),
                )
                shown = [entry.pk for entry, _ in response.context["rows"]]
                self.assertEqual(shown, [e.pk for e in expected[:20]])

    def test_a_search_that_finds_nothing_says_what_to_try(self):
        response = self.results(q="nothing-like-this")
        self.assertContains(response, 'data-testid="picker-no-result"')

    def test_a_bad_language_or_page_is_ignored_without_an_error(self):
        response = self.results(picker_language="<script>", page="x99")
        self.assertEqual(response.context["page"].number, 1)
        self.assertEqual(response.context["page"].paginator.count, 45)

    def test_packages_follow_the_words_and_the_language(self):
        response = self.results(q="file manager")
        idents = [package["ident"] for package, _ in response.context["packages"]]
        self.assertEqual(idents, ["file-manager.offspot.kiwix.org"])
        arabic = self.results(picker_language="ar").context["packages"]
        self.assertTrue(arabic)
        self.assertTrue(
            all({"ara", "mul"} & set(package["languages"]) for package, _ in arabic)
        )
        self.assertEqual(self.results(category="ted").context["packages"], [])

    def test_every_page_costs_the_same_few_queries_whatever_the_catalog_holds(self):
        def queries_of(**data) -> int:
            with CaptureQueriesContext(connection) as queries:
                self.results(**data)
            return len(queries)

        counts = [queries_of(page=page) for page in ("1", "2", "3")]
        counts.append(queries_of(q="health", picker_language="hin", category="ted"))
        make_entries(self.entries[0].source, 400, first=1000)
        counts += [queries_of(page="1"), queries_of(page="20")]
        self.assertEqual(len(set(counts)), 1, counts)
        # The session, the account, then the count and the page.
        self.assertLessEqual(counts[0], 4)

    def test_rows_already_chosen_offer_to_remove_them(self):
        entry = self.results().context["rows"][0][0]
        chosen = [dict(ZIM), content_entry(entry)]
        response = self.client.post(RESULTS, {"contents": json.dumps(chosen)})
        self.assertEqual(response.context["rows"][0][1], 2)
        self.assertContains(response, '{"remove": "2"}')

    def test_anonymous_callers_workers_and_forgotten_tokens_are_refused(self):
        self.assert_sent_to_login(RESULTS, method="post")
        self.assert_refused_to_workers(RESULTS, method="post")
        self.assert_csrf_needed(RESULTS)
        self.assertEqual(self.client.get(RESULTS).status_code, 405)

    def test_a_part_asked_after_the_session_ended_sends_the_page_to_log_in(self):
        response = self.as_user(None).post(
            RESULTS,
            {},
            HTTP_HX_REQUEST="true",
            HTTP_HX_CURRENT_URL="http://testserver/configurations/new/",
        )
        self.assertEqual(response.status_code, 401)
        self.assertEqual(
            response["HX-Redirect"], "/accounts/login/?next=/configurations/new/"
        )


class ChooseTests(PickerTestCase):
    def test_adding_an_entry_shows_the_total_the_minimum_size_and_the_card(self):
        entry = Entry.objects.search().first()  # the first row of the results
        response = self.choose([ZIM], add=f"entry:{entry.pk}")
        chosen = self.chosen_of(response)
        self.assertEqual(chosen, [ZIM, content_entry(entry)])
        expected = preview({**form_data(), "contents": chosen})
        self.assertEqual(response.context["preview"], expected)
        self.assertEqual(expected.total_size, ZIM["size"] + entry.size)
        self.assertEqual(expected.smallest_card_gb, 8)
        self.assertContains(response, f'data-bytes="{expected.total_size}"')
        self.assertContains(response, f'data-bytes="{expected.image_bytes}"')
        self.assertContains(response, 'data-testid="picker-smallest-card" data-gb="8"')
        # The results come along, out of band, with the entry now removable.
        self.assertContains(
            response,
            'id="picker-results" data-testid="picker-results" hx-swap-oob="true"',
        )
        self.assertEqual(response.context["rows"][0], (entry, 2))
        # Nothing is stored: the draft lives in the form.
        self.config.refresh_from_db()
        self.assertEqual(self.config.contents, [ZIM])

    def test_a_big_entry_asks_for_a_bigger_card(self):
        entry = self.entries[1]
        Entry.objects.filter(pk=entry.pk).update(size=20 * 10**9)
        response = self.choose([ZIM], add=f"entry:{entry.pk}")
        needed = response.context["preview"].image_bytes
        self.assertGreater(needed, 20 * 10**9)
        self.assertEqual(response.context["preview"].smallest_card_gb, 32)
        self.assertEqual(smallest_card_gb(needed), 32)

    def test_adding_a_package_and_removing_by_position(self):
        response = self.choose([ZIM], add="package:file-manager.offspot.kiwix.org")
        chosen = self.chosen_of(response)
        self.assertEqual(
            chosen[1], {"kind": "package", "ident": "file-manager.offspot.kiwix.org"}
        )
        self.assertContains(response, "File Manager")
        response = self.choose(chosen, remove="1")
        self.assertEqual(self.chosen_of(response), [chosen[1]])
        response = self.choose(self.chosen_of(response), remove="1")
        self.assertEqual(self.chosen_of(response), [])
        self.assertContains(response, 'data-testid="picker-chosen-empty"')
        self.assertIsNone(response.context["preview"].image_bytes)

    def test_what_cannot_be_added_is_said_and_changes_nothing(self):
        removed = self.entries[2]
        Entry.objects.filter(pk=removed.pk).update(removed_at=removed.updated_at)
        first = content_entry(self.entries[3])
        cases = [
            (f"entry:{removed.pk}", "not in the catalog any more"),
            ("entry:not-a-uuid", "not in the catalog any more"),
            (f"entry:{self.entries[3].pk}", "chosen already"),
            ("package:no.such.package", "not in offspot-config"),
        ]
        for key, words in cases:
            with self.subTest(key=key):
                response = self.choose([first], add=key)
                self.assertEqual(self.chosen_of(response), [first])
                self.assertContains(response, words)

    def test_a_problem_with_the_content_is_shown_and_no_size_guessed(self):
        twice = {**ZIM, "url": "http://127.0.0.1:9/other/wikipedia_test.zim"}
        response = self.choose([ZIM, twice])
        self.assertContains(response, 'data-testid="picker-problems"')
        self.assertIsNone(response.context["preview"].image_bytes)

    def test_the_stored_branding_of_the_configuration_being_edited_counts(self):
        plain = self.choose([ZIM]).context["preview"].image_bytes
        self.config.branding_logo = ContentFile(
            image_bytes(size=(900, 900)), name="l.png"
        )
        self.config.save()
        edited = self.choose([ZIM], picker_configuration=str(self.config.pk))
        self.assertGreater(edited.context["preview"].image_bytes, plain)
        # Another client's configuration lends nothing.
        other = self.as_user(self.other).post(
            CHOOSE,
            form_data(
                contents=json.dumps([ZIM]), picker_configuration=str(self.config.pk)
            ),
        )
        self.assertEqual(other.context["preview"].image_bytes, plain)

    def test_the_picked_content_is_what_the_saved_configuration_gets(self):
        response = self.choose([], add=f"entry:{self.entries[4].pk}")
        contents = response.context["contents_json"]
        self.client.post("/configurations/new/", form_data(contents=contents))
        created = Configuration.objects.get(name="Library kit")
        self.assertEqual(created.contents, [content_entry(self.entries[4])])
        self.assertEqual(created.image_bytes, created.render().min_size)

    def test_the_language_filter_is_not_the_hotspots_language(self):
        # The picker lives inside the configuration's form, which posts every
        # field: a filter named "language" overrode the hotspot's language
        # (and "any language" made saving fail with "This field is required").
        page = self.client.get("/configurations/new/").content.decode()
        form = page[page.index('id="configuration-form"') :]
        form = form[: form.index("</form>")]
        self.assertEqual(form.count('name="language"'), 1)
        self.assertEqual(form.count('name="picker_language"'), 1)
        data = form_data(language="fr", picker_language="", q="", category="")
        self.client.post("/configurations/new/", data)
        self.assertEqual(Configuration.objects.get(name="Library kit").language, "fr")

    def test_anonymous_callers_workers_and_forgotten_tokens_are_refused(self):
        self.assert_sent_to_login(CHOOSE, method="post")
        self.assert_refused_to_workers(CHOOSE, method="post")
        self.assert_csrf_needed(CHOOSE, {"add": f"entry:{self.entries[0].pk}"})
        self.assertEqual(self.client.get(CHOOSE).status_code, 405)
