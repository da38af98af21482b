"""Celery tasks of cohorts: thin wrappers that take ids and call exchange/bulk/pipeline.py."""

from celery import shared_task


@shared_task(name="exchange.cohort_advance")
def cohort_advance(cohort_id: int, payer_id: int) -> None:
    """Enqueue the work the cohort's state calls for."""
