"""The payer-system API's housekeeping (STYLE.md #3: tasks are thin)."""

from celery import shared_task
from django.utils import timezone

from api.idempotency import idempotency_keys_purge


@shared_task(name="api.purge_idempotency_keys")
def api_idempotency_keys_purge() -> int:
    """Delete the idempotency keys kept longer than API_IDEMPOTENCY_KEY_HOURS (hourly from
    beat); deleting what is already gone changes nothing, so a repeated run is harmless."""
    return idempotency_keys_purge(now=timezone.now())
