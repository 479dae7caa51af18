"""rq jobs of the scheduler."""

import logging

from apps.scheduler.services.sweeper import sweep

log = logging.getLogger(__name__)


def sweep_job() -> str:
    report = sweep()
    log.info("sweep: %s", report)
    return str(report)
