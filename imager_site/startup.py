"""Start-up guard for servers that do not run Django's system checks (gunicorn)."""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.common.checks import deployment_check, static_files_missing

log = logging.getLogger("imager.startup")


def refuse_bad_environment() -> None:
    lines = [f"{e.id} {e.msg} {e.hint}" for e in settings.ENV_ERRORS]
    missing = static_files_missing()
    if missing:
        lines.append(f"imager.W050 {missing} Run manage.py collectstatic --no-input.")
    if lines:
        raise ImproperlyConfigured("Bad environment:\n" + "\n".join(lines))
    for warning in deployment_check(None):
        log.warning("%s %s %s", warning.id, warning.msg, warning.hint)
