"""The client pages (namespace ``client``): configurations and orders."""

from django.urls import path

from apps.orders.views import configurations, orders, picker

urlpatterns = [
    path(
        "configurations/",
        configurations.configuration_list,
        name="configuration_list",
    ),
    path(
        "configurations/new/",
        configurations.configuration_create,
        name="configuration_create",
    ),
    path(
        "configurations/import/",
        configurations.configuration_import,
        name="configuration_import",
    ),
    path("configurations/picker/results/", picker.results, name="picker_results"),
    path("configurations/picker/choose/", picker.choose, name="picker_choose"),
    path(
        "configurations/<uuid:pk>/",
        configurations.configuration_detail,
        name="configuration_detail",
    ),
    path(
        "configurations/<uuid:pk>/edit/",
        configurations.configuration_edit,
        name="configuration_edit",
    ),
    path(
        "configurations/<uuid:pk>/duplicate/",
        configurations.configuration_duplicate,
        name="configuration_duplicate",
    ),
    path(
        "configurations/<uuid:pk>/delete/",
        configurations.configuration_delete,
        name="configuration_delete",
    ),
    path(
        "configurations/<uuid:pk>/export.json",
        configurations.configuration_export,
        name="configuration_export",
    ),
    path(
        "configurations/<uuid:pk>/recipe.yaml",
        configurations.configuration_recipe,
        name="configuration_recipe",
    ),
    path(
        "configurations/<uuid:pk>/branding/<str:which>/",
        configurations.configuration_branding,
        name="configuration_branding",
    ),
    path("orders/", orders.order_list, name="order_list"),
    path("orders/new/", orders.order_create, name="order_create"),
    path("orders/<uuid:pk>/", orders.order_detail, name="order_detail"),
    path("orders/<uuid:pk>/progress/", orders.order_progress, name="order_progress"),
    path("orders/<uuid:pk>/cancel/", orders.order_cancel, name="order_cancel"),
    path("orders/<uuid:pk>/recipe.yaml", orders.order_recipe, name="order_recipe"),
]
