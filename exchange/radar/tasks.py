"""Celery tasks of the compatibility radar: thin wrappers around exchange/radar/services.py
(STYLE.md #3). Beat runs ``exchange.radar_probe_all`` every ``RADAR_PROBE_INTERVAL_HOURS``;
it prunes the history and hands each endpoint to a task of its own, which claims it with a
conditional UPDATE (a task delivered twice probes once)."""

from celery import shared_task
from django.utils import timezone

from exchange.radar import services


@shared_task(name="exchange.radar_probe_endpoint")
def radar_probe_endpoint(endpoint_id: int, payer_id: int) -> bool:
    """Probe one endpoint and record it; return whether this task did (not another)."""
    return services.radar_probe_endpoint(endpoint_id=endpoint_id, payer_id=payer_id) is not None


@shared_task(name="exchange.radar_probe_all")
def radar_probe_all() -> int:
    """Prune the history, then probe every endpoint not probed lately; return how many."""
    now = timezone.now()
    services.radar_probes_prune(now=now)
    due = services.radar_endpoints_due(now=now)
    for endpoint_id, payer_id in due:
        radar_probe_endpoint.delay(endpoint_id, payer_id)
    return len(due)
