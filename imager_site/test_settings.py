"""Settings for the test suite: the environment is chosen first (tests.databases)."""

from tests.databases import configure

configure()

from imager_site.settings import *  # noqa: E402, F403

# Hashing passwords slowly protects real accounts, not test ones.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
