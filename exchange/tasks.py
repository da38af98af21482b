"""Celery tasks of the exchange: thin wrappers that take ids and call the pipeline step of the
same name (STYLE.md #3).

``exchange_request_advance`` looks at the request's state and enqueues the task of the
step that state calls for, on the step's queue (CELERY_TASK_ROUTES). Each step, when done,
advances again; a step that finds the request in another state does nothing, so a task
delivered twice, or resumed by the reaper, is harmless (STYLE.md #4).
"""

import logging
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from exchange import pipeline
from exchange.deadlines import deadlines_alert
from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.payloads.backends import payload_storage
from exchange.payloads.retention import payloads_purge
from exchange.request_stopped import RequestStopped
from exchange.schedules import pull_schedules_run

logger = logging.getLogger(__name__)
S = ExchangeStatus

# Transient failures are retried with exponential backoff (capped), Retry-After first.
MAX_RETRIES = 8
_BACKOFF_CAP_SECONDS = 15 * 60
# A Retry-After longer than this is honoured only up to it: a countdown beyond the broker's
# visibility timeout (4 hours, hub/settings.py) would have Redis hand the waiting task out
# a second time.
MAX_RETRY_COUNTDOWN_SECONDS = 60 * 60


@shared_task(name="exchange.advance")
def exchange_request_advance(request_id: int, payer_id: int) -> None:
    """Enqueue the task of the step the request's current state calls for."""
    status = (
        ExchangeRequest.objects.for_payer(payer_id)
        # A bulk job of its cohort drives it until it hands it over (exchange/bulk/).
        .filter(pk=request_id, awaits_bulk_job=False)
        .values_list("status", flat=True)
        .first()
    )
    step = _STEP_OF_STATE.get(status or "")
    if step is not None:
        step.delay(request_id, payer_id)


def _run_step(task: Task, request_id: int, payer_id: int, step: Any, **kwargs: Any) -> None:
    try:
        next_state = step(request_id=request_id, payer_id=payer_id, **kwargs)
    except RequestStopped:
        return
    except pipeline.StepDeferred as exc:
        if task.request.retries >= MAX_RETRIES:
            pipeline.exchange_request_fail(
                request_id=request_id,
                payer_id=payer_id,
                code="gave_up_retrying",
                # Any step defers: retrieval on the former payer, delivery on the new payer's
                # SFTP server or the hub's repository. The last error names which.
                message=f"the hub gave up after {MAX_RETRIES} retries; the last error was: {exc}",
            )
            return
        countdown = min(
            exc.retry_after or min(_BACKOFF_CAP_SECONDS, 5 * 2**task.request.retries),
            MAX_RETRY_COUNTDOWN_SECONDS,
        )
        logger.info("step deferred", extra={"request": request_id, "countdown": countdown})
        pipeline.exchange_request_defer(
            request_id=request_id, payer_id=payer_id, delay_seconds=countdown
        )
        raise task.retry(countdown=countdown, max_retries=MAX_RETRIES) from exc
    except pipeline.StepFailed as exc:
        pipeline.exchange_request_fail(
            request_id=request_id, payer_id=payer_id, code=exc.code, message=exc.message
        )
        return
    if next_state is not None:
        exchange_request_advance.delay(request_id, payer_id)


@shared_task(name="exchange.match", bind=True)
def exchange_request_match(self: Task, request_id: int, payer_id: int) -> None:
    _run_step(self, request_id, payer_id, pipeline.exchange_request_match)


@shared_task(name="exchange.retrieve", bind=True)
def exchange_request_retrieve(self: Task, request_id: int, payer_id: int) -> None:
    _run_step(
        self, request_id, payer_id, pipeline.exchange_request_retrieve, storage=payload_storage()
    )


@shared_task(name="exchange.screen", bind=True)
def exchange_request_screen(self: Task, request_id: int, payer_id: int) -> None:
    _run_step(
        self, request_id, payer_id, pipeline.exchange_request_screen, storage=payload_storage()
    )


@shared_task(name="exchange.deliver", bind=True)
def exchange_request_deliver(self: Task, request_id: int, payer_id: int) -> None:
    _run_step(
        self,
        request_id,
        payer_id,
        pipeline.exchange_request_deliver,
        task_id=self.request.id,
        storage=payload_storage(),
    )


@shared_task(name="exchange.screen_batch")
def exchange_requests_screen(request_ids: list[int], payer_id: int) -> None:
    """Screen and package requests handed over together (a cohort's members), then deliver
    them together; any the batch could not finish go on alone."""
    left = pipeline.exchange_requests_screen(
        request_ids=request_ids, payer_id=payer_id, storage=payload_storage()
    )
    for request_id in left:
        exchange_request_advance.delay(request_id, payer_id)
    packaged = [request_id for request_id in request_ids if request_id not in left]
    if packaged:
        exchange_requests_deliver.delay(packaged, payer_id)


@shared_task(name="exchange.deliver_batch", bind=True)
def exchange_requests_deliver(self: Task, request_ids: list[int], payer_id: int) -> None:
    """Deliver packaged requests together; any the batch could not finish go on alone."""
    left = pipeline.exchange_requests_deliver(
        request_ids=request_ids,
        payer_id=payer_id,
        task_id=str(self.request.id),
        storage=payload_storage(),
    )
    for request_id in left:
        exchange_request_advance.delay(request_id, payer_id)


_STEP_OF_STATE: dict[str, Task] = {
    S.CONSENTED: exchange_request_match,
    S.MATCHING: exchange_request_match,
    S.MATCHED: exchange_request_retrieve,
    S.AUTHORIZED: exchange_request_retrieve,
    S.RETRIEVING: exchange_request_retrieve,
    S.SCREENING: exchange_request_screen,
    S.PACKAGING: exchange_request_screen,
    S.DELIVERING: exchange_request_deliver,
}


@shared_task(name="exchange.purge_payloads")
def exchange_payloads_purge() -> int:
    """Delete the payload files of requests and cohorts that ended PAYLOAD_RETENTION_DAYS ago
    (hourly)."""
    return payloads_purge(
        storage=payload_storage(), retention=timedelta(days=settings.PAYLOAD_RETENTION_DAYS)
    )


@shared_task(name="exchange.deadlines_alert")
def exchange_deadlines_alert() -> dict[str, int]:
    """Tell plan administrators of requests due soon and overdue, once each (every 15 minutes
    from beat; exchange/deadlines.py)."""
    return deadlines_alert(now=timezone.now())


@shared_task(name="exchange.pull_schedules_run")
def exchange_pull_schedules_run() -> int:
    """Start the recurring pulls that fell due (every 5 minutes from beat;
    exchange/schedules.py); return how many started."""
    started = pull_schedules_run()
    for pull in started:
        exchange_request_advance.delay(pull.request_id, pull.payer_id)
    return len(started)


@shared_task(name="exchange.resume_stuck")
def exchange_requests_resume_stuck() -> int:
    """Advance again the requests whose work stopped moving (every 5 minutes from beat)."""
    to_resume = pipeline.exchange_requests_resume_stuck(
        older_than_seconds=settings.EXCHANGE_STUCK_AFTER_SECONDS,
        max_resumes=settings.EXCHANGE_MAX_RESUMES,
    )
    for request_id, payer_id in to_resume:
        exchange_request_advance.delay(request_id, payer_id)
    return len(to_resume)
