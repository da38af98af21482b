"""Celery tasks of cohorts: thin wrappers that take ids and call exchange/bulk/pipeline.py.

A job's task runs one step and, when the step says so, schedules itself again with a
countdown (a poll after ``Retry-After``): a waiting job holds no worker. A countdown
longer than the broker allows safely is cut to ``MAX_RETRY_COUNTDOWN_SECONDS``; the step
then finds it is too early and schedules the rest (``BulkJob.next_poll_at``).
"""

from celery import shared_task
from django.conf import settings

from exchange.bulk import jobs, pipeline
from exchange.fhir.errors import FhirCallError
from exchange.models import Cohort, CohortStatus
from exchange.payloads.backends import payload_storage
from exchange.tasks import (
    MAX_RETRY_COUNTDOWN_SECONDS,
    exchange_request_advance,
    exchange_requests_screen,
)


def _follow(next_step: jobs.JobNext, *, job_id: int | None, cohort_id: int, payer_id: int) -> None:
    """Enqueue what a step asked for."""
    if job_id is not None and next_step.run_again_in is not None:
        bulk_job_run.apply_async(
            (job_id, payer_id), countdown=min(next_step.run_again_in, MAX_RETRY_COUNTDOWN_SECONDS)
        )
    for other in next_step.jobs:
        bulk_job_run.delay(other, payer_id)
    for request_id, request_payer_id in next_step.requests:
        exchange_request_advance.delay(request_id, request_payer_id)
    for batch in next_step.batches:
        exchange_requests_screen.delay(batch, payer_id)
    if next_step.cohort:
        cohort_advance.delay(cohort_id, payer_id)


@shared_task(name="exchange.cohort_advance")
def cohort_advance(cohort_id: int, payer_id: int) -> None:
    """Enqueue the work the cohort's state calls for."""
    status = (
        Cohort.objects.for_payer(payer_id)
        .filter(pk=cohort_id)
        .values_list("status", flat=True)
        .first()
    )
    if status == CohortStatus.PREPARING:
        try:
            next_step = pipeline.cohort_prepare(cohort_id=cohort_id, payer_id=payer_id)
        except FhirCallError as exc:
            if exc.permanent:
                pipeline.cohort_fail(
                    cohort_id=cohort_id, payer_id=payer_id, code=exc.code, message=exc.message
                )
                return
            cohort_advance.apply_async(
                (cohort_id, payer_id),
                countdown=min(exc.retry_after or 30.0, MAX_RETRY_COUNTDOWN_SECONDS),
            )
            return
        _follow(next_step, job_id=None, cohort_id=cohort_id, payer_id=payer_id)
        return
    next_step = pipeline.cohort_settle(
        cohort_id=cohort_id, payer_id=payer_id, storage=payload_storage()
    )
    if next_step.run_again_in is not None:
        cohort_advance.apply_async(
            (cohort_id, payer_id),
            countdown=min(next_step.run_again_in, MAX_RETRY_COUNTDOWN_SECONDS),
        )


@shared_task(name="exchange.bulk_job_run")
def bulk_job_run(job_id: int, payer_id: int) -> None:
    """Move one bulk job on by a step, and schedule what comes next."""
    next_step = pipeline.bulk_job_step(job_id=job_id, payer_id=payer_id, storage=payload_storage())
    cohort_id = pipeline.job_cohort_id(job_id=job_id, payer_id=payer_id)
    _follow(next_step, job_id=job_id, cohort_id=cohort_id, payer_id=payer_id)


@shared_task(name="exchange.bulk_job_forget")
def bulk_job_forget(job_id: int, payer_id: int) -> None:
    """Tell the holder a cancelled job is no longer wanted (Bulk Data STU2 §Delete)."""
    pipeline.bulk_job_forget(job_id=job_id, payer_id=payer_id)


@shared_task(name="exchange.bulk_jobs_resume_stuck")
def bulk_jobs_resume_stuck() -> int:
    """Run again the bulk jobs whose work stopped moving, and the checks of cohorts whose
    chain of checks was lost (every minute from beat)."""
    stuck_after = settings.BULK_JOB_STUCK_AFTER_SECONDS
    resumed = jobs.bulk_jobs_resume_stuck(older_than_seconds=stuck_after)
    for job_id, payer_id in resumed:
        bulk_job_run.delay(job_id, payer_id)
    cohorts = pipeline.cohorts_resume_stuck(older_than_seconds=stuck_after)
    for cohort_id, payer_id in cohorts:
        cohort_advance.delay(cohort_id, payer_id)
    return len(resumed) + len(cohorts)
