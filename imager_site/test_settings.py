"""Settings for the test suite: the environment is chosen first (tests.databases)."""

from tests.databases import configure

configure()

from imager_site.settings import *  # noqa: E402, F403
from imager_site.settings import DATA_DIR, DATABASES, REDIS_URL  # noqa: E402

# Hashing passwords slowly protects real accounts, not test ones.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Jobs run at once in tests, so e-mails land in django.core.mail.outbox; one test
# runs the real Redis queue with an rq worker (apps/notifications/tests).
RQ_QUEUES = {
    "default": {"URL": REDIS_URL or "redis://127.0.0.1:6379/15", "ASYNC": False}
}

if DATABASES["default"].get("ENGINE") == "django.db.backends.sqlite3":
    # A file, not memory: the claim race test runs claimers in threads, and SQLite
    # only serialises writers (instead of failing) on a file database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

# The tests serve content, catalogs and registries on loopback, and their
# configurations name it: allowed here, as an operator allows a LAN mirror. The
# tests of the guard itself set the list they need (empty: public only).
OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1"]
