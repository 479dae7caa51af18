"""rq cron configuration: ``manage.py rqcron apps.scheduler.cron`` runs the sweeper
every SWEEP_INTERVAL seconds on the default queue, where ``manage.py rqworker``
(``--with-scheduler``) executes it."""

from django.conf import settings
from rq import cron

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
