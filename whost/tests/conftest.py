import pytest


@pytest.fixture(autouse=True)
def _fresh_cache(request):
    """Login throttle counters live in the cache: each live test starts with none."""
    if "live_server" not in request.fixturenames:
        yield
        return
    from django.core.cache import cache

    cache.clear()
    yield
