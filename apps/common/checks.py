"""System checks that turn bad environment variables into start-up errors."""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, register
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
