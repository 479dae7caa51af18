"""rq cron configuration of the catalog: ``manage.py rqcron apps.catalog.cron``
refreshes it every CATALOG_REFRESH_HOURS on the default queue, where
``manage.py rqworker`` executes it (``apps.scheduler.cron`` has the sweeper)."""

from django.conf import settings
from rq import cron

from apps.catalog.jobs import refresh_catalog_job

cron.register(
    refresh_catalog_job,
    queue_name="default",
    interval=settings.CATALOG_REFRESH_HOURS * 3600,
    # Kiwix's library is some 20 pages of 500 entries: minutes at worst.
    job_timeout=1800,
    # A refresh that has not started within an hour waits for the next one.
    ttl=3600,
    name="catalog-refresh",
)
