"""Settings, read from environment variables, with defaults that run anywhere.

- DATABASE_URL unset: SQLite in the instance folder. A postgres:// URL selects PostgreSQL.
- CELERY_BROKER_URL unset: Celery tasks run in-process. Set it (redis://…) to use workers.
- CACHE_URL: redis://… to share cached figures through Redis; default, files in the instance.
- DJANGO_DEBUG unset: no debug. DJANGO_SECRET_KEY: required unless DEBUG is on.
- Production (DEBUG off) is secure by default: HTTPS, cookies, HSTS, CSP, login lockout, the
  admin's path, single sign-on; each has its variable (the security block, docs/security.md).
- OPENCHARGEBACK_HOME: the instance folder (database, uploads, statements); default ./instance.
- OPENCHARGEBACK_CONFIG: the institution's billing configuration (YAML); commands also take -c.
"""

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Absolute even when given relative (the quick start prints OPENCHARGEBACK_HOME=instance): the
# paths made from it (database, cache, media, journals) then don't move with the working
# directory, and the file cache doesn't warn (caches.W003) on every command.
INSTANCE_DIR = Path(os.environ.get("OPENCHARGEBACK_HOME", BASE_DIR / "instance")).absolute()
INSTANCE_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DJANGO_DEBUG")
_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
# The key signs sessions and password-reset links: production (DEBUG off) must set its own,
# in DJANGO_SECRET_KEY or in a file named by DJANGO_SECRET_KEY_FILE (a container secret).
# Test runs (pytest) get a throwaway key, exported so the workers they start share it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and os.environ.get("DJANGO_SECRET_KEY_FILE"):
    try:
        SECRET_KEY = Path(os.environ["DJANGO_SECRET_KEY_FILE"]).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY_FILE={os.environ['DJANGO_SECRET_KEY_FILE']}: cannot read the "
            f"secret key ({exc.strerror}); the quick start makes it as <OPENCHARGEBACK_HOME>/"
            "secret_key"
        ) from None
# Test runs are development too: HTTPS-only defaults below follow PRODUCTION, not just DEBUG.
_TESTING = "pytest" in sys.modules
if not SECRET_KEY and _TESTING:
    SECRET_KEY = os.environ["DJANGO_SECRET_KEY"] = "test-only-" + secrets.token_urlsafe(40)
if not SECRET_KEY and DEBUG:
    SECRET_KEY = _DEV_SECRET_KEY
if not DEBUG and SECRET_KEY in ("", _DEV_SECRET_KEY):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is required when DEBUG is off (production): set it to a long random "
        "value (python -c 'import secrets; print(secrets.token_urlsafe(50))'), or point "
        "DJANGO_SECRET_KEY_FILE at a file holding one. The development key is accepted only "
        "with DJANGO_DEBUG=1."
    )
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
]

INSTALLED_APPS = [
    "openchargeback.apps.AdminConfig",  # django.contrib.admin with the dashboard site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "crispy_forms",
    "crispy_bootstrap4",
    "import_export",
    "axes",
    "csp",
    "statements.portal.apps.PortalConfig",  # the PI portal; audits lockouts
    "accounts",
    "billing",
    "statements",
    "journals",
    "openchargeback.apps.OpenChargebackConfig",  # the project's own commands (health)
]

MIDDLEWARE = [
    # /health answers before the host check and the HTTPS redirect: a load balancer or a
    # container's probe asks by address, over plain HTTP (openchargeback/health.py).
    "openchargeback.health.HealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files with hashed names, served by the application server (docs/deployment.md).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The acting user and the period on every log record of the request (openchargeback/logs.py).
    "openchargeback.logs.LogContextMiddleware",
    # Names the request's user on audit events of user, group and permission changes.
    "accounts.services.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # A write the database guards refuse: a message, never a 500 (accounts/dbguards.py).
    "accounts.middleware.GuardRefusalMiddleware",
    # Names the user on the audit events of PI, project and source edits.
    "billing.reference_audit.ReferenceAuditMiddleware",
    # Cache-Control: private, no-store on every portal page, PDF and CSV.
    "statements.portal.middleware.PortalNoStoreMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Refuses locked-out logins; last, as django-axes requires.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "openchargeback.urls"
WSGI_APPLICATION = "openchargeback.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{INSTANCE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the admin read while an import writes; IMMEDIATE avoids lock upgrades failing.
    # 16 KiB pages (set before the first table exists; a no-op afterwards) halve what a bulk
    # import costs SQLite over the default 4 KiB: fewer page splits and WAL frames per row.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA cache_size=-131072;"
        ),
        # An import or a period change waits this long (seconds) for SQLite's one writer lock,
        # then is refused with a clear message (docs/importing.md), never a traceback.
        "transaction_mode": "IMMEDIATE",
        "timeout": float(os.environ.get("SQLITE_BUSY_TIMEOUT", "30")),
    }

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Security (docs/security.md) -------------------------------------------------------------
PRODUCTION = not DEBUG and not _TESTING
# Production is DEBUG off, and every protection here is on by default; environment variables
# may loosen one where a deployment needs it. Development (DJANGO_DEBUG=1) serves plain HTTP.
#
# HTTPS. Behind a proxy that terminates TLS, set DJANGO_SECURE_PROXY_SSL_HEADER=1 so the
# proxy's X-Forwarded-Proto says the request was HTTPS (only if the proxy always sets it).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(
    os.environ.get("DJANGO_SECURE_HSTS_SECONDS", str(365 * 24 * 3600) if PRODUCTION else "0")
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Cookies: HTTPS-only in production, never readable by scripts, not sent cross-site.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]
# Sessions end after OPENCHARGEBACK_SESSION_IDLE_MINUTES without a request (default 60: each
# request renews the expiry) and when the browser closes.
SESSION_COOKIE_AGE = 60 * int(os.environ.get("OPENCHARGEBACK_SESSION_IDLE_MINUTES", "60"))
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Request size. Form fields (everything but files) at most 5 MB; uploaded files spill to disk
# beyond 5 MB. The admin upload's own size and type limits are OPENCHARGEBACK_UPLOAD_MAX_BYTES
# and billing/services/uploads.py.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000  # the admin's bulk actions post one field per row
DATA_UPLOAD_MAX_NUMBER_FILES = 100
FILE_UPLOAD_PERMISSIONS = 0o640

# Content-Security-Policy (django-csp): scripts only from this site's static files, never
# inline; styles may use inline attributes (the admin's templates do); no framing, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Login throttling (django-axes). OPENCHARGEBACK_LOGIN_FAILURE_LIMIT failures (default 10) lock
# what OPENCHARGEBACK_LOCKOUT_BY names: "username,ip_address" (default: the account, and
# separately the address), "username+ip_address" (the pair only), "ip_address", or "username", for
# OPENCHARGEBACK_LOCKOUT_MINUTES (default 30; 0: until an admin runs `axes_reset`).
# Lockouts are audited (statements/portal/signals.py). Behind N proxies,
# OPENCHARGEBACK_PROXY_COUNT=N reads the client's address from X-Forwarded-For.
AXES_FAILURE_LIMIT = int(os.environ.get("OPENCHARGEBACK_LOGIN_FAILURE_LIMIT", "10"))
_LOCKOUT_BY = os.environ.get("OPENCHARGEBACK_LOCKOUT_BY", "username,ip_address")
AXES_LOCKOUT_PARAMETERS = [
    item.split("+") if "+" in item else item
    for item in (i.strip() for i in _LOCKOUT_BY.split(","))
    if item
]
_LOCKOUT_MINUTES = int(os.environ.get("OPENCHARGEBACK_LOCKOUT_MINUTES", "30"))
AXES_COOLOFF_TIME = timedelta(minutes=_LOCKOUT_MINUTES) if _LOCKOUT_MINUTES else None
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = int(os.environ.get("OPENCHARGEBACK_PROXY_COUNT", "0")) or None
AXES_VERBOSE = False

# Authentication: axes first (it refuses locked-out attempts), then passwords. With
# OPENCHARGEBACK_REMOTE_USER_HEADER (e.g. "X-Remote-User", set by the campus single sign-on
# proxy in front of the site, which must strip it from clients' requests), the header's email
# logs in the PI with that email; it never creates a user and never logs in staff.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
OPENCHARGEBACK_REMOTE_USER_HEADER = os.environ.get("OPENCHARGEBACK_REMOTE_USER_HEADER", "")
if OPENCHARGEBACK_REMOTE_USER_HEADER:
    AUTHENTICATION_BACKENDS.insert(1, "statements.portal.sso.PIEmailRemoteUserBackend")
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "statements.portal.sso.PIRemoteUserMiddleware",
    )

# The admin's URL (OPENCHARGEBACK_ADMIN_PATH, default "admin/"): a less guessable path keeps
# scanners off its login page. The portal is at /portal/, its login at /accounts/login/.
OPENCHARGEBACK_ADMIN_PATH = os.environ.get("OPENCHARGEBACK_ADMIN_PATH", "admin/").strip("/") + "/"
LOGIN_URL = "portal-login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal-login"
PASSWORD_RESET_TIMEOUT = 3 * 24 * 3600  # invitation and reset links: three days

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `collectstatic` writes here; the container image collects at build time, outside the instance.
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", INSTANCE_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at each start without it
MEDIA_ROOT = INSTANCE_DIR / "media"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Generated files: statement PDFs ("default", under MEDIA_ROOT) and GL journals ("journals"; when
# not set, INSTANCE_DIR/journals) go through Django's storage API. When several hosts render and
# serve, OPENCHARGEBACK_STORAGE=s3 puts both in an S3-compatible bucket (django-storages; AWS,
# MinIO, Ceph, …) under the prefixes statements/ and journals/. docs/storage.md.
OPENCHARGEBACK_STORAGE = os.environ.get("OPENCHARGEBACK_STORAGE", "local").strip().lower()
if OPENCHARGEBACK_STORAGE not in ("local", "s3"):
    raise ImproperlyConfigured("OPENCHARGEBACK_STORAGE must be local or s3")


def _s3_storage(prefix: str) -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("OPENCHARGEBACK_S3_BUCKET", ""),
            "endpoint_url": os.environ.get("OPENCHARGEBACK_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("OPENCHARGEBACK_S3_REGION") or None,
            # Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the host's role (boto3).
            "location": prefix,
            "default_acl": None,  # private objects; downloads go through the app's views
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }


# Static files: hashed, compressed copies served by whitenoise in production (a new release's
# CSS never meets a browser's cached old one). Tests and DEBUG use them unhashed, uncollected.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or _TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
if OPENCHARGEBACK_STORAGE == "s3":
    if not os.environ.get("OPENCHARGEBACK_S3_BUCKET"):
        raise ImproperlyConfigured("OPENCHARGEBACK_STORAGE=s3 needs OPENCHARGEBACK_S3_BUCKET")
    STORAGES["default"] = _s3_storage("statements")
    STORAGES["journals"] = _s3_storage("journals")

# Cache: period figures computed by one process (a web worker, a Celery worker, a command) are
# read by all of them. Redis with CACHE_URL=redis://…; otherwise files in the instance folder,
# which every process on this machine shares. Test runs keep theirs in memory.
CACHE_URL = os.environ.get("CACHE_URL", "")
if _TESTING:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Tests make hundreds of logins: a fast hasher (never used outside pytest) takes the suite
    # from minutes to under one; production keeps Django's PBKDF2 default.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
elif CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": INSTANCE_DIR / "cache",
        }
    }

# Celery: eager (in-process) unless a broker is configured. An eager task still takes a
# producer from the pool, so without a broker it gets kombu's in-memory transport, named with a
# host: a bare "memory://" makes kombu warn "No hostname was supplied" on every command.
_BROKER = os.environ.get("CELERY_BROKER_URL", "")
CELERY_BROKER_URL = _BROKER or "memory://localhost/"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", _BROKER or None)
CELERY_TASK_ALWAYS_EAGER = not _BROKER  # False exactly when workers are configured
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a task killed mid-run is redelivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task of a killed worker comes back after this many seconds (Redis's default is an hour).
# Keep it above the longest email retry delay (docs/statements.md).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
}
CELERY_TASK_SERIALIZER = "json"
# Workers log through LOGGING below (same format and context as the web), not Celery's own setup;
# their stdout and stderr stay as they are (one record a line), not re-logged line by line.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS = False
# Beat remembers when each schedule entry last ran, in the instance folder (writable, persistent).
CELERY_BEAT_SCHEDULE_FILENAME = str(INSTANCE_DIR / "celerybeat-schedule")

# The unattended month (journals/cycle.py): `openchargeback cycle` reads <inbox>/<YYYY-MM>/, and
# Celery beat runs it for the month before on OPENCHARGEBACK_CYCLE_DAY (1-28, at 06:00 UTC;
# empty: beat does not run it).
OPENCHARGEBACK_INBOX = os.environ.get("OPENCHARGEBACK_INBOX", str(INSTANCE_DIR / "inbox"))
OPENCHARGEBACK_CYCLE_DAY = os.environ.get("OPENCHARGEBACK_CYCLE_DAY", "5").strip()
# Beat's schedule is built from it in openchargeback/celery.py: its crontab would import Celery
# (0.2 s) into every process that reads these settings.

# Email. Development default: the file backend, one file per message under INSTANCE_DIR/mail
# (nothing leaves the machine). Production: DJANGO_EMAIL_BACKEND=
# django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST; STARTTLS is on by default and
# the server's certificate is verified against the system's CAs (ssl.create_default_context).
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = os.environ.get("DJANGO_EMAIL_FILE_PATH", str(INSTANCE_DIR / "mail"))
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")  # implicit TLS (port 465)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)  # STARTTLS (port 587)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "billing@example.edu")
# The site's public address: every link in a mail (invitations, delegate grants, statement
# emails) starts with it (openchargeback/links.py). A system check warns when production leaves
# it unset. Seconds before the first retry of a temporary SMTP failure (doubled at each retry,
# 5 retries).
OPENCHARGEBACK_BASE_URL_SET = bool(os.environ.get("OPENCHARGEBACK_BASE_URL", "").strip())
OPENCHARGEBACK_BASE_URL = (
    os.environ.get("OPENCHARGEBACK_BASE_URL", "").strip() or "http://127.0.0.1:8000"
).rstrip("/")
OPENCHARGEBACK_EMAIL_RETRY_DELAY = int(os.environ.get("OPENCHARGEBACK_EMAIL_RETRY_DELAY", "30"))

# The institution's billing configuration file (YAML). None: built-in defaults.
OPENCHARGEBACK_CONFIG = os.environ.get("OPENCHARGEBACK_CONFIG") or None

# Admin uploads: refused above MAX; checked and imported by a Celery task above ASYNC.
OPENCHARGEBACK_UPLOAD_MAX_BYTES = int(
    os.environ.get("OPENCHARGEBACK_UPLOAD_MAX_BYTES", str(2 * 1024**3))
)
OPENCHARGEBACK_UPLOAD_ASYNC_BYTES = int(
    os.environ.get("OPENCHARGEBACK_UPLOAD_ASYNC_BYTES", str(20 * 1024**2))
)

CRISPY_TEMPLATE_PACK = "bootstrap4"

# Logs: LOG_FORMAT "keyvalue" (default) or "json", one record a line on stderr and, with
# LOG_FILE, in that file too (logrotate may move it: the handler reopens the file by name).
# Each record carries the acting user, period, import and batch id where known
# (openchargeback/logs.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "keyvalue")
LOG_FILE = os.environ.get("LOG_FILE", "")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "WARNING")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "openchargeback.logs.ContextFilter"}},
    "formatters": {"structured": {"()": "openchargeback.logs.formatter", "style": LOG_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["context"],
        },
        **(
            {
                "file": {
                    "class": "logging.handlers.WatchedFileHandler",
                    "filename": LOG_FILE,
                    "formatter": "structured",
                    "filters": ["context"],
                }
            }
            if LOG_FILE
            else {}
        ),
    },
    "root": {"handlers": ["console", *(["file"] if LOG_FILE else [])], "level": LOG_LEVEL},
}
