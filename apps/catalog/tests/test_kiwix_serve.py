"""Importing a real Kiwix catalog: kiwix-serve (Debian kiwix-tools) serving ZIM
files made with zimwriterfs, read page by page; then again after a ZIM is removed,
while the server is down, and when it lists nothing."""

import hashlib
import io
import shutil
import tempfile
from pathlib import Path
from unittest import skipIf

import django_rq
import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from rq.cron import CronScheduler
from rq.worker import SimpleWorker

from apps.catalog.jobs import refresh_catalog_job
from apps.catalog.models import CatalogSource, Entry
from apps.catalog.packages import zim_package
from apps.catalog.services import refresh_catalog
from apps.catalog.tests.kiwix import ZIMS, KiwixCatalog, missing_tools

PAGE_SIZE = 2  # three ZIMs: two pages


@skipIf(missing_tools() is not None, missing_tools())
class KiwixServeTests(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = Path(tempfile.mkdtemp(prefix="kiwix-catalog-"))
        cls.kiwix = KiwixCatalog(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.kiwix.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        self.kiwix.start(ZIMS)
        self.settings_override = override_settings(
            CATALOG_URLS=[self.kiwix.url],
            OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"],
            CATALOG_PAGE_SIZE=PAGE_SIZE,
        )
        self.settings_override.enable()
        self.addCleanup(self.settings_override.disable)
        self.addCleanup(self.kiwix.stop)

    def command(self, *args) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("refresh_catalog", *args, stdout=out, stderr=err)
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, out.getvalue(), err.getvalue()

    def snapshot(self) -> dict:
        return {row["id"]: row for row in Entry.objects.values()}

    def test_the_command_imports_every_field_of_every_zim_page_by_page(self):
        code, out, err = self.command()
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"{self.kiwix.url}: page 1, 2 of 3 entries read", out)
        self.assertIn(f"{self.kiwix.url}: page 2, 3 of 3 entries read", out)
        self.assertIn("3 new, 0 changed, 0 removed, 0 unchanged", out)

        source = CatalogSource.objects.get()
        self.assertEqual(source.url, self.kiwix.url)
        self.assertEqual(source.entry_count, 3)
        self.assertIsNotNone(source.last_success_at)
        self.assertEqual((source.last_error, source.failing_since), ("", None))
        entries = {entry.name: entry for entry in Entry.objects.all()}
        self.assertEqual(sorted(entries), sorted(zim.name for zim in ZIMS))
        for zim in ZIMS:
            entry = entries[zim.name]
            path = self.kiwix.paths[zim.name]
            self.assertEqual(entry.source_id, source.pk)
            self.assertEqual(entry.title, zim.title)
            self.assertEqual(entry.summary, zim.description)
            self.assertEqual(entry.language_list, zim.language.split(","))
            self.assertEqual(entry.category, zim.category)
            self.assertEqual(entry.flavour, zim.flavour)
            self.assertEqual(entry.publisher, "Kiwix")
            self.assertEqual(entry.period, zim.period)
            self.assertIsNotNone(entry.date)
            self.assertTrue(entry.tags.startswith(zim.tags))
            self.assertIsNone(entry.removed_at)
            # kiwix-manage keeps sizes in KiB: the catalog's length is rounded.
            self.assertLess(abs(entry.size - path.stat().st_size), 1024)
            download = self.kiwix.download_url(zim)
            self.assertEqual(entry.download_url, download)
            self.assertEqual(entry.metalink_url, download + ".meta4")
            # The URLs lead to the file, its checksum and its illustration.
            body = requests.get(entry.download_url, timeout=10).content
            self.assertEqual(body, path.read_bytes())
            published = requests.get(entry.checksum_url, timeout=10).text.split()[0]
            self.assertEqual(published, hashlib.sha256(body).hexdigest())
            self.assertTrue(entry.illustration_url.startswith(self.kiwix.url))
            icon = requests.get(entry.illustration_url, timeout=10)
            self.assertEqual(icon.content[:8], b"\x89PNG\r\n\x1a\n")
            package = zim_package(entry)
            self.assertEqual(package.ident, f"Kiwix:{zim.name}:{zim.flavour}")
            self.assertEqual(package.download_size, entry.size)

    def test_a_removed_zim_is_marked_removed_and_nothing_else_is_written(self):
        self.assertEqual(self.command()[0], 0)
        before = self.snapshot()
        gone = Entry.objects.get(name="gutenberg_en_all")

        self.kiwix.start(ZIMS[:2])
        with CaptureQueriesContext(connection) as queries:
            code, out, _err = self.command()
        self.assertEqual(code, 0)
        self.assertIn("0 new, 0 changed, 1 removed, 2 unchanged", out)
        after = self.snapshot()
        self.assertIsNotNone(after[gone.pk]["removed_at"])
        for pk, row in before.items():
            if pk != gone.pk:
                self.assertEqual(after[pk], row)  # not rewritten: same updated_at
        entry_writes = [
            query["sql"]
            for query in queries.captured_queries
            if "catalog_entry" in query["sql"]
            and query["sql"].lstrip().upper().startswith(("UPDATE", "INSERT"))
        ]
        if connection.vendor != "mongodb":  # its queries are not SQL
            self.assertEqual(len(entry_writes), 1, entry_writes)
        self.assertEqual(
            sorted(Entry.objects.search().values_list("name", flat=True)),
            ["ted_mul_education", "wikipedia_fr_chemistry"],
        )
        self.assertEqual(CatalogSource.objects.get().entry_count, 2)

        # Listed again: it comes back, the same row.
        self.kiwix.start(ZIMS)
        code, out, _err = self.command()
        self.assertIn("0 new, 1 changed, 0 removed, 2 unchanged", out)
        self.assertIsNone(Entry.objects.get(pk=gone.pk).removed_at)

    def test_a_refresh_while_the_server_is_down_changes_nothing_and_says_why(self):
        self.assertEqual(self.command()[0], 0)
        before = self.snapshot()
        success = CatalogSource.objects.get().last_success_at
        self.kiwix.stop()

        code, _out, err = self.command()
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("refresh failed", err)
        self.assertIn("cannot connect", err)
        self.assertEqual(self.snapshot(), before)
        source = CatalogSource.objects.get()
        self.assertEqual(source.last_success_at, success)
        self.assertIn("cannot connect", source.last_error)
        self.assertIsNotNone(source.failing_since)
        self.assertGreater(source.last_attempt_at, success)
        self.assertIn("the last attempt failed because", source.state())
        self.assertEqual(Entry.objects.search().count(), 3)

        # Back up: the next refresh clears the failure.
        self.kiwix.start(ZIMS)
        self.assertEqual(self.command()[0], 0)
        source.refresh_from_db()
        self.assertEqual((source.last_error, source.failing_since), ("", None))

    def test_a_server_that_lists_nothing_does_not_empty_the_catalog(self):
        self.assertEqual(self.command()[0], 0)
        self.kiwix.start([])
        code, _out, err = self.command()
        self.assertEqual(code, 1)
        self.assertIn("lists no entry", err)
        self.assertEqual(Entry.objects.search().count(), 3)

    def test_a_private_address_is_refused_unless_its_network_is_allowed(self):
        with override_settings(OUTBOUND_ALLOWED_NETWORKS=[]):
            code, _out, err = self.command()
        self.assertEqual(code, 1)
        self.assertIn("not a public address", err)
        self.assertFalse(Entry.objects.exists())

    def test_a_source_not_in_the_settings_is_bad_usage(self):
        code, _out, err = self.command("--source", "https://example.org")
        self.assertEqual(code, 2)
        self.assertIn("not in CATALOG_URLS", err)
        self.assertFalse(CatalogSource.objects.exists())
        self.assertEqual(self.command("--source", self.kiwix.url + "/")[0], 0)

    def test_the_rq_job_refreshes_through_redis_and_the_cron_schedules_it(self):
        queue = django_rq.get_queue("default", is_async=True)
        queue.empty()
        queue.enqueue(refresh_catalog_job)
        worker = django_rq.get_worker("default", worker_class=SimpleWorker)
        worker.work(burst=True)
        self.assertEqual(Entry.objects.search().count(), 3)

        scheduler = CronScheduler(connection=queue.connection)
        scheduler.load_config_from_file("imager_site.cron")
        jobs = {job.name: job for job in scheduler.get_jobs()}
        self.assertEqual(set(jobs), {"sweeper", "catalog-refresh"})
        self.assertEqual(jobs["catalog-refresh"].interval, 24 * 3600)
        self.assertEqual(jobs["catalog-refresh"].queue_name, "default")
        self.assertEqual(jobs["sweeper"].interval, settings.SWEEP_INTERVAL)

    def test_a_refresh_already_running_is_not_started_twice(self):
        (source,) = refresh_catalog() and CatalogSource.objects.all()
        CatalogSource.objects.filter(pk=source.pk).update(
            refreshing_until=source.last_attempt_at.replace(year=2999)
        )
        (report,) = refresh_catalog()
        self.assertIn("another refresh", report.error)
        source.refresh_from_db()
        self.assertEqual(source.last_error, "")
