from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CommonConfig(AppConfig):
    name = "apps.common"
    verbose_name = _("Common")

    def ready(self):
        from apps.common import checks  # noqa: F401 - registers the checks
