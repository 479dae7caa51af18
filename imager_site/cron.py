"""The site's rq cron, one process for every schedule: ``manage.py rqcron
imager_site.cron`` queues these jobs on the default queue, where ``manage.py
rqworker --with-scheduler`` runs them. (rq's cron loads one module per process,
hence one module for the site.)"""

from django.conf import settings
from rq import cron

from apps.catalog.jobs import refresh_catalog_job
from apps.scheduler.jobs import sweep_job

cron.register(
    sweep_job,
    queue_name="default",
    interval=settings.SWEEP_INTERVAL,
    # A sweep that has not started by the next one is not worth running late.
    ttl=settings.SWEEP_INTERVAL,
    job_timeout=max(60, settings.SWEEP_INTERVAL * 4),
    name="sweeper",
)
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
