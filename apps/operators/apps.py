from django.apps import AppConfig


class OperatorsConfig(AppConfig):
    """The operators' pages (managers and admins): orders, the workshop board,
    workers, warehouses, the catalog's sources and accounts. No models."""

    name = "apps.operators"
    label = "operators"
