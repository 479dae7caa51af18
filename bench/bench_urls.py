"""Bench-only Django code for bench/api_bench.py: the service's URLs plus a bare DRF
endpoint, and a middleware that reports server time and SQL queries per request.

The bare endpoint goes through the same gunicorn, WSGI handler, middleware and DRF
dispatch as the real API but does no authentication and no query: the gap between
it and an API endpoint is what the endpoint itself costs.
"""

import atexit
import cProfile
import io
import itertools
import os
import pstats
import threading
import time
from pathlib import Path

from django.db import connection
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class BareView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("bare/", BareView.as_view(), name="bare"),
    path("", include("imager_site.urls")),
]


def _label(request_path: str) -> str:
    """The endpoint's last path segment (claim, renew, events, image, bare)."""
    return request_path.rstrip("/").rsplit("/", 1)[-1] or "root"


class _Profiles:
    """cProfile of one request in BENCH_PROFILE_EVERY, summed per endpoint and
    written as pstats files (one per endpoint and process) to BENCH_PROFILE_DIR.

    cProfile only follows the thread that enables it, so concurrent requests of
    a gthread worker each get their own profiler and never mix."""

    def __init__(self, folder: str, every: int):
        self.folder = Path(folder)
        self.every = max(1, every)
        wall = os.environ.get("BENCH_PROFILE_CLOCK") == "wall"
        self.clock = time.perf_counter if wall else time.thread_time
        self.counter = itertools.count()
        self.stats: dict[str, pstats.Stats] = {}
        self.lock = threading.Lock()
        atexit.register(self.dump)

    def wanted(self) -> bool:
        return next(self.counter) % self.every == 0

    def add(self, label: str, profile: cProfile.Profile) -> None:
        with self.lock:
            if label in self.stats:
                self.stats[label].add(profile)
            else:
                self.stats[label] = pstats.Stats(profile, stream=io.StringIO())

    def dump(self) -> None:
        with self.lock:
            for label, stats in self.stats.items():
                stats.dump_stats(self.folder / f"{label}-{os.getpid()}.prof")


_profile_dir = os.environ.get("BENCH_PROFILE_DIR")
PROFILES = (
    _Profiles(_profile_dir, int(os.environ.get("BENCH_PROFILE_EVERY", "10")))
    if _profile_dir
    else None
)


class ServerTiming:
    """Adds X-Bench-Ms (time spent in Django) and X-Bench-Queries (SQL statements)
    to every answer, so the client can tell server time from queueing time."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        profile = None
        if PROFILES and PROFILES.wanted():
            # Thread CPU time, not wall time: with many threads per process a
            # wall clock would charge GIL and database waits to whatever
            # function was running, hiding where the CPU goes.
            profile = cProfile.Profile(PROFILES.clock)
        start = time.perf_counter()
        with connection.execute_wrapper(count):
            if profile is None:
                response = self.get_response(request)
            else:
                profile.enable()
                try:
                    response = self.get_response(request)
                finally:
                    profile.disable()
        elapsed = time.perf_counter() - start
        if profile is not None:
            PROFILES.add(_label(request.path), profile)
        response["X-Bench-Ms"] = f"{elapsed * 1000:.3f}"
        response["X-Bench-Queries"] = str(queries)
        return response
