from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from rest_framework.permissions import AllowAny
from rest_framework.routers import APIRootView, DefaultRouter

from apps.accounts import urls as accounts_pages
from apps.accounts.api import urls as accounts_api
from apps.accounts.views import home, set_language
from apps.catalog.api import urls as catalog_api
from apps.common.api.views import HealthView
from apps.orders import urls as client_pages
from apps.orders.api import urls as orders_api
from apps.scheduler.api import urls as scheduler_api


class PublicAPIRootView(APIRootView):
    """The list of endpoints is public; each endpoint states its own permission."""

    permission_classes = (AllowAny,)


router = DefaultRouter()
router.APIRootView = PublicAPIRootView
for api in (accounts_api, catalog_api, orders_api, scheduler_api):
    api.register(router)

api_v1 = [
    # Named paths first: "users/me/" must win over the router's "users/<pk>/".
    *accounts_api.urlpatterns,
    *catalog_api.urlpatterns,
    path("health/", HealthView.as_view(), name="health"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include(accounts_pages)),
    path("", include((client_pages, "client"), namespace="client")),
    path("ops/", include("apps.operators.urls")),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"),
        name="redoc",
    ),
    # Django's URL for its set_language view, through ours, which also saves a
    # signed-in user's choice.
    path("i18n/setlang/", set_language, name="set_language"),
]

admin.site.site_header = _("Imager service")
admin.site.site_title = _("Imager service")
# Uploaded files (the clients' branding) are never served as they are: they reach
# the creator inside the hotspot's configuration, and people through views that
# check who asks.
