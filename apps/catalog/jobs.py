"""rq jobs of the catalog."""

import logging

from apps.catalog.services import refresh_catalog

log = logging.getLogger(__name__)


def refresh_catalog_job() -> str:
    """Refresh every source. A failed source is recorded on its CatalogSource
    (the staff pages show it) and does not fail the job: the next run retries."""
    reports = refresh_catalog()
    for report in reports:
        level = logging.INFO if report.ok else logging.WARNING
        log.log(level, "catalog refresh %s: %s", report.url, report.summary())
    return "; ".join(f"{report.url}: {report.summary()}" for report in reports)
