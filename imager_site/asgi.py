import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imager_site.settings")

application = get_asgi_application()

from imager_site.startup import refuse_bad_environment  # noqa: E402

refuse_bad_environment()
