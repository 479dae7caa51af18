from django.conf import settings
from django.core.management.base import BaseCommand

from apps.catalog.services import refresh_catalog


class Command(BaseCommand):
    help = (
        "Import the OPDS catalogs of CATALOG_URLS now (or one of them with "
        "--source). Exit code 0: all refreshed; 1: a refresh failed (the last good "
        "catalog is kept); 2: bad usage."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--source",
            metavar="URL",
            help="Refresh only this catalog (one of CATALOG_URLS).",
        )

    def handle(self, *args, **options):
        urls = None
        if options["source"]:
            source = options["source"].rstrip("/")
            if source not in settings.CATALOG_URLS:
                listed = ", ".join(settings.CATALOG_URLS) or "(none)"
                self.stderr.write(
                    f"--source {source} is not in CATALOG_URLS; use one of: {listed}"
                )
                raise SystemExit(2)
            urls = [source]
        verbose = options["verbosity"] > 0

        def on_page(url, number, read, total):
            if verbose:
                of = f" of {total}" if total is not None else ""
                self.stdout.write(f"{url}: page {number}, {read}{of} entries read")

        failed = False
        for report in refresh_catalog(urls=urls, on_page=on_page):
            if report.ok:
                if verbose:
                    self.stdout.write(f"{report.url}: {report.summary()}")
            else:
                failed = True
                self.stderr.write(f"{report.url}: refresh failed: {report.error}")
        if failed:
            raise SystemExit(1)
