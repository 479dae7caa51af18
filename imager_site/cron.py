"""The site's rq cron, one process for every schedule: ``manage.py rqcron
imager_site.cron`` runs the sweeper every SWEEP_INTERVAL seconds and refreshes
the content catalog every CATALOG_REFRESH_HOURS, on the default queue, where
``manage.py rqworker --with-scheduler`` executes them. rq's cron loads one module
per process; each app keeps its own schedule in its ``cron`` module."""

from apps.catalog import cron as catalog_cron
from apps.scheduler import cron as scheduler_cron

#: The schedules this module registers (importing them registered them).
SCHEDULES = (scheduler_cron, catalog_cron)
