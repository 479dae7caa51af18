import pytest


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield


# The warehouse's live tests (tests/test_warehouse*.py) share these.


@pytest.fixture
def world():
    from apps.scheduler.testing import World

    return World()


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def warehouse(live_server, world, store):
    from tests.test_warehouse import running

    with running(live_server, store) as started:
        yield started
