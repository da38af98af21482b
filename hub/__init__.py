"""The hub's foundation: settings, tenancy, audit, secrets, keys, outbound HTTP, Celery."""

from hub.celery import app as celery_app

__all__ = ["celery_app"]
