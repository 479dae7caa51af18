"""Settings of the operators' pages benchmark (bench/ops_bench.py): the API
benchmark's (production settings read from the environment, plus the timing
middleware) with a bare operators' page, and static files named as they are
(the benchmark runs without ``collectstatic``)."""

from bench.bench_settings import *  # noqa: F403
from bench.bench_settings import STORAGES

ROOT_URLCONF = "bench.ops_bench_urls"
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
