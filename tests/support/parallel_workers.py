"""What each pytest-xdist worker keeps apart from the others (``make test`` runs two).

pytest-django gives each worker a test database of its own (``test_<name>_gw0``, ...). What
the hub keeps outside its database must be apart too, and is set here, in the worker's
environment, before Django reads its settings (this module is a plugin pyproject.toml names
with ``-p``, so it is imported before pytest-django sets Django up), and so for the Celery
workers, sandboxes and servers the tests start as subprocesses:

- the Celery broker, and the rate-limit cache that defaults to it: cases empty the broker
  (``empty_broker``), and a worker's Celery workers must take only its own tasks;
- the payload store and the hosted repository's folder: request ids start at 1 in every
  test database, so two workers' requests would share file names.

Without xdist (``PYTEST_XDIST_WORKER`` unset) nothing changes.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Redis has databases 0-15; a worker's is the run's own moved on by the worker's number.
_REDIS_DATABASES = 16


def _redis_url_for(url: str, index: int) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return url
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(database + index) % _REDIS_DATABASES}"))


def _apart(worker: str) -> None:
    index = int(worker.removeprefix("gw"))
    for name in ("CELERY_BROKER_URL", "CACHE_URL"):
        if name in os.environ:
            os.environ[name] = _redis_url_for(os.environ[name], index)
    for name, default in (
        ("PAYLOAD_STORAGE_DIR", "var/payloads"),
        ("SFTP_REPOSITORY_DIR", "var/repository"),
    ):
        os.environ[name] = f"{Path(os.environ.get(name, default)).resolve()}-{worker}"


if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    _apart(_worker)
