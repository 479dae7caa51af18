"""The picker's search (``Entry.objects.search``), the mapping to offspot-config's
ZimPackage, and the language table."""

import json
from datetime import date
from pathlib import Path
from unittest import skipUnless

from django.db import connection
from django.test import SimpleTestCase, TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from offspot_config.inputs.checksum import Checksum
from offspot_config.packages import ZimPackage

from apps.catalog.languages import TO_ISO639_3, iso639_3
from apps.catalog.models import CatalogSource, Entry, normalize
from apps.catalog.packages import (
    content_entry,
    offspot_packages,
    package_entry,
    zim_package,
)
from apps.catalog.services import entry_fields
from apps.catalog.testing import parsed_entry
from apps.orders import recipes
from apps.orders.contents import validate_contents

ISO_CODES = Path("/usr/share/iso-codes/json/iso_639-3.json")


def entry(source, number, **fields) -> Entry:
    """An entry whose words are only those of its title and summary."""
    fields = {"name": f"zim{number}", "tags": "", "publisher": "", **fields}
    return Entry.objects.create(
        source=source,
        updated_at=timezone.now(),
        **entry_fields(parsed_entry(number, **fields)),
    )


class SearchTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        source = CatalogSource.objects.create(url="https://library.kiwix.org")
        cls.chemistry = entry(
            source,
            1,
            title="Wikipédia chimie",
            summary="Les articles de Chimie organique",
            languages=",fra,",
            category="wikipedia",
        )
        cls.ted = entry(
            source,
            2,
            title="TED Education",
            summary="Talks about teaching",
            languages=",eng,fra,",
            category="ted",
        )
        cls.gutenberg = entry(
            source,
            3,
            title="Project Gutenberg",
            summary="Free books",
            languages=",eng,",
            category="gutenberg",
        )
        cls.removed = entry(
            source,
            4,
            title="Wikipédia physique",
            languages=",fra,",
            category="wikipedia",
            opds_id="removed",
        )
        Entry.objects.filter(pk=cls.removed.pk).update(removed_at=timezone.now())

    def found(self, *args, **kwargs) -> list[str]:
        return list(
            Entry.objects.search(*args, **kwargs).values_list("title", flat=True)
        )

    def test_words_match_title_and_summary_without_case_or_accents(self):
        self.assertEqual(self.found("WIKIPEDIA"), ["Wikipédia chimie"])
        self.assertEqual(self.found("chimie organique"), ["Wikipédia chimie"])
        self.assertEqual(self.found("organique wikipédia"), ["Wikipédia chimie"])
        self.assertEqual(self.found("chimie gutenberg"), [])

    def test_a_language_matches_any_language_of_an_entry(self):
        self.assertEqual(
            self.found(language="fra"), ["TED Education", "Wikipédia chimie"]
        )
        self.assertEqual(
            self.found(language="fr"), ["TED Education", "Wikipédia chimie"]
        )
        self.assertEqual(
            self.found(language="en"), ["Project Gutenberg", "TED Education"]
        )
        self.assertEqual(self.found(language="ra"), [])  # not a part of "fra"

    def test_category_and_words_combine(self):
        self.assertEqual(self.found("t", category="ted"), ["TED Education"])
        self.assertEqual(self.found(category="wikipedia"), ["Wikipédia chimie"])

    def test_removed_entries_are_never_found(self):
        self.assertNotIn("Wikipédia physique", self.found())
        self.assertNotIn("Wikipédia physique", self.found("physique"))

    def test_like_wildcards_in_a_search_are_plain_characters(self):
        # Punctuation is no word: nothing of it reaches a LIKE or a regex.
        self.assertEqual(self.found("%"), self.found())
        self.assertEqual(self.found("_ .*"), self.found())
        self.assertEqual(self.found("chimie%"), ["Wikipédia chimie"])

    def test_a_search_is_one_query(self):
        with CaptureQueriesContext(connection) as queries:
            self.found("wikipedia chimie", language="fr", category="wikipedia")
        self.assertEqual(len(queries), 1)


class NormalizeTests(SimpleTestCase):
    def test_accents_case_and_punctuation_are_dropped(self):
        self.assertEqual(
            normalize("  Wikipédia, CHIMIE_organique!  "), "wikipedia chimie organique"
        )
        self.assertEqual(normalize("Straße Ελληνικά"), "strasse ελληνικα")


class ZimPackageTests(SimpleTestCase):
    def test_an_entry_becomes_offspot_configs_zim_package(self):
        entry = Entry(
            **entry_fields(
                parsed_entry(
                    5,
                    name="wikipedia_fr_all",
                    flavour="maxi",
                    publisher="openZIM",
                    title="Wikipédia",
                    summary="L'encyclopédie",
                    languages=",fra,",
                    tags="wikipedia;_category:wikipedia;_pictures:yes",
                    date=date(2026, 10, 14),
                    size=41338419200,
                    download_url="https://download.kiwix.org/zim/w_2026-10.zim",
                    checksum_url="https://download.kiwix.org/zim/w_2026-10.zim.sha256",
                    illustration_url="https://library.kiwix.org/i/5/?size=48",
                )
            )
        )
        package = zim_package(entry)
        self.assertIsInstance(package, ZimPackage)
        self.assertEqual(package.ident, "openZIM:wikipedia_fr_all:maxi")
        self.assertEqual(package.name, "wikipedia_fr_all")
        self.assertEqual(package.flavour, "maxi")
        self.assertEqual(package.version, "2026-10-14")
        self.assertEqual(package.title, "Wikipédia")
        self.assertEqual(package.description, "L'encyclopédie")
        self.assertEqual(package.languages, ["fra"])
        self.assertEqual(package.tags, ["wikipedia"])
        self.assertEqual(
            package.download_url, "https://download.kiwix.org/zim/w_2026-10.zim"
        )
        self.assertEqual(package.size, 41338419200)
        self.assertEqual(package.icon_url, "https://library.kiwix.org/i/5/?size=48")
        self.assertEqual(
            package.download_checksum,
            Checksum(
                algo="sha-256",
                value="https://download.kiwix.org/zim/w_2026-10.zim.sha256",
                kind="url",
            ),
        )
        self.assertEqual(package.filename, "openZIM_wikipedia_fr_all_maxi.zim")

    def test_an_entry_becomes_a_content_entry_that_configurations_accept(self):
        entry = Entry(
            **entry_fields(
                parsed_entry(
                    6,
                    name="wikipedia_fr_all",
                    flavour="maxi",
                    publisher="openZIM",
                    title="W" * 250,
                    tags="wikipedia;_category:wikipedia;" + "x" * 150,
                    date=date(2026, 10, 14),
                )
            )
        )
        content = content_entry(entry)
        self.assertEqual(content["ident"], "openZIM:wikipedia_fr_all:maxi")
        self.assertEqual(content["kind"], "zim")
        self.assertEqual(content["version"], "2026-10-14")
        self.assertEqual(content["url"], entry.download_url)
        self.assertEqual(content["size"], entry.size)
        self.assertEqual(content["checksum_url"], entry.download_url + ".sha256")
        self.assertEqual(content["languages"], entry.language_list)
        # The content rules' limits: a longer title is cut, a longer tag left out.
        self.assertEqual(content["title"], "W" * 200)
        self.assertEqual(content["tags"], ["wikipedia"])
        package = package_entry("file-manager.offspot.kiwix.org")
        validate_contents([content, package])
        recipe = recipes.render(
            {"ssid": "Kiwix", "admin_password": "hotspot-pw", "contents": [content]}
        )
        self.assertIn("openZIM_wikipedia_fr_all_maxi.zim", recipe.text)

    def test_an_entry_without_a_name_lands_under_its_urls_file_name(self):
        entry = Entry(**entry_fields(parsed_entry(7, name="")))
        content = content_entry(entry)
        self.assertNotIn("ident", content)
        validate_contents([content])

    def test_offspot_configs_own_packages_are_listed_by_title(self):
        packages = offspot_packages()
        self.assertGreater(len(packages), 5)
        titles = [package["title"].casefold() for package in packages]
        self.assertEqual(titles, sorted(titles))
        self.assertEqual({package["kind"] for package in packages}, {"app", "files"})


class LanguageTests(SimpleTestCase):
    def test_two_letter_codes_map_to_kiwix_three_letter_codes(self):
        self.assertEqual(iso639_3("fr"), "fra")
        self.assertEqual(iso639_3("EN"), "eng")
        self.assertEqual(iso639_3("fra"), "fra")
        self.assertEqual(iso639_3("zz"), "zz")

    @skipUnless(ISO_CODES.is_file(), "Debian's iso-codes is not installed")
    def test_the_table_is_debians_iso_codes(self):
        codes = json.loads(ISO_CODES.read_text())["639-3"]
        expected = {
            code["alpha_2"]: code["alpha_3"] for code in codes if "alpha_2" in code
        }
        self.assertEqual(TO_ISO639_3, expected)
