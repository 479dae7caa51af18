from django.urls import path

from apps.catalog.api import views


def register(router):
    router.register("catalog/entries", views.EntryViewSet, basename="catalog-entry")
    router.register("catalog/sources", views.SourceViewSet, basename="catalog-source")


urlpatterns = [
    path("catalog/packages/", views.PackageView.as_view(), name="catalog-packages"),
]
