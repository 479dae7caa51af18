"""The OPDS parser on a page written as Kiwix's public library writes them."""

from datetime import date
from pathlib import Path

from django.test import SimpleTestCase

from apps.catalog.opds import OpdsError, parse_page

SAMPLE = (Path(__file__).parent / "data" / "library_page.xml").read_bytes()
BASE = "https://library.kiwix.org/catalog/v2/entries?start=0&count=4"


class LibraryPageTests(SimpleTestCase):
    def setUp(self):
        self.page = parse_page(SAMPLE, BASE)
        self.by_name = {entry.name: entry for entry in self.page.entries}

    def test_the_paging_numbers_are_read(self):
        self.assertEqual(self.page.total, 10421)
        self.assertEqual(self.page.start, 0)
        self.assertIsNone(self.page.next_url)

    def test_an_entry_without_a_download_link_is_skipped_by_id(self):
        self.assertEqual(len(self.page.entries), 3)
        self.assertEqual(self.page.skipped, ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"])
        self.assertNotIn("nourl_en_all", self.by_name)

    def test_every_field_of_a_wikipedia_entry(self):
        entry = self.by_name["wikipedia_fr_all"]
        self.assertEqual(entry.opds_id, "5b0ca1d8-7c2e-8f1a-3b62-d1e5c2a9f0b3")
        self.assertEqual(entry.title, "Wikipédia")
        self.assertEqual(
            entry.summary, "L\u2019encyclopédie libre, tous les articles avec images"
        )
        self.assertEqual(entry.languages, ",fra,")
        self.assertEqual(entry.category, "wikipedia")
        self.assertEqual(entry.flavour, "maxi")
        self.assertEqual(entry.publisher, "openZIM")
        self.assertEqual(entry.date, date(2026, 10, 14))
        self.assertEqual(entry.period, "2026-10")
        self.assertEqual(entry.size, 41338419200)
        url = (
            "https://download.kiwix.org/zim/wikipedia/wikipedia_fr_all_maxi_2026-10.zim"
        )
        self.assertEqual(entry.download_url, url)
        self.assertEqual(entry.metalink_url, url + ".meta4")
        self.assertEqual(entry.checksum_url, url + ".sha256")
        self.assertEqual(
            entry.illustration_url,
            "https://library.kiwix.org/catalog/v2/illustration/"
            "5b0ca1d8-7c2e-8f1a-3b62-d1e5c2a9f0b3/?size=48",
        )
        self.assertIn("_pictures:yes", entry.tags)

    def test_languages_are_all_kept_and_the_category_falls_back_to_the_tags(self):
        entry = self.by_name["ted_mul_education"]
        self.assertEqual(entry.languages, ",eng,fra,")
        self.assertEqual(entry.category, "ted")
        self.assertEqual(entry.summary, "Talks about teaching & learning")
        self.assertEqual(entry.flavour, "")

    def test_a_file_name_without_a_period_takes_the_month_of_its_date(self):
        entry = self.by_name["gutenberg_en_all"]
        self.assertEqual(entry.period, "2026-07")
        self.assertEqual(
            entry.download_url, "https://mirror.example.org/kiwix/gutenberg_en_all.zim"
        )
        self.assertEqual(entry.metalink_url, "")

    def test_the_content_hash_changes_with_any_field_and_only_then(self):
        again = parse_page(SAMPLE, BASE).entries[0]
        self.assertEqual(again.content_hash, self.page.entries[0].content_hash)
        changed = parse_page(SAMPLE.replace(b"41338419200", b"41338419201"), BASE)
        self.assertNotEqual(
            changed.entries[0].content_hash, self.page.entries[0].content_hash
        )
        self.assertEqual(
            changed.entries[1].content_hash, self.page.entries[1].content_hash
        )


class BrokenPageTests(SimpleTestCase):
    def test_kiwix_serve_3_unescaped_ampersands_are_repaired(self):
        body = SAMPLE.replace(b"start=0&amp;count=4", b"start=0&count=4")
        self.assertEqual(len(parse_page(body, BASE).entries), 3)

    def test_a_page_that_is_not_xml_is_refused(self):
        with self.assertRaisesMessage(OpdsError, "not XML"):
            parse_page(b"<html><body>502 Bad Gateway", BASE)

    def test_xml_that_is_not_an_atom_feed_is_refused(self):
        with self.assertRaisesMessage(OpdsError, "not an Atom feed"):
            parse_page(b"<library><book id='x'/></library>", BASE)

    def test_an_entry_without_an_id_is_refused(self):
        body = SAMPLE.replace(b"urn:uuid:5b0ca1d8-7c2e-8f1a-3b62-d1e5c2a9f0b3", b"", 1)
        with self.assertRaisesMessage(OpdsError, "no usable id"):
            parse_page(body, BASE)

    def test_a_length_that_is_not_a_number_is_refused(self):
        with self.assertRaisesMessage(OpdsError, "length is not a number"):
            parse_page(SAMPLE.replace(b'"41338419200"', b'"lots"'), BASE)

    def test_a_billion_laughs_is_refused_by_expat(self):
        laughs = b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY l0 "ha">'
        for level in range(1, 12):
            previous = f"&l{level - 1};".encode() * 10
            laughs += f'<!ENTITY l{level} "'.encode() + previous + b'">'
        laughs += b']><feed xmlns="http://www.w3.org/2005/Atom">&l11;</feed>'
        with self.assertRaises(OpdsError):
            parse_page(laughs, BASE)

    def test_a_next_link_is_followed_as_given(self):
        body = SAMPLE.replace(
            b'<link rel="start"',
            b'<link rel="next" href="/catalog/v2/entries?start=4&amp;count=4"/>'
            b'<link rel="start"',
        )
        self.assertEqual(
            parse_page(body, BASE).next_url,
            "https://library.kiwix.org/catalog/v2/entries?start=4&count=4",
        )
