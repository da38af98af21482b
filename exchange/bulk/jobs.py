"""One asynchronous request of a cohort at its holder (a BulkJob), as the hub follows it.

Bulk Data STU2 §Async: a kick-off answers 202 with a status URL, saved at once
(``job_kick_off``); each ``job_poll`` asks it once and says when to ask again — the task
is scheduled for then, honouring ``Retry-After`` of any length, never sleeping — until the
manifest comes; the job is then DOWNLOADING and its kind collects it (match_jobs.py,
export_jobs.py). Transient faults are waited out (``job_error``); permanent ones fail the
job and the members still in its hands, each with the sentence (``job_fail``). A job whose
output is gone is DELETEd at the holder and kicked off again (``job_kick_off_again``), at
most ``MAX_KICK_OFFS`` times. The job reaper runs again the jobs a dead worker left.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from exchange.fhir.bulk_data import BulkDataClient, BulkDone, BulkManifest, BulkPending
from exchange.fhir.client import FhirClient
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirCallError, FhirPermanentError
from exchange.models import (
    BulkJob,
    BulkJobKind,
    BulkJobState,
    Cohort,
    CohortMember,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.payloads.backends import payload_storage
from exchange.payloads.layout import CohortFiles, RequestFiles
from exchange.pipeline import exchange_request_fail
from exchange.smart.backend_services import backend_access_token
from exchange.smart.scopes import BULK_MATCH_SCOPES
from hub.client_certificates import holder_http_client

logger = logging.getLogger(__name__)
S = ExchangeStatus
J = BulkJobState
# How often a job is kicked off again after its files expired or the holder forgot it.
MAX_KICK_OFFS = 3
# Transient failures in a row (429, 5xx, network) before a job gives up.
MAX_CONSECUTIVE_ERRORS = 10
# When the holder says nothing of when to poll again (Bulk Data STU2 §Status: SHOULD).
DEFAULT_POLL_SECONDS = 2.0
ACTIVE_JOB_STATES = (J.WAITING, J.RUNNING, J.DOWNLOADING)
# How often a job waiting for one of the payer's requests at its holder to finish looks again.
TURN_CHECK_SECONDS = 3.0


@dataclass
class JobNext:
    """What the task does after a step: run the job again later, and what else to enqueue."""

    run_again_in: float | None = None
    jobs: list[int] = field(default_factory=list)
    # (request id, payer id) of members handed to the single-request steps.
    requests: list[tuple[int, int]] = field(default_factory=list)
    # Ids of the job's payer's members handed over to be screened, packaged and delivered
    # together (exchange/pipeline.py ``exchange_requests_screen``), a batch per task.
    batches: list[list[int]] = field(default_factory=list)
    cohort: bool = False


def job_load(job_id: int, payer_id: int) -> BulkJob:
    """Return the payer's job with its cohort and both payers."""
    return (
        BulkJob.objects.for_payer(payer_id)
        .select_related("cohort", "cohort__payer", "cohort__former_payer")
        .get(pk=job_id)
    )


@contextmanager
def holder_client(
    cohort: Cohort, *, max_response_bytes: int | None = None
) -> Iterator[BulkDataClient]:
    """Yield a Bulk Data client at the cohort's holder with the new payer's backend token."""
    endpoint = holder_endpoint_get(former_payer=cohort.former_payer)

    def token(force_refresh: bool) -> str:
        return backend_access_token(
            payer=cohort.payer,
            former_payer=cohort.former_payer,
            force_refresh=force_refresh,
            extra_scopes=BULK_MATCH_SCOPES,
        )

    with holder_http_client(
        requesting_payer=cohort.payer_id, max_response_bytes=max_response_bytes
    ) as http:
        yield BulkDataClient(
            FhirClient(
                base_url=endpoint.base_url,
                holder_name=cohort.former_payer.name,
                http=http,
                token_provider=token,
            )
        )


def job_members(job: BulkJob, *statuses: str) -> list[CohortMember]:
    """Return the job's members whose requests are in one of ``statuses``, in roster order."""
    link = "match_job" if job.kind == BulkJobKind.MEMBER_MATCH else "export_job"
    return list(
        CohortMember.objects.for_payer(job.payer_id)
        .filter(**{link: job}, exchange_request__status__in=statuses)
        .select_related(
            "exchange_request",
            "exchange_request__payer",
            "exchange_request__former_payer",
            "exchange_request__consent",
            "exchange_request__member",
        )
        .order_by("line")
    )


def member_fail(request: ExchangeRequest, code: str, message: str) -> None:
    """End one member's request failed, with a sentence an administrator can act on."""
    exchange_request_fail(
        request_id=request.pk, payer_id=request.payer_id, code=code, message=message
    )


def job_error(job: BulkJob, exc: FhirCallError) -> JobNext:
    """Wait and try again after a transient fault; fail the job (and its members) otherwise."""
    if exc.permanent:
        job_fail(job, exc.code, exc.message)
        return JobNext(cohort=True)
    if exc.status == 429 and job.state == J.WAITING:
        return _kick_off_refused_as_busy(job, exc)
    errors = job.consecutive_errors + 1
    wait = exc.retry_after if exc.retry_after is not None else min(300.0, 5.0 * 2**errors)
    if errors >= MAX_CONSECUTIVE_ERRORS:
        job_fail(
            job,
            "gave_up_retrying",
            f"the hub gave up after {errors} failed tries in a row; the last error was: {exc}",
        )
        return JobNext(cohort=True)
    job_update(
        job,
        consecutive_errors=errors,
        next_poll_at=timezone.now() + timedelta(seconds=wait),
        reason_message=exc.message,
    )
    return JobNext(run_again_in=wait)


def _kick_off_refused_as_busy(job: BulkJob, exc: FhirCallError) -> JobNext:
    """A kick-off answered 429 is the holder's queue, not a fault (Bulk Data STU2 §Kick-off:
    a server may refuse new work while it has enough of this client's): the job waits its
    turn for as long as ``BULK_KICK_OFF_PATIENCE_SECONDS``, not a number of tries."""
    waited = (timezone.now() - job.created_at).total_seconds()
    if waited > settings.BULK_KICK_OFF_PATIENCE_SECONDS:
        job_fail(
            job,
            "holder_busy",
            f"{job.cohort.former_payer.name} kept refusing to start this request for "
            f"{waited / 3600:.0f} hours ({exc.message}); retry the chunk later.",
        )
        return JobNext(cohort=True)
    wait = exc.retry_after if exc.retry_after is not None else DEFAULT_POLL_SECONDS * 5
    job_update(
        job, next_poll_at=timezone.now() + timedelta(seconds=wait), reason_message=exc.message
    )
    return JobNext(run_again_in=wait)


def job_waits_its_turn(job: BulkJob) -> JobNext | None:
    """Return when to look again if the payer already has BULK_JOBS_AT_ONCE_PER_HOLDER
    requests at work at this holder (a holder limits each client's, and a cohort of 10,000
    has 20 match chunks and 20 exports); None when the job may be kicked off now."""
    at_work = (
        BulkJob.objects.for_payer(job.payer_id)
        .filter(cohort__former_payer_id=job.cohort.former_payer_id, state=J.RUNNING)
        .count()
    )
    if at_work < settings.BULK_JOBS_AT_ONCE_PER_HOLDER:
        return None
    job_update(job, next_poll_at=timezone.now() + timedelta(seconds=TURN_CHECK_SECONDS))
    return JobNext(run_again_in=TURN_CHECK_SECONDS)


def job_update(job: BulkJob, **values: Any) -> None:
    """Save ``values`` on the job (and the object), noting progress for the reaper."""
    values.setdefault("last_progress_at", timezone.now())
    BulkJob.objects.for_payer(job.payer_id).filter(pk=job.pk).update(**values)
    for name, value in values.items():
        setattr(job, name, value)


def job_heartbeat(job: BulkJob) -> None:
    """Note that the job's collect is still moving (a long download), for the job reaper."""
    BulkJob.objects.for_payer(job.payer_id).filter(pk=job.pk, state=J.DOWNLOADING).update(
        last_progress_at=timezone.now()
    )


def job_fail(job: BulkJob, code: str, message: str) -> None:
    """End the job failed; its members still in its hands fail with the same sentence."""
    claimed = (
        BulkJob.objects.for_payer(job.payer_id)
        .filter(pk=job.pk, state__in=ACTIVE_JOB_STATES)
        .update(
            state=J.FAILED,
            state_changed_at=timezone.now(),
            finished_at=timezone.now(),
            reason_code=code,
            reason_message=message,
        )
    )
    if not claimed:
        return
    match = job.kind == BulkJobKind.MEMBER_MATCH
    statuses = (S.CONSENTED, S.MATCHING) if match else (S.MATCHED, S.RETRIEVING)
    for member in job_members(job, *statuses):
        member_fail(member.exchange_request, code, message)
    if job.status_url:
        job_forget_at_holder(job)


def job_done(job: BulkJob) -> None:
    """End the job done."""
    job_update(job, state=J.DONE, state_changed_at=timezone.now(), finished_at=timezone.now())


def job_may_kick_off(job: BulkJob) -> bool:
    """Return whether the job may be kicked off (again); fail it when it has been too often."""
    if job.kick_offs < MAX_KICK_OFFS:
        return True
    job_fail(
        job,
        "too_many_kick_offs",
        f"{job.cohort.former_payer.name} lost this request's output {job.kick_offs} times; "
        "retry the chunk later.",
    )
    return False


def job_kick_off(job: BulkJob, path: str, parameters: dict[str, Any]) -> JobNext:
    """POST the job's request (Bulk Data STU2 §Kick-off) and save its status URL at once, so
    a worker that dies from here on polls it instead of kicking off a second time."""
    with holder_client(job.cohort) as client:
        status_url = client.kick_off(path, parameters=parameters)
    now = timezone.now()
    job_update(
        job,
        state=J.RUNNING,
        state_changed_at=now,
        status_url=status_url,
        kick_offs=job.kick_offs + 1,
        kicked_off_at=now,
        next_poll_at=now + timedelta(seconds=1),
        consecutive_errors=0,
        reason_message="",
    )
    return JobNext(run_again_in=1.0)


def job_poll(job: BulkJob) -> JobNext:
    """Ask the status URL once (Bulk Data STU2 §Status Request), unless it is too early;
    return when to ask again, or to collect the output now."""
    now = timezone.now()
    if job.next_poll_at and job.next_poll_at > now:
        return JobNext(run_again_in=(job.next_poll_at - now).total_seconds())
    with holder_client(job.cohort) as client:
        try:
            answer = client.poll(job.status_url)
        except FhirPermanentError as exc:
            if exc.code == "bulk_job_gone":
                return job_kick_off_again(job, exc.message)
            raise
    if isinstance(answer, BulkPending):
        wait = answer.retry_after if answer.retry_after is not None else DEFAULT_POLL_SECONDS
        job_update(
            job,
            polls=job.polls + 1,
            progress=(answer.progress or "")[:200],
            next_poll_at=timezone.now() + timedelta(seconds=wait),
            consecutive_errors=0,
        )
        return JobNext(run_again_in=wait)
    return _done_polling(job, answer)


def _done_polling(job: BulkJob, answer: BulkDone) -> JobNext:
    manifest = answer.manifest
    values: dict[str, Any] = {
        "polls": job.polls + 1,
        "progress": "complete",
        "consecutive_errors": 0,
        "manifest": answer.body,
    }
    if manifest is not None:
        values["transaction_time"] = manifest.transaction_time
        values["files"] = _file_entries(manifest)
    claimed = (
        BulkJob.objects.for_payer(job.payer_id)
        .filter(pk=job.pk, state=J.RUNNING)
        .update(
            state=J.DOWNLOADING,
            state_changed_at=timezone.now(),
            last_progress_at=timezone.now(),
            **values,
        )
    )
    if not claimed:
        return JobNext()
    return JobNext(run_again_in=0)


def _file_entries(manifest: BulkManifest) -> list[dict[str, Any]]:
    return [
        {"type": f.type, "url": f.url, "count": f.count, "lines": 0, "done": False}
        for f in manifest.output
    ]


def job_kick_off_again(job: BulkJob, why: str) -> JobNext:
    """Start the job over at the holder (its output expired or it forgot the job)."""
    if job.status_url:
        job_forget_at_holder(job)
    job_staging_forget(job)
    job_update(
        job,
        state=J.WAITING,
        state_changed_at=timezone.now(),
        status_url="",
        files=[],
        manifest={},
        progress="",
        reason_message=f"Kicked off again: {why}",
    )
    return JobNext(run_again_in=0)


def job_forget_at_holder(job: BulkJob) -> None:
    """DELETE the job at the holder (Bulk Data STU2 §Delete): its files are no longer needed."""
    try:
        with holder_client(job.cohort) as client:
            client.delete(job.status_url)
    except FhirCallError as exc:
        logger.info("bulk job delete failed", extra={"job": job.pk, "code": exc.code})


def job_staging_forget(job: BulkJob) -> None:
    """Delete what an export job staged, before it starts (again): a new export's files
    need not be the old one's, so no page of the old may stay."""
    if job.kind != BulkJobKind.DATA_EXPORT:
        return
    storage = payload_storage()
    prefix = f"bulk-{job.pk:08d}-"
    for request_id in (
        CohortMember.objects.for_payer(job.payer_id)
        .filter(export_job=job)
        .values_list("exchange_request_id", flat=True)
    ):
        staging = RequestFiles(request_id).staging
        for name in storage.list(staging):
            if name.rsplit("/", 1)[-1].startswith(prefix):
                storage.delete(name)
    storage.delete_tree(CohortFiles(job.cohort_id).job_folder(job.pk))


def holder_errors_record(job: BulkJob, client: BulkDataClient, manifest: BulkManifest) -> list[str]:
    """Read the holder's error files (OperationOutcome NDJSON) and keep their words."""
    texts: list[str] = []
    for error_file in manifest.error:
        texts.extend(
            client.read_error_file(
                error_file.url, requires_access_token=manifest.requires_access_token
            ).texts
        )
    if texts:
        job_update(job, holder_errors=texts[:50])
    return texts


def bulk_jobs_resume_stuck(*, older_than_seconds: int, limit: int = 200) -> list[tuple[int, int]]:
    """Claim the active jobs nothing has moved for ``older_than_seconds`` past their next
    poll (a worker died, a scheduled task was lost); return (job id, payer id) to run again."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stuck = (
        BulkJob.objects.across_payers(reason="the job reaper looks at every payer's bulk jobs")
        .filter(
            Q(last_progress_at__lt=cutoff)
            | Q(last_progress_at__isnull=True, created_at__lt=cutoff),
            state__in=ACTIVE_JOB_STATES,
        )
        .exclude(next_poll_at__gt=cutoff)
        .values_list("pk", "payer_id", "state")[:limit]
    )
    resumed = []
    for job_id, payer_id, state in stuck:
        if (
            BulkJob.objects.for_payer(payer_id)
            .filter(
                Q(last_progress_at__lt=cutoff) | Q(last_progress_at__isnull=True),
                pk=job_id,
                state=state,
            )
            .update(resume_count=F("resume_count") + 1, last_progress_at=timezone.now())
        ):
            resumed.append((job_id, payer_id))
    return resumed
