"""Settings of the API benchmark (bench/api_bench.py): the production settings,
read from the same environment, plus a bare endpoint and a timing middleware.

Only the benchmark uses this module (DJANGO_SETTINGS_MODULE=bench.bench_settings),
so the production URLs and middleware stay untouched.
"""

from imager_site.settings import *  # noqa: F403
from imager_site.settings import MIDDLEWARE

ROOT_URLCONF = "bench.bench_urls"

# First in the chain so that its time covers every other middleware, as the
# client sees it minus the HTTP parsing of gunicorn.
MIDDLEWARE = ["bench.bench_urls.ServerTiming", *MIDDLEWARE]
