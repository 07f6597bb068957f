"""Settings, read from the environment.

Nothing but `DEBUG=1` needs to be configured for a development checkout: without
`DATABASE_URL` the store is an SQLite file in `var/`, and with `DEBUG=1` `SECRET_KEY`
falls back to a fixed development value (with a warning). With `DEBUG=0` (the default)
nothing starts without `SECRET_KEY` but the few commands in KEYLESS_COMMANDS. Production
sets at least `DATABASE_URL`, `SECRET_KEY`, `ALLOWED_HOSTS` and `DEBUG=0`.
"""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off"})


def envbool(name: str, default: bool) -> bool:
    """1/true/yes/on or 0/false/no/off (any case); anything else stops the start-up, so a
    typo never quietly reads as false."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    word = value.strip().lower()
    if word in _YES or word in _NO:
        return word in _YES
    raise ImproperlyConfigured(
        f"{name}={value!r} is neither yes nor no: use 1 or 0 (or true/false, yes/no, on/off)"
    )


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return int(value)


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """`sqlite:///path` or `postgres://user:pw@host:port/name?opt=v` as a DATABASES entry
    (parsed by dj-database-url; query options become the driver's OPTIONS)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        entry = dj_database_url.parse(url)
        if urlsplit(url).path in {"", "/"}:  # no path: the default store, not :memory:
            entry["NAME"] = str(BASE_DIR / "var" / "db.sqlite3")
        entry["OPTIONS"] = {"timeout": 20}
        return entry
    if scheme in {"postgres", "postgresql", "pgsql"}:
        # Persistent, health-checked connections: an API request should not pay a
        # connection setup.
        entry = dj_database_url.parse(
            url, conn_max_age=envint("CONN_MAX_AGE", 600), conn_health_checks=True
        )
        given = entry.get("OPTIONS", {})
        options: dict = {
            **given,
            # Server-side parameters + prepared statements: the API sends the same few
            # query shapes again and again, and PostgreSQL then skips planning them.
            # Behind a transaction-mode pooler, add ?server_side_binding=0 to the URL.
            "server_side_binding": str(given.get("server_side_binding", "1")).lower() in _YES,
            "prepare_threshold": 2,
        }
        if "prepare_threshold" in given:
            threshold = str(given["prepare_threshold"])
            options["prepare_threshold"] = (
                None if threshold.lower() in {"", "none"} else int(threshold)
            )
        entry["OPTIONS"] = options
        return entry
    raise ValueError(f"DATABASE_URL: unsupported scheme {scheme!r}")


DEBUG = envbool("DEBUG", False)

_DEV_SECRET = "dev-insecure-secret-key-change-me-in-production-0123456789abcdef"  # noqa: S105
KEY_MISSING_MESSAGE = (
    "SECRET_KEY is not set. In production (DEBUG=0) set it in the environment of every "
    "server process and command, e.g. "
    "export SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))'); "
    "for development set DEBUG=1."
)
# manage.py commands that serve nothing and sign nothing: they run without a key.
KEYLESS_COMMANDS = frozenset({"help", "version", "makemigrations", "showmigrations", "sqlmigrate"})


def _keyless_command(argv: list[str]) -> bool:
    if not argv or Path(argv[0]).name not in {"manage.py", "django-admin"}:
        return False
    command = argv[1] if len(argv) > 1 else "help"
    return command in KEYLESS_COMMANDS or any(a in {"-h", "--help", "--version"} for a in argv[1:])


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = _DEV_SECRET
        warnings.warn(
            "SECRET_KEY is not set: using the development key (DEBUG=1).",
            stacklevel=1,
        )
    elif _keyless_command(sys.argv):
        SECRET_KEY = secrets.token_urlsafe(50)  # nothing it signs outlives the command
    else:
        # Production must not run on a key anyone can read in this file.
        raise ImproperlyConfigured(KEY_MISSING_MESSAGE)

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "enswitch.admin_tools.site.EnswitchAdminConfig",  # django.contrib.admin, our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "enswitch.apps.EnswitchConfig",
    "customers",
    "cdrs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "enswitch.api.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The API paths answer with and without the trailing slash themselves: a redirect would
# turn a client's POST into a GET and lose its body.
APPEND_SLASH = False

ROOT_URLCONF = "enswitch.urls"
WSGI_APPLICATION = "enswitch.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)


def envseconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ImproperlyConfigured(f"{name}={value!r} is not a number of seconds above 0")
    return seconds


# Hot standbys of the primary for the API's reads (docs/deployment.md, "Read replicas"):
# one alias each, replica1, replica2, ...; in tests each mirrors the test database.
for _number, _url in enumerate(envlist("DATABASE_REPLICA_URLS", []), start=1):
    _replica = database_from_url(_url)
    if (
        not _replica["ENGINE"].endswith("postgresql")
        or DATABASES["default"]["ENGINE"] != (_replica["ENGINE"])
    ):
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URLS: replicas are PostgreSQL hot standbys of a PostgreSQL "
            "DATABASE_URL"
        )
    # A replica that does not answer is given up quickly: the primary can serve.
    _replica["OPTIONS"].setdefault("connect_timeout", 2)
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica{_number}"] = _replica
DATABASE_ROUTERS = ["enswitch.replicas.ReplicaRouter"]
# An answer never misses what the primary committed this many seconds before the request.
DATABASE_REPLICA_MAX_LAG = envseconds("DATABASE_REPLICA_MAX_LAG", 5.0)
# How long a replica that could not be reached is left alone before it is tried again.
DATABASE_REPLICA_RETRY_SECONDS = envseconds("DATABASE_REPLICA_RETRY_SECONDS", 5.0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The covering columns of the legs' (start, uniqueid) index are a PostgreSQL refinement;
# SQLite builds the same index without them, which is fine.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

CACHES = {
    # Per process: verified-credential digests (each process verifies once per TTL).
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "enswitch",
    },
    # Shared by every server process: stream slots. (Login failures have a table of
    # their own, enswitch.models.LoginFailures: a cache may evict them.)
    "shared": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "enswitch_cache",
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT") or str(BASE_DIR / "var" / "static")

# Production hardening; each is explained in docs/deployment.md ("check --deploy").
# Trusted only when the operator says the proxy sets (and overwrites) the header:
# gunicorn may be reached directly, and then any client could claim HTTPS.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("PROXY_SETS_X_FORWARDED_PROTO", False) else None
)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Bodies are small parameter sets; anything larger is refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "enswitch.api.exceptions.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI description served at /api/schema/ (YAML; ?format=json for JSON), built by
# enswitch/api/schema.py from what each app registers (cdrs/schema.py for the cdrs calls).
SPECTACULAR_SETTINGS = {
    "TITLE": "Enswitch-compatible CDR API",
    "DESCRIPTION": "cdrs/list and cdrs/get, as the Enswitch JSON API answers them.",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SORT_OPERATION_PARAMETERS": False,  # the contract's order
    "POSTPROCESSING_HOOKS": ["enswitch.api.schema.postprocess"],
}

# --- Enswitch API behaviour --------------------------------------------------------
# "200": every answer is HTTP 200 (clients read the envelope). "code": HTTP status
# mirrors the envelope code.
ENSWITCH_HTTP_STATUS = os.environ.get("ENSWITCH_HTTP_STATUS", "200")
# Seconds a verified credential stays cached (as a keyed digest, never the password).
ENSWITCH_AUTH_CACHE_SECONDS = envint("ENSWITCH_AUTH_CACHE_SECONDS", 60)
# Seconds an authentication token (user/login token=1) stays valid; 0: never expires.
ENSWITCH_AUTH_TOKEN_EXPIRY = envint("ENSWITCH_AUTH_TOKEN_EXPIRY", 86_400)
# Brute-force protection (see enswitch/api/throttle.py); 0 turns a limit off, and
# ENSWITCH_AUTH_THROTTLE=0 all of them (tests, benchmarks).
ENSWITCH_AUTH_THROTTLE = envbool("ENSWITCH_AUTH_THROTTLE", True)
ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS = envint(
    "ENSWITCH_AUTH_MAX_FAILURES_PER_USER_ADDRESS", 10
)
ENSWITCH_AUTH_MAX_FAILURES_PER_USER = envint("ENSWITCH_AUTH_MAX_FAILURES_PER_USER", 100)
ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS = envint("ENSWITCH_AUTH_MAX_FAILURES_PER_ADDRESS", 300)
ENSWITCH_AUTH_FAILURE_WINDOW = envint("ENSWITCH_AUTH_FAILURE_WINDOW", 900)
ENSWITCH_AUTH_COOLDOWN = envint("ENSWITCH_AUTH_COOLDOWN", 900)
# Behind a reverse proxy, the META key holding the client address it saw, e.g.
# HTTP_X_FORWARDED_FOR; empty: REMOTE_ADDR.
ENSWITCH_CLIENT_ADDRESS_HEADER = os.environ.get("ENSWITCH_CLIENT_ADDRESS_HEADER", "")
# Streamed answers (limit=0 exports) running at once for one user.
ENSWITCH_MAX_STREAMS_PER_USER = envint("ENSWITCH_MAX_STREAMS_PER_USER", 2)

# PostgreSQL statement timeouts for API queries, in milliseconds (0 = none). Exports
# (limit=0 and other streamed answers) run under the second, larger budget.
ENSWITCH_STATEMENT_TIMEOUT_MS = envint("ENSWITCH_STATEMENT_TIMEOUT_MS", 30_000)
ENSWITCH_EXPORT_TIMEOUT_MS = envint("ENSWITCH_EXPORT_TIMEOUT_MS", 600_000)
# Rows fetched from the database per round trip when streaming.
ENSWITCH_STREAM_CHUNK = envint("ENSWITCH_STREAM_CHUNK", 2000)

# --- Management commands (import_dataset, archive_cdrs); see docs/ ---------------------
# Largest main dataset file (its objects are held in memory, at up to ~12x its size);
# legs in volume go in a JSONL file, read line by line.
ENSWITCH_IMPORT_MAX_FILE_BYTES = envint("ENSWITCH_IMPORT_MAX_FILE_BYTES", 64 * 1024 * 1024)
# Longest line of a JSONL file of legs.
ENSWITCH_IMPORT_MAX_LINE_BYTES = envint("ENSWITCH_IMPORT_MAX_LINE_BYTES", 1024 * 1024)
# An archive lock held longer than this is reported as a failure (exit 1), not a skip (75).
ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS = envint("ENSWITCH_ARCHIVE_LOCK_STALE_SECONDS", 86_400)
# PostgreSQL connections archive_cdrs --jobs leaves free for the API.
ENSWITCH_SPARE_CONNECTIONS = envint("ENSWITCH_SPARE_CONNECTIONS", 10)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "scrub_secrets": {"()": "enswitch.api.logging.ScrubSecretsFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["scrub_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
