"""Fixtures every test of the repository gets."""

import pytest


@pytest.fixture(autouse=True)
def _no_remembered_warehouse():
    """The API process remembers its warehouse choice for a few seconds; a test's
    rows are gone after it, so each test starts with none remembered."""
    from apps.scheduler.models import Warehouse

    Warehouse.objects.forget_pick()
    yield
