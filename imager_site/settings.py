"""Settings of the imager service, all read from environment variables.

With no environment at all the service runs on the embedded default: SQLite in the
data folder, DEBUG on, development keys generated there on first start. Every variable
is listed in the README. Bad values are collected by ``imager_site.env`` and reported
by the system checks (``apps.common.checks``), which stop start-up with a hint.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from offspot_runtime.checks import is_valid_tld

from imager_site import env, keys
from outbound.guard import Allowed, url_problem

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.boolean("DEBUG", default=True)
DATA_DIR = env.directory("IMAGER_DATA_DIR", BASE_DIR / "data")

# --- Secrets -----------------------------------------------------------------------

SECRET_KEY = env.raw("SECRET_KEY")
if SECRET_KEY is None:
    if DEBUG:
        SECRET_KEY = keys.development_secret_key(DATA_DIR)
    else:
        env.error(
            "imager.E010",
            "SECRET_KEY",
            "SECRET_KEY is not set and DEBUG is off.",
            "Set SECRET_KEY to a long random string, for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
        )
        SECRET_KEY = "missing-secret-key"  # noqa: S105 - start-up is refused by E010
elif not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    # Django's own deploy check only warns; a guessable key signs every session.
    env.error(
        "imager.E014",
        "SECRET_KEY",
        f"SECRET_KEY has {len(SECRET_KEY)} characters ({len(set(SECRET_KEY))} "
        "different): too weak to sign sessions with DEBUG off.",
        "Set SECRET_KEY to 50 or more random characters, for example the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
    )


def _jwt_private_pem() -> str | None:
    inline = env.raw("JWT_PRIVATE_KEY")
    if inline:
        return inline.replace("\\n", "\n")
    path = env.raw("JWT_PRIVATE_KEY_FILE")
    if path:
        try:
            return Path(path).read_text()
        except OSError as exc:
            env.error(
                "imager.E011",
                "JWT_PRIVATE_KEY_FILE",
                f"JWT_PRIVATE_KEY_FILE: cannot read {path} ({exc.strerror}).",
                "Point JWT_PRIVATE_KEY_FILE to a readable PEM RSA private key.",
            )
            return None
    if DEBUG:
        return keys.development_private_key(DATA_DIR)
    env.error(
        "imager.E011",
        "JWT_PRIVATE_KEY_FILE",
        "No JWT signing key is set and DEBUG is off.",
        "Set JWT_PRIVATE_KEY_FILE to a PEM RSA private key of 2048 bits or more "
        "(`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072`).",
    )
    return None


_pem = _jwt_private_pem()
JWT_PRIVATE_KEY = None
if _pem is not None:
    try:
        JWT_PRIVATE_KEY = keys.load_private_key(_pem)
    except ValueError as exc:
        env.error(
            "imager.E012",
            "JWT_PRIVATE_KEY_FILE",
            f"The JWT signing key is unusable: {exc}.",
            "Give a PEM RSA private key of 2048 bits or more, without a passphrase.",
        )
if JWT_PRIVATE_KEY is None:
    # A throw-away key lets Django finish loading so the checks can report the
    # problem; start-up is refused, so nothing is ever signed with it.
    JWT_PRIVATE_KEY = keys.load_private_key(keys.development_private_key(DATA_DIR))
JWT_PUBLIC_JWK = keys.public_jwk(JWT_PRIVATE_KEY)

# --- Hosts -------------------------------------------------------------------------

ALLOWED_HOSTS = env.csv(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
if not DEBUG and not ALLOWED_HOSTS:
    env.error(
        "imager.E013",
        "ALLOWED_HOSTS",
        "ALLOWED_HOSTS is empty and DEBUG is off: every request would be refused.",
        "Set ALLOWED_HOSTS to the comma-separated host names the site is served on.",
    )
CSRF_TRUSTED_ORIGINS = env.csv("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env.string("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Applications ------------------------------------------------------------------

DATABASE_URL = env.string("DATABASE_URL", f"sqlite:///{DATA_DIR / 'imager.sqlite3'}")
DATABASE_SCHEME = urlsplit(DATABASE_URL).scheme.lower()
USING_MONGODB = DATABASE_SCHEME in {"mongodb", "mongodb+srv"}

# On MongoDB, Django's own apps get ObjectId primary keys (DESIGN section 3): their
# AppConfigs and migrations are swapped for the ones in imager_site.mongo_apps.
_mongo = "imager_site.mongo_apps."
INSTALLED_APPS = [
    _mongo + "MongoAdminConfig" if USING_MONGODB else "django.contrib.admin",
    _mongo + "MongoAuthConfig" if USING_MONGODB else "django.contrib.auth",
    _mongo + "MongoContentTypesConfig"
    if USING_MONGODB
    else "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "crispy_forms",
    "crispy_bootstrap5",
    _mongo + "MongoDjangoRQConfig" if USING_MONGODB else "django_rq",
    _mongo + "MongoAxesConfig" if USING_MONGODB else "axes",
    "apps.common",
    "apps.accounts",
    "apps.orders",
    "apps.scheduler",
    "apps.notifications",
    "apps.catalog",
    "apps.operators",
]
if USING_MONGODB:
    INSTALLED_APPS.insert(0, "django_mongodb_backend")
    MIGRATION_MODULES = {
        "admin": "imager_site.mongo_migrations.admin",
        "auth": "imager_site.mongo_migrations.auth",
        "contenttypes": "imager_site.mongo_migrations.contenttypes",
        "django_rq": "imager_site.mongo_migrations.django_rq",
        "axes": "imager_site.mongo_migrations.axes",
    }
    DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
else:
    # Our own models all declare a UUID primary key; this only covers Django's.
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware (it needs the user), to override the
    # language LocaleMiddleware took from the browser.
    "apps.accounts.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers the requests of locked-out clients.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "imager_site.urls"
WSGI_APPLICATION = "imager_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------


def _database() -> dict:
    if USING_MONGODB:
        name = urlsplit(DATABASE_URL).path.lstrip("/").split("?")[0]
        if not name:
            env.error(
                "imager.E020",
                "DATABASE_URL",
                "DATABASE_URL names no MongoDB database.",
                "Add the database name after the host: mongodb://HOST:27017/imager",
            )
            return {"ENGINE": "django.db.backends.dummy"}
        return {"ENGINE": "django_mongodb_backend", "HOST": DATABASE_URL, "NAME": name}
    if DATABASE_SCHEME in {"postgres", "postgresql", "pgsql", "sqlite"}:
        import dj_database_url

        try:
            config = dj_database_url.parse(DATABASE_URL, conn_max_age=60)
        except ValueError as exc:
            env.error(
                "imager.E021",
                "DATABASE_URL",
                f"DATABASE_URL cannot be read: {exc}.",
                "Use sqlite:////absolute/path.sqlite3 or postgres://USER@HOST:5432/NAME",
            )
            return {"ENGINE": "django.db.backends.dummy"}
        if DATABASE_SCHEME == "sqlite":
            # SQLite waits for a lock instead of failing at once when the web
            # process and a job write together.
            # WAL lets readers go on while one process writes (web, jobs and
            # the sweeper share the embedded database).
            config["OPTIONS"] = {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
            config["CONN_MAX_AGE"] = 0
        return config
    env.error(
        "imager.E022",
        "DATABASE_URL",
        f"DATABASE_URL has the scheme {DATABASE_SCHEME or '(none)'!r}, "
        "which is not supported.",
        "Use sqlite:///PATH, postgres://USER@HOST:5432/NAME or "
        "mongodb://HOST:27017/NAME (leave it unset for the embedded SQLite).",
    )
    # The dummy backend refuses every query, so nothing runs on a wrong database.
    return {"ENGINE": "django.db.backends.dummy"}


DATABASES = {"default": _database()}
if "ENGINE" in DATABASES["default"] and DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.string(
        "TEST_DATABASE_NAME", "test_imager"
    )

AUTH_USER_MODEL = "accounts.User"
_validators = "django.contrib.auth.password_validation."
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": _validators + "UserAttributeSimilarityValidator"},
    {"NAME": _validators + "MinimumLengthValidator"},
    {"NAME": _validators + "CommonPasswordValidator"},
    {"NAME": _validators + "NumericPasswordValidator"},
]
# The site's login page (/accounts/login/); "/" (home) then sends each role to
# its pages: clients to their orders, staff to STAFF_HOME_URL (a URL name).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
STAFF_HOME_URL = "ops:board"
# django-axes first: it refuses the passwords of a locked-out client before
# Django checks them (admin login, API token requests alike).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Redis, cache, jobs -------------------------------------------------------------

REDIS_URL = env.raw("REDIS_URL")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    env.error(
        "imager.E030",
        "REDIS_URL",
        f"REDIS_URL={REDIS_URL!r} is not a Redis URL.",
        "Use redis://HOST:6379/0 (or leave it unset to run jobs in the web process).",
    )
    REDIS_URL = None

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.string("CACHE_KEY_PREFIX", "imager"),
        }
    }
    RQ_QUEUES = {
        "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
    }
else:
    # Embedded default: no Redis. Jobs run synchronously in the process that
    # enqueues them (django-rq's ASYNC=False), the cache is per process.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:6379/0", "ASYNC": False}}

# Our code queues jobs in transaction.on_commit itself (apps.notifications);
# django-rq must then enqueue at once rather than defer a second time.
RQ = {"COMMIT_MODE": "auto"}

# --- API and tokens -----------------------------------------------------------------

AUTH_THROTTLE_RATE = env.string("AUTH_THROTTLE_RATE", "10/min")
# Reverse proxies in front of the site that add X-Forwarded-For: 0 trusts no such
# header (a client could choose its own address), 1 takes the address the proxy
# saw. Throttles and login lockouts count by that address.
NUM_PROXIES = env.integer("NUM_PROXIES", 0)
# Failed logins (admin and API) before a username is locked out from an address.
LOGIN_FAILURE_LIMIT = env.integer("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_LOCKOUT_MINUTES = env.integer("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_CLIENT_IP_CALLABLE = "apps.accounts.security.client_ip"
AXES_VERBOSE = False
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"auth": AUTH_THROTTLE_RATE},
    "EXCEPTION_HANDLER": "apps.common.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "apps.common.api.Pagination",
    "DEFAULT_PARSER_CLASSES": [
        "apps.common.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "NUM_PROXIES": NUM_PROXIES,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    # Lifetimes are part of the service's contract (DESIGN section 4).
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=60),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=30),
    "ROTATE_REFRESH_TOKENS": True,
    "ALGORITHM": "RS256",
    "SIGNING_KEY": JWT_PRIVATE_KEY,
    "VERIFYING_KEY": JWT_PRIVATE_KEY.public_key(),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    # The obtain view sends user_logged_in, which records the last login.
    "UPDATE_LAST_LOGIN": False,
    "AUTH_TOKEN_CLASSES": ("apps.accounts.tokens.AccessToken",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Imager service API",
    "DESCRIPTION": "Scheduler API of the SD-card imager service: accounts, orders, "
    "tasks and leases. Workers, the warehouse and the host tool use it.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: the pages
    # load nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Scheduling (DESIGN 5) ----------------------------------------------------------

LEASE_SECONDS = env.integer("LEASE_SECONDS", 120, minimum=10)
WORKER_OFFLINE_AFTER = env.integer("WORKER_OFFLINE_AFTER", 120, minimum=10)
TASK_MAX_ATTEMPTS = env.integer("TASK_MAX_ATTEMPTS", 3, minimum=1)
CARD_BUDGET = env.integer("CARD_BUDGET", 3, minimum=1)
ORDER_RETENTION_DAYS = env.integer("ORDER_RETENTION_DAYS", 14, minimum=1)
# How long a download order's link works (apps/orders/links.py); a fresh one is
# made each time the owner asks, never beyond the order's retention.
DOWNLOAD_LINK_HOURS = env.integer("DOWNLOAD_LINK_HOURS", 24, minimum=1)
# A running task that stays longer than this in one phase is taken back.
PHASE_TIMEOUT_SECONDS = env.integer("PHASE_TIMEOUT_SECONDS", 6 * 3600, minimum=60)
SWEEP_INTERVAL = env.integer("SWEEP_INTERVAL", 30, minimum=5)
OPERATOR_EMAILS = env.csv("OPERATOR_EMAILS", [])

# --- The hotspot (offspot-config, DESIGN 6) -----------------------------------------

# The offspot base image every hotspot is built on, as image-creator's YAML names it
# (``base.source``): Kiwix's current release, at the address offspot-config gives its
# version. A URL (http, https or file) or an absolute path (made a file:// URL). A bare
# version such as 1.4.2 is refused: offspot-config would fetch its checksum online
# while reading the YAML back, and rendering must not touch the network.
HOTSPOT_BASE_SOURCE = env.string(
    "HOTSPOT_BASE_SOURCE",
    "https://drive.hotspot.kiwix.org/base/offspot-base-arm64-1.4.2.img",
)
if HOTSPOT_BASE_SOURCE.startswith("/"):
    HOTSPOT_BASE_SOURCE = Path(HOTSPOT_BASE_SOURCE).as_uri()
if urlsplit(HOTSPOT_BASE_SOURCE).scheme not in {"http", "https", "file"}:
    env.error(
        "imager.E050",
        "HOTSPOT_BASE_SOURCE",
        f"HOTSPOT_BASE_SOURCE={HOTSPOT_BASE_SOURCE!r} is neither a URL nor an "
        "absolute path.",
        "Give the base image's http(s):// or file:// URL, or its absolute path.",
    )
# Bytes of that base image before its data partition (image-creator's
# ``base.root_size``): the part of every image that is not content. 1.4.2's.
HOTSPOT_BASE_ROOTFS_SIZE = env.integer(
    "HOTSPOT_BASE_ROOTFS_SIZE", 3_716_153_344, minimum=1
)
# Top-level domain of the hotspots' names (kiwix.hotspot), as Kiwix's hotspots use.
HOTSPOT_TLD = env.string("HOTSPOT_TLD", "hotspot")
if not is_valid_tld(HOTSPOT_TLD):
    env.error(
        "imager.E051",
        "HOTSPOT_TLD",
        f"HOTSPOT_TLD={HOTSPOT_TLD!r}: {is_valid_tld(HOTSPOT_TLD).help_text}.",
        "Use letters, digits and dashes, starting with a letter, such as hotspot.",
    )
# Where ZIM files of download.kiwix.org are fetched from instead (a mirror, "/" at
# the end), as Kiwix's hotspots do; "none" keeps download.kiwix.org.
HOTSPOT_KIWIX_MIRROR = env.string(
    "HOTSPOT_KIWIX_MIRROR", "https://mirror.download.kiwix.org/zim/"
)
if HOTSPOT_KIWIX_MIRROR.lower() == "none":
    HOTSPOT_KIWIX_MIRROR = ""
elif urlsplit(HOTSPOT_KIWIX_MIRROR).scheme not in {
    "http",
    "https",
} or not HOTSPOT_KIWIX_MIRROR.endswith("/"):
    env.error(
        "imager.E052",
        "HOTSPOT_KIWIX_MIRROR",
        f"HOTSPOT_KIWIX_MIRROR={HOTSPOT_KIWIX_MIRROR!r} is not an http(s) URL "
        "ending in /.",
        "Give a mirror of download.kiwix.org/zim/, such as "
        "https://mirror.download.kiwix.org/zim/, or none.",
    )

# --- Content catalog (apps.catalog) ------------------------------------------------

# OPDS catalogs to import: Kiwix's public library, or any kiwix-serve.
CATALOG_URLS = [
    url.rstrip("/") for url in env.csv("CATALOG_URLS", ["https://library.kiwix.org"])
]
for _url in CATALOG_URLS:
    if urlsplit(_url).scheme not in {"http", "https"} or not urlsplit(_url).hostname:
        env.error(
            "imager.E060",
            "CATALOG_URLS",
            f"CATALOG_URLS: {_url!r} is not an http(s) URL.",
            "List catalog roots separated by commas, e.g. https://library.kiwix.org",
        )
CATALOG_REFRESH_HOURS = env.integer("CATALOG_REFRESH_HOURS", 24, minimum=1)
# Entries asked for per OPDS page.
CATALOG_PAGE_SIZE = env.integer("CATALOG_PAGE_SIZE", 500, minimum=10)
# Outbound fetches (the catalog's here, and the content entries' URLs the API
# accepts) go to public addresses only; this list allows networks, addresses and
# host names besides (a kiwix-serve on the LAN, 127.0.0.0/8 in tests). The
# creator has its own list (--outbound-allow).
OUTBOUND_ALLOWED_NETWORKS = env.csv("OUTBOUND_ALLOWED_NETWORKS", [])
try:
    _allowed = Allowed.parse(OUTBOUND_ALLOWED_NETWORKS)
except ValueError as _exc:
    _allowed = Allowed()
    env.error(
        "imager.E061",
        "OUTBOUND_ALLOWED_NETWORKS",
        f"OUTBOUND_ALLOWED_NETWORKS: {_exc}.",
        "List networks (CIDR), addresses or host names separated by commas, "
        "e.g. 192.168.1.0/24,mirror.lan",
    )
for _url in CATALOG_URLS:
    # Addresses and localhost only: no DNS query while the settings load.
    _problem = url_problem(_url, _allowed, resolver=None)
    if _problem and urlsplit(_url).scheme in {"http", "https"}:
        env.error(
            "imager.E062",
            "CATALOG_URLS",
            f"CATALOG_URLS: {_url}: {_problem}.",
            "Add its network to OUTBOUND_ALLOWED_NETWORKS, or name a public catalog.",
        )

# --- E-mail -------------------------------------------------------------------------

DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL", "imager@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_HOST = env.raw("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env.integer("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env.string("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env.string("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env.boolean("EMAIL_USE_TLS", default=True)
else:
    # Embedded default: each message is a file in the data folder.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(DATA_DIR / "mail")

# --- Internationalisation, static files, security ---------------------------------

LANGUAGE_CODE = env.choice("LANGUAGE_CODE", "en", ["en", "fr"])
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.string("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.directory("STATIC_ROOT", DATA_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = env.directory("MEDIA_ROOT", DATA_DIR / "media")
MEDIA_URL = "media/"

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env.boolean("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Browsers keep to HTTPS for this long once they saw the site over it; only
    # where the site is served over HTTPS (secure cookies).
    SECURE_HSTS_SECONDS = env.integer(
        "SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SESSION_COOKIE_SECURE else 0
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env.choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"]),
    },
}

ENV_ERRORS = env.ERRORS
