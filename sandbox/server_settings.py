"""Django settings of a sandbox payer process: no database, no sessions, state in memory."""

from __future__ import annotations

import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# Nothing is signed with this key (no sessions, no CSRF cookies); it only satisfies Django.
SECRET_KEY = secrets.token_urlsafe(32)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["sandbox.middleware.SandboxMiddleware"]
ROOT_URLCONF = "sandbox.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {},
    }
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
# $bulk-member-match bodies for 10,000 members run to tens of megabytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "sandbox": {"handlers": ["stderr"], "level": "INFO"},
        # 4xx answers are the sandbox doing its job; only real errors are worth a line.
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    },
}
