"""System checks that turn bad environment variables into start-up errors."""

from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import models


@register(Tags.compatibility, deploy=False)
def environment_check(app_configs, **kwargs):
    return [
        Error(item.msg, hint=item.hint, id=item.id, obj=item.variable)
        for item in settings.ENV_ERRORS
    ]


@register(Tags.models)
def uuid_primary_keys_check(app_configs, **kwargs):
    """Our models must key on UUIDs: the same migrations then run on every backend
    and no ObjectId ever reaches the API, a token or the FTP server (DESIGN 3)."""
    errors = []
    for model in apps.get_models(include_auto_created=True):
        if not model.__module__.startswith("apps."):
            continue
        if model._meta.auto_created:
            # A many-to-many table Django made itself: it would have an auto key.
            errors.append(
                Error(
                    f"{model._meta.label} is an implicit many-to-many table.",
                    hint="Declare the relation with through= a model that has a "
                    "UUID primary key.",
                    id="imager.E040",
                    obj=model,
                )
            )
        elif not isinstance(model._meta.pk, models.UUIDField):
            errors.append(
                Error(
                    f"{model._meta.label} has no UUID primary key.",
                    hint="Add id = models.UUIDField(primary_key=True, default=uuid4, "
                    "editable=False).",
                    id="imager.E041",
                    obj=model,
                )
            )
    return errors


def static_files_missing() -> str | None:
    """Why the admin's pages would fail to load their styles, or None."""
    if settings.DEBUG:
        return None  # served from the apps' folders
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.exists():
        return None
    return (
        f"Static files are not collected in {settings.STATIC_ROOT} (no "
        "staticfiles.json): with DEBUG off every admin page would answer 500."
    )


@register(Tags.compatibility)
def deployment_check(app_configs, **kwargs):
    """What a production start-up must say (the WSGI server refuses to start on
    the first; imager_site.startup)."""
    found = []
    missing = static_files_missing()
    if missing:
        found.append(
            Warning(
                missing,
                hint="Run `manage.py collectstatic --no-input` (STATIC_ROOT).",
                id="imager.W050",
            )
        )
    if not settings.DEBUG and not settings.REDIS_URL:
        found.append(
            Warning(
                "REDIS_URL is not set: each process counts throttles and login "
                "failures on its own, so limits are multiplied by the number of "
                "processes, and jobs run in the web process.",
                hint="Set REDIS_URL=redis://HOST:6379/0 when running more than one "
                "process.",
                id="imager.W051",
            )
        )
    return found
