"""Settings of the hub, read from the environment only (STYLE.md #8; README "Configuration").

There is no production-only or development-only settings file: the demo, the tests
and production differ only in the environment they pass.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from hub.env import env_bool, env_choice, env_int, env_list, env_readable_file, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = env_str("SECRET_KEY")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long")
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Secrets at rest: the first key encrypts, every key decrypts (hub/crypto.py) ---
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
for _position, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS: key {_position} is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
        ) from None

# --- Outbound calls to payers and identity providers (hub/outbound.py) ---
# Hosts, addresses or networks (CIDR) that may be reached although they are private
# or loopback; the demo and the tests allow 127.0.0.1, production normally none.
OUTBOUND_ALLOWED_HOSTS = env_list("OUTBOUND_ALLOWED_HOSTS", default=[])
OUTBOUND_CONNECT_TIMEOUT_SECONDS = env_int("OUTBOUND_CONNECT_TIMEOUT_SECONDS", 10, minimum=1)
OUTBOUND_READ_TIMEOUT_SECONDS = env_int("OUTBOUND_READ_TIMEOUT_SECONDS", 60, minimum=1)
OUTBOUND_MAX_RESPONSE_BYTES = env_int("OUTBOUND_MAX_RESPONSE_BYTES", 50 * 1024 * 1024, minimum=1024)
OUTBOUND_MAX_REDIRECTS = env_int("OUTBOUND_MAX_REDIRECTS", 5)
# A PEM bundle of certificate authorities trusted for outbound TLS *in addition to* the
# system's (a holder or test CA that issues private certificates); empty: the system's only.
OUTBOUND_CA_FILE = env_readable_file("OUTBOUND_CA_FILE")
# A webhook endpoint must answer 2xx within this (Standard Webhooks recommends a short timeout:
# the receiver queues the work and answers at once).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 15, minimum=1)

# --- Where payers reach the hub: redirect URIs, JWKS URLs and the Consent endpoint are built from it ---
HUB_PUBLIC_URL = env_url(
    "HUB_PUBLIC_URL", default="http://127.0.0.1:8000", schemes=("https", "http")
).rstrip("/")

# How the hub names itself in Provenance and manifests it writes.
HUB_NAME = env_str("HUB_NAME", "Payer-to-payer hub")

# --- Payload staging storage (retrieved FHIR data before delivery) ---
PAYLOAD_STORAGE_DIR = Path(env_str("PAYLOAD_STORAGE_DIR", str(BASE_DIR / "var" / "payloads")))
# Where payload files (and the SFTP repository's) are kept: "local" (the folders
# PAYLOAD_STORAGE_DIR and SFTP_REPOSITORY_DIR) or "s3" (one S3-compatible bucket, the
# prefixes payloads/ and repository/). README "Payload storage".
PAYLOAD_STORAGE_BACKEND = env_choice("PAYLOAD_STORAGE_BACKEND", "local", choices=("local", "s3"))
_S3 = PAYLOAD_STORAGE_BACKEND == "s3"
# Empty for AWS itself; the URL of any other S3-compatible store (MinIO, Ceph, ...).
PAYLOAD_S3_ENDPOINT = (
    env_url("PAYLOAD_S3_ENDPOINT", schemes=("https", "http"))
    if env_str("PAYLOAD_S3_ENDPOINT", "")
    else ""
)
PAYLOAD_S3_BUCKET = env_str("PAYLOAD_S3_BUCKET") if _S3 else env_str("PAYLOAD_S3_BUCKET", "")
PAYLOAD_S3_REGION = env_str("PAYLOAD_S3_REGION", "us-east-1")
# Empty: boto3's own chain (instance role, AWS_* variables, ~/.aws).
PAYLOAD_S3_ACCESS_KEY_ID = env_str("PAYLOAD_S3_ACCESS_KEY_ID", "")
PAYLOAD_S3_SECRET_ACCESS_KEY = env_str("PAYLOAD_S3_SECRET_ACCESS_KEY", "")
# The store's own encryption, on top of the hub's per-file AES-256-GCM which always applies.
PAYLOAD_S3_SSE = env_choice("PAYLOAD_S3_SSE", "AES256", choices=("none", "AES256", "aws:kms"))
PAYLOAD_S3_KMS_KEY_ID = env_str("PAYLOAD_S3_KMS_KEY_ID", "")
# A request's staged, screened and packaged files are purged this long after it ended.
PAYLOAD_RETENTION_DAYS = env_int("PAYLOAD_RETENTION_DAYS", 7, minimum=0)

# --- The hub's SFTP repository, where payers' systems collect deliveries (exchange/repository/) ---
SFTP_REPOSITORY_DIR = Path(env_str("SFTP_REPOSITORY_DIR", str(BASE_DIR / "var" / "repository")))
SFTP_REPOSITORY_HOST_KEY_FILE = Path(
    env_str("SFTP_REPOSITORY_HOST_KEY_FILE", str(BASE_DIR / "var" / "sftp_repository_host_key"))
)
SFTP_REPOSITORY_RETENTION_DAYS = env_int("SFTP_REPOSITORY_RETENTION_DAYS", 30, minimum=1)
# Where payers' systems reach the repository (shown in the portal; the server binds --host/--port).
SFTP_REPOSITORY_PUBLIC_HOST = env_str("SFTP_REPOSITORY_PUBLIC_HOST", "127.0.0.1")
SFTP_REPOSITORY_PUBLIC_PORT = env_int("SFTP_REPOSITORY_PUBLIC_PORT", 2222, minimum=1)
SFTP_REPOSITORY_IDLE_TIMEOUT_SECONDS = env_int(
    "SFTP_REPOSITORY_IDLE_TIMEOUT_SECONDS", 300, minimum=1
)
SFTP_REPOSITORY_MAX_SESSIONS_PER_PAYER = env_int(
    "SFTP_REPOSITORY_MAX_SESSIONS_PER_PAYER", 8, minimum=1
)
SFTP_REPOSITORY_MAX_CONNECTIONS_PER_ADDRESS = env_int(
    "SFTP_REPOSITORY_MAX_CONNECTIONS_PER_ADDRESS", 16, minimum=1
)
# Failed sign-ins from one address within 10 minutes before it is refused for the rest of them.
SFTP_REPOSITORY_MAX_AUTH_FAILURES_PER_ADDRESS = env_int(
    "SFTP_REPOSITORY_MAX_AUTH_FAILURES_PER_ADDRESS", 20, minimum=1
)

# --- The rule's clock: CMS-0057-F requires the request within one week of opt-in ---
EXCHANGE_DUE_DAYS = 7
SIGNING_KEY_GRACE_DAYS = env_int("SIGNING_KEY_GRACE_DAYS", 7, minimum=1)

INSTALLED_APPS = [
    "operator_console.admin_app.OperatorConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "mozilla_django_oidc",
    "django_htmx",
    "django_otp",
    "axes",
    "hub",
    "members",
    "plan_admin",
    "exchange",
    "exchange.repository",
    "api",
    "operator_console",
]

MIDDLEWARE = [
    "hub.request_context.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files need neither header (hub/security_headers.py).
    "hub.security_headers.HubCSPMiddleware",
    "hub.security_headers.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session proved an operator's second factor.
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # request.htmx: pages answer htmx's partial requests with the fragment they swap in.
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers a locked-out operator sign-in (operator_console/lockout.py); kept last.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"
AUTH_USER_MODEL = "hub.User"
LOGIN_URL = "admin:login"
# Members and plan administrators sign in through their payer's OpenID Connect provider
# (members/sign_in.py); hub operators with a password and an authenticator app, on the
# operator console's own sign-in page, and nowhere else (operator_console/site.py).
AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out operator before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "members.sign_in.PayerOidcBackend",
]

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

# --- Database: PostgreSQL in production and tests; an SQLite file for the demo ---
_database_url = env_str("DATABASE_URL")
if urlsplit(_database_url).scheme not in {"postgres", "postgresql", "sqlite"}:
    raise ImproperlyConfigured(
        f"DATABASE_URL must start with postgresql:// or sqlite://, not {_database_url!r}"
    )
try:
    DATABASES = {
        "default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo's worker runs steps on several threads: writers wait for each other instead
    # of failing "database is locked" (busy timeout; a transaction takes its write lock when
    # it begins, so two never deadlock upgrading), and readers do not wait for writers (WAL).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = BASE_DIR / "var" / "static"
# The design system and htmx, installed from npm by `make` (hub/assets/package.json) and
# served by the hub itself: no CDN, so the portals work where there is no internet. Only
# what pages load is collected (USWDS's css refers to ../fonts and ../img).
_ASSETS = BASE_DIR / "hub" / "assets" / "node_modules"
_USWDS = _ASSETS / "@uswds" / "uswds" / "dist"
STATICFILES_DIRS = [
    *((f"uswds/{part}", _USWDS / part) for part in ("css", "fonts", "img", "js")),
    ("htmx", _ASSETS / "htmx.org" / "dist"),
]

# --- HTTPS: on unless the environment says the hub runs behind plain HTTP (demo, tests) ---
HTTPS = env_bool("HTTPS", default=True)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 60 * 60 * 8
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp; hub/security_headers.py): the portals load USWDS and
# htmx from the hub itself and have no inline script, style or event handler. form-action
# must also let the forms that end at a payer's identity provider or former plan (sign-in,
# sign-out's RP-Initiated Logout, the SMART launch) follow their redirect, which Chromium
# checks against form-action (CSP Level 3 §6.4.1); those origins are each payer's own and
# discovered at run time, so any https origin is allowed (http too only when HTTPS is off:
# the demo's and the tests' providers on loopback).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'", "https:"] + ([] if HTTPS else ["http:"]),
    }
}

# --- The operator console: two factors, short sessions, lockout (operator_console/site.py) ---
# An operator's session ends after this long without a page of the console (NIST SP 800-63B
# §4.2.3 allows 30 minutes of inactivity at AAL2; the console sees every payer, so less).
OPERATOR_SESSION_IDLE_MINUTES = env_int("OPERATOR_SESSION_IDLE_MINUTES", 15, minimum=1)
# What authenticator apps show as the account's issuer.
OPERATOR_AUTHENTICATOR_ISSUER = env_str("OPERATOR_AUTHENTICATOR_ISSUER", "Payer-to-payer hub")
# django-axes counts failed sign-ins (a wrong password or code) at the console only, per
# username and per client address; either reaching the limit locks sign-in for the cool-off.
# How long the link for a new payer's first plan administrator works (hub/first_admin_links.py).
FIRST_ADMIN_LINK_HOURS = env_int("FIRST_ADMIN_LINK_HOURS", 72, minimum=1)
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = env_int("OPERATOR_LOCKOUT_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("OPERATOR_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "operator_console.lockout.ConsoleSignInAttempts"
AXES_LOCKOUT_CALLABLE = "operator_console.lockout.locked_out_page"
# The client address is the connection's: a header the client writes (X-Forwarded-For)
# would let one guesser pose as many addresses.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_VERBOSE = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The payer-system API's OpenAPI document (api/); Swagger UI's files come from the sidecar
# package, so the interactive page works without reaching a CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "Payer-to-payer hub: payer-system API",
    "DESCRIPTION": (
        "For payers' enrollment systems: post members' opt-ins (CMS-0057-F payer-to-payer "
        "exchange), withdraw them, and follow each request to its delivery. Errors are RFC 9457 "
        "problem documents naming each bad field; every POST takes an Idempotency-Key."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ConsentChoiceEnum": "api.serializers.CONSENT_CHOICE_NAMES",
        "AuthorizationLinkStatusEnum": "api.serializers.AUTHORIZATION_LINK_STATUSES",
        # Requests and cohorts both have a status.
        "ExchangeStatusEnum": "exchange.models.ExchangeStatus",
        "CohortStatusEnum": "exchange.models.CohortStatus",
    },
    # api/urls.py's ids: what its path converter takes.
    "PATH_CONVERTER_OVERRIDES": {
        "object_id": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}
    },
    # The deploy check would build a schema of every DRF view of the root URLconf, the plan
    # administrators' API included, which is not published; the published one (api.urls)
    # is validated, warnings failing, by tests/api/test_schema.py.
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
}

# --- Celery (STYLE.md #5): durable by default, one queue per kind of work ---
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", schemes=("redis", "rediss", "amqp", "amqps", "filesystem")
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # A broker that needs no server, for the demo: messages are files in one folder.
    _broker_dir = Path(urlsplit(CELERY_BROKER_URL).path)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest transfer, so a slow delivery is not redelivered mid-flight.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 60 * 60}
# --- The shared cache: rate-limit counters every web process and worker must see alike ---
# (hub/rate_limits.py). Redis: by default the broker's own server and database, the keys
# prefixed so they never meet Celery's; the demo's filesystem broker has no server, so its
# single machine counts in memory. The default cache stays per process: it holds only
# copies of providers' documents (hub/oidc/), which each process may fetch for itself.
# An AMQP broker offers no cache: CACHE_URL is then required.
_CACHE_SCHEMES = ("redis", "rediss", "locmem")
_cache_default = {
    "redis": CELERY_BROKER_URL,
    "rediss": CELERY_BROKER_URL,
    "filesystem": "locmem://",
}.get(urlsplit(CELERY_BROKER_URL).scheme)
CACHE_URL = (
    env_url("CACHE_URL", default=_cache_default, schemes=_CACHE_SCHEMES)
    if _cache_default
    else env_url("CACHE_URL", schemes=_CACHE_SCHEMES)
)
CACHES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "rate_limits": (
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rate-limits"}
        if CACHE_URL.startswith("locmem://")
        else {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "hub",
        }
    ),
}
RATELIMIT_USE_CACHE = "rate_limits"
RATELIMIT_CACHE_PREFIX = "rate-limit:"
# The token endpoint (exchange/consents/endpoint/token_limits.py): refused requests per
# address, and refused assertions the client's own key signed per client id, before either
# is told to wait out the window.
TOKEN_FAILURES_PER_CLIENT = env_int("TOKEN_FAILURES_PER_CLIENT", 10, minimum=1)
TOKEN_FAILURES_PER_ADDRESS = env_int("TOKEN_FAILURES_PER_ADDRESS", 10, minimum=1)
TOKEN_LOCKOUT_MINUTES = env_int("TOKEN_LOCKOUT_MINUTES", 10, minimum=1)
# Single-member $member-match (exchange/match_limits.py; HRex §mm asks servers to resist
# guessing, so the requester does not make itself the guesser's tool): requests one member
# may open to one former payer per window, and failed matches (no_match) one requesting
# payer's members may run up at one former payer per hour before new requests there wait.
MEMBER_MATCH_REQUESTS_PER_MEMBER = env_int("MEMBER_MATCH_REQUESTS_PER_MEMBER", 5, minimum=1)
MEMBER_MATCH_MEMBER_WINDOW_HOURS = env_int("MEMBER_MATCH_MEMBER_WINDOW_HOURS", 24, minimum=1)
MEMBER_MATCH_NO_MATCHES_PER_PAYER_HOUR = env_int(
    "MEMBER_MATCH_NO_MATCHES_PER_PAYER_HOUR", 30, minimum=1
)
# Celery's Django fix-up closes the worker's database connections after every task unless
# told to reuse them: a new PostgreSQL connection per task cost a cohort of 1,000 members
# some 4,000 connects (bench/cohort_exchange.py). Reused for 100 tasks (CONN_MAX_AGE and
# CONN_HEALTH_CHECKS still apply).
CELERY_DB_REUSE_MAX = 100
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 30 * 60, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue(name) for name in ("default", "pull", "screen", "deliver", "bulk")]
# Beat sends only while it holds a PostgreSQL advisory lock; a standby beat tries for it this
# often, and so takes over within this long of the active beat's end (hub/beat_scheduler.py).
CELERY_BEAT_SCHEDULER = "hub.beat_scheduler:ExclusiveDatabaseScheduler"
BEAT_STANDBY_RETRY_SECONDS = env_int("BEAT_STANDBY_RETRY_SECONDS", 10, minimum=1)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Logs: JSON lines with a request id; never request bodies, never PHI (hub/request_context.py) ---
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "hub.request_context.RequestIdLogFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own request logger repeats paths with query strings; our access log replaces it.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}

# The compatibility radar (exchange/radar/): every FHIR endpoint is probed this often; the
# engine decides by a probe no older than the max age (else it probes first); probes that
# changed nothing are pruned after the retention (changes are kept for ever).
RADAR_PROBE_INTERVAL_HOURS = env_int("RADAR_PROBE_INTERVAL_HOURS", 6, minimum=1)
RADAR_PROBE_MAX_AGE_HOURS = env_int("RADAR_PROBE_MAX_AGE_HOURS", 12, minimum=1)
RADAR_PROBE_RETENTION_DAYS = env_int("RADAR_PROBE_RETENTION_DAYS", 30, minimum=1)

# Beat's standing jobs; django-celery-beat copies them into its tables at start-up.
CELERY_BEAT_SCHEDULE = {
    "retire-expired-signing-keys": {"task": "hub.retire_expired_signing_keys", "schedule": 60 * 60},
    "purge-sftp-repository": {"task": "sftp_repository.purge", "schedule": 60 * 60},
    "resume-stuck-exchange-requests": {"task": "exchange.resume_stuck", "schedule": 5 * 60},
    "purge-exchange-payloads": {"task": "exchange.purge_payloads", "schedule": 60 * 60},
    "sweep-consent-notifications": {
        "task": "exchange.sweep_consent_notifications",
        "schedule": 5 * 60,
    },
    "resume-stuck-bulk-jobs": {"task": "exchange.bulk_jobs_resume_stuck", "schedule": 60},
    "sweep-webhook-messages": {"task": "exchange.sweep_webhook_messages", "schedule": 60},
    "alert-request-deadlines": {"task": "exchange.deadlines_alert", "schedule": 15 * 60},
    # Recurring pulls (quarterly refresh, run-off) that fell due (exchange/schedules.py).
    "run-pull-schedules": {"task": "exchange.pull_schedules_run", "schedule": 5 * 60},
    "sweep-member-links": {"task": "exchange.sweep_member_links", "schedule": 5 * 60},
    "purge-api-idempotency-keys": {"task": "api.purge_idempotency_keys", "schedule": 60 * 60},
    "radar-probe-all": {
        "task": "exchange.radar_probe_all",
        "schedule": RADAR_PROBE_INTERVAL_HOURS * 60 * 60,
    },
}
# How long the payer-system API keeps an Idempotency-Key and its response (api/idempotency.py):
# a POST sent again within it is answered as the first was; after it, it is a new POST.
API_IDEMPOTENCY_KEY_HOURS = env_int("API_IDEMPOTENCY_KEY_HOURS", 24, minimum=1)
# CMS-0057-F gives a week: plan administrators are alerted this long before a request that
# is not delivered is due, and again once it is overdue (exchange/deadlines.py).
EXCHANGE_DUE_SOON_HOURS = env_int("EXCHANGE_DUE_SOON_HOURS", 48, minimum=1)
# Mail to plan administrators (deadline alerts) and members (authorization links). The
# console backend writes to the worker's log; set
# EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and EMAIL_HOST etc.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "payer-hub@localhost")
# Seconds a mail server may take to answer: well within the claim a try of a member's
# authorization link holds (exchange/member_links/sending.py), so no second try overlaps it.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
# A request whose work has not moved for this long is resumed by the reaper (or failed
# after EXCHANGE_MAX_RESUMES resumptions).
EXCHANGE_STUCK_AFTER_SECONDS = env_int("EXCHANGE_STUCK_AFTER_SECONDS", 15 * 60, minimum=1)
EXCHANGE_MAX_RESUMES = env_int("EXCHANGE_MAX_RESUMES", 5, minimum=1)
# Cohorts (exchange/bulk/): a Group export's files downloaded at once by one worker, and the
# largest file taken (Bulk Data files are often far larger than any FHIR answer).
BULK_DOWNLOADS_AT_ONCE = env_int("BULK_DOWNLOADS_AT_ONCE", 3, minimum=1)
BULK_FILE_MAX_BYTES = env_int("BULK_FILE_MAX_BYTES", 20 * 1024**3, minimum=1024)
# A bulk job nothing moved for this long past its next poll is run again by the job reaper.
BULK_JOB_STUCK_AFTER_SECONDS = env_int("BULK_JOB_STUCK_AFTER_SECONDS", 5 * 60, minimum=1)
# Bulk requests one payer keeps at work at one holder at once (the rest wait their turn), and
# how long a request the holder keeps refusing with 429 ("too busy") waits before it fails.
BULK_JOBS_AT_ONCE_PER_HOLDER = env_int("BULK_JOBS_AT_ONCE_PER_HOLDER", 4, minimum=1)
BULK_KICK_OFF_PATIENCE_SECONDS = env_int("BULK_KICK_OFF_PATIENCE_SECONDS", 24 * 3600, minimum=1)
CELERY_TASK_ROUTES = {
    "exchange.cohort_advance": {"queue": "bulk"},
    "exchange.bulk_job_run": {"queue": "bulk"},
    "exchange.bulk_job_forget": {"queue": "bulk"},
    "exchange.match": {"queue": "pull"},
    "exchange.retrieve": {"queue": "pull"},
    "exchange.screen": {"queue": "screen"},
    "exchange.screen_batch": {"queue": "screen"},
    "exchange.deliver": {"queue": "deliver"},
    "exchange.deliver_batch": {"queue": "deliver"},
    "exchange.notify_consent_subscriber": {"queue": "deliver"},
    "exchange.webhook_send": {"queue": "deliver"},
    "exchange.member_link_send": {"queue": "deliver"},
}
