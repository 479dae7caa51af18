"""Start-up guard for servers that do not run Django's system checks (gunicorn)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def refuse_bad_environment() -> None:
    if settings.ENV_ERRORS:
        lines = [f"{e.id} {e.msg} {e.hint}" for e in settings.ENV_ERRORS]
        raise ImproperlyConfigured("Bad environment:\n" + "\n".join(lines))
