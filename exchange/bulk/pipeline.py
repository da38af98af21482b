"""The cohort engine: match in chunks, export each matched Group, split, hand over, settle.

1. ``cohort_prepare`` reads the holder's CapabilityStatement and records the path
   (``CohortPath``): ``$bulk-member-match`` then ``$davinci-data-export`` (PDex STU 2.2, the
   payer-to-payer bulk flow, §pdex-192), else then ``Group/{id}/$export`` (Bulk Data STU2),
   else one member at a time by the single-request steps. For a bulk path it cuts the
   cohort into match chunks of ``Cohort.chunk_size`` members, one BulkJob each.
2. ``bulk_job_step`` moves one BulkJob on by one step — kick off, poll once, or collect —
   and says when to run it again (``JobNext``): polling is a scheduled task honouring
   ``Retry-After`` of any length, never a sleep. The status URL is saved as soon as the
   holder gives it, so a restarted worker polls instead of kicking off again.
   - a match chunk's answer puts every member in one outcome (exchange/bulk/matching.py),
     and its matched Group becomes an export job;
   - an export job's files are downloaded a few at once, each streamed through the splitter
     (exchange/bulk/split.py) into its members' staging; a file gone (404/410) has the
     export kicked off again. Each member is then handed to the single-request steps
     (screen, package, deliver: exchange/pipeline.py) like any request that was retrieved.
3. ``cohort_settle`` delivers the cohort manifest (every member's outcome and folder) once
   every member has ended.

Each member's own state is its ExchangeRequest's and moves only through the state machine,
so the member's page, the timeline, the audit log and withdrawal work as for one request;
a member withdrawn mid-way is simply skipped by the steps that follow.
"""

import io
import json
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, cast

import orjson
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from exchange.bulk.matching import (
    correlate,
    groups_of_parameters,
    local_patient_id,
    match_parameters,
    member_bundle,
)
from exchange.bulk.split import (
    FileSplit,
    MemberSplitter,
    SplitFailed,
    cited_page_write,
    shared_resources,
)
from exchange.delivery import DeliveryFailed, cohort_remote_directory, deliver_files
from exchange.fhir.bulk_data import BulkDataClient, BulkDone, BulkManifest, BulkPending
from exchange.fhir.capabilities import capability_summary
from exchange.fhir.client import FhirClient
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirCallError, FhirPermanentError
from exchange.models import (
    BulkJob,
    BulkJobKind,
    BulkJobState,
    Cohort,
    CohortMember,
    CohortPath,
    CohortStatus,
    Delivery,
    ExchangeRequest,
    ExchangeStatus,
    MatchOutcome,
)
from exchange.payloads.layout import CohortFiles, RequestFiles
from exchange.payloads.storage import PayloadStorage
from exchange.pipeline import (
    exchange_request_fail,
    exchange_request_records_received,
)
from exchange.smart.backend_services import backend_access_token
from exchange.smart.scopes import BULK_MATCH_SCOPES
from exchange.state_machine import ENDED, exchange_request_transition
from hub.audit import ENGINE, audit_record
from hub.outbound import PayerHttpClient

logger = logging.getLogger(__name__)
S = ExchangeStatus
J = BulkJobState
PDEX_PAYER_TO_PAYER = "hl7.fhir.us.davinci-pdex#payertopayer"
# How often a job is kicked off again after its files expired or the holder forgot it.
MAX_KICK_OFFS = 3
# Transient failures in a row (429, 5xx, network) before a job gives up.
MAX_CONSECUTIVE_ERRORS = 10
# When the holder says nothing of when to poll again (Bulk Data STU2 §Status: SHOULD).
DEFAULT_POLL_SECONDS = 2.0
ACTIVE_JOB_STATES = (J.WAITING, J.RUNNING, J.DOWNLOADING)
GROUP_FILE_SPOOL_BYTES = 8 * 1024 * 1024
# A settled cohort checks on its members this often while they are screened and delivered.
SETTLE_EVERY_SECONDS = 5.0


@dataclass
class JobNext:
    """What the task does after a step: run the job again later, and what else to enqueue."""

    run_again_in: float | None = None
    jobs: list[int] = field(default_factory=list)
    # (request id, payer id) of members handed to the single-request steps.
    requests: list[tuple[int, int]] = field(default_factory=list)
    cohort: bool = False


# --- loading and holder access ---


def _cohort(cohort_id: int, payer_id: int) -> Cohort:
    return (
        Cohort.objects.for_payer(payer_id).select_related("payer", "former_payer").get(pk=cohort_id)
    )


def _job(job_id: int, payer_id: int) -> BulkJob:
    return (
        BulkJob.objects.for_payer(payer_id)
        .select_related("cohort", "cohort__payer", "cohort__former_payer")
        .get(pk=job_id)
    )


@contextmanager
def _holder(cohort: Cohort, *, max_response_bytes: int | None = None) -> Iterator[BulkDataClient]:
    """Yield a Bulk Data client at the cohort's holder with the new payer's backend token."""
    endpoint = holder_endpoint_get(former_payer=cohort.former_payer)

    def token(force_refresh: bool) -> str:
        return backend_access_token(
            payer=cohort.payer,
            former_payer=cohort.former_payer,
            force_refresh=force_refresh,
            extra_scopes=BULK_MATCH_SCOPES,
        )

    with PayerHttpClient(max_response_bytes=max_response_bytes) as http:
        yield BulkDataClient(
            FhirClient(
                base_url=endpoint.base_url,
                holder_name=cohort.former_payer.name,
                http=http,
                token_provider=token,
            )
        )


def _members(job: BulkJob, *statuses: str) -> list[CohortMember]:
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


def _move_member(
    request: ExchangeRequest,
    to_status: str,
    timeline: str,
    *,
    reason_code: str = "",
    reason_message: str = "",
) -> bool:
    moved = exchange_request_transition(
        payer=request.payer_id,
        exchange_request_id=request.pk,
        from_status=request.status,
        to_status=to_status,
        message=timeline,
        actor=None,
        actor_label=ENGINE,
        reason_code=reason_code,
        reason_message=reason_message,
    )
    if moved:
        request.status = to_status
    return moved


def _fail_member(request: ExchangeRequest, code: str, message: str) -> None:
    exchange_request_fail(
        request_id=request.pk, payer_id=request.payer_id, code=code, message=message
    )


# --- 1. prepare ---


def _path_of(summary: dict[str, Any], holder: str) -> tuple[str, str]:
    operations = set(summary.get("operations") or [])
    if "bulk-member-match" in operations and "davinci-data-export" in operations:
        return CohortPath.DAVINCI_DATA_EXPORT, (
            f"{holder}'s CapabilityStatement lists $bulk-member-match and $davinci-data-export."
        )
    if "bulk-member-match" in operations and "export" in operations:
        return CohortPath.GROUP_EXPORT, (
            f"{holder}'s CapabilityStatement lists $bulk-member-match and Group $export, "
            "but not $davinci-data-export."
        )
    missing = "$bulk-member-match" if "bulk-member-match" not in operations else "a Group export"
    return CohortPath.SINGLE_MEMBER, (
        f"{holder}'s CapabilityStatement does not list {missing}, so each member is matched "
        "and fetched on their own."
    )


def cohort_prepare(*, cohort_id: int, payer_id: int) -> JobNext:
    """Choose the cohort's path from the holder's CapabilityStatement and cut match chunks."""
    cohort = _cohort(cohort_id, payer_id)
    if cohort.status != CohortStatus.PREPARING:
        return JobNext(cohort=True)
    with _holder(cohort) as client:
        statement = client.fhir.read("metadata", resource_type="CapabilityStatement")
    path, reason = _path_of(capability_summary(statement), cohort.former_payer.name)
    members = list(
        CohortMember.objects.for_payer(payer_id)
        .filter(cohort=cohort)
        .order_by("line")
        .values_list("pk", "exchange_request_id")
    )
    with transaction.atomic():
        claimed = (
            Cohort.objects.for_payer(payer_id)
            .filter(pk=cohort_id, status=CohortStatus.PREPARING)
            .update(
                path=path,
                path_reason=reason,
                status=CohortStatus.DELIVERING
                if path == CohortPath.SINGLE_MEMBER
                else CohortStatus.MATCHING,
                status_changed_at=timezone.now(),
            )
        )
        if not claimed:
            return JobNext(cohort=True)
        audit_record(
            action="cohort.path",
            obj=cohort,
            payer=payer_id,
            actor_label=ENGINE,
            changes={"path": path, "reason": reason, "members": len(members)},
        )
        if path == CohortPath.SINGLE_MEMBER:
            return JobNext(
                requests=[(request_id, payer_id) for _, request_id in members], cohort=True
            )
        jobs = []
        for sequence, start in enumerate(range(0, len(members), cohort.chunk_size), start=1):
            chunk = members[start : start + cohort.chunk_size]
            job = BulkJob.objects.create(
                payer_id=payer_id,
                cohort=cohort,
                kind=BulkJobKind.MEMBER_MATCH,
                sequence=sequence,
                operation="Group/$bulk-member-match",
            )
            CohortMember.objects.for_payer(payer_id).filter(pk__in=[m for m, _ in chunk]).update(
                match_job=job
            )
            jobs.append(job.pk)
        ExchangeRequest.objects.for_payer(payer_id).filter(
            pk__in=[request_id for _, request_id in members]
        ).update(awaits_bulk_job=True)
    return JobNext(jobs=jobs)


def cohort_fail(*, cohort_id: int, payer_id: int, code: str, message: str) -> None:
    """Fail every member not yet ended (the holder cannot be used at all), then settle."""
    for request_id in (
        ExchangeRequest.objects.for_payer(payer_id)
        .filter(cohort_member__cohort_id=cohort_id)
        .exclude(status__in=ENDED | {S.FAILED})
        .values_list("pk", flat=True)
    ):
        exchange_request_fail(request_id=request_id, payer_id=payer_id, code=code, message=message)
    Cohort.objects.for_payer(payer_id).filter(pk=cohort_id, status=CohortStatus.PREPARING).update(
        status=CohortStatus.DELIVERING, status_changed_at=timezone.now(), path_reason=message[:500]
    )


def job_cohort_id(*, job_id: int, payer_id: int) -> int:
    """Return the id of the cohort a job belongs to."""
    return BulkJob.objects.for_payer(payer_id).values_list("cohort_id", flat=True).get(pk=job_id)


# --- 2. one step of a job ---


def bulk_job_step(*, job_id: int, payer_id: int, storage: PayloadStorage) -> JobNext:
    """Move the job on by one step: kick off, poll once, or collect its output."""
    job = _job(job_id, payer_id)
    if job.state not in ACTIVE_JOB_STATES:
        return JobNext()
    if job.cohort.status == CohortStatus.CANCELLED:
        return JobNext()
    try:
        if job.state == J.WAITING:
            return _kick_off(job)
        if job.state == J.RUNNING:
            return _poll(job)
        if job.kind == BulkJobKind.MEMBER_MATCH:
            return _collect_match(job)
        return _collect_export(job, storage)
    except FhirCallError as exc:
        return _job_error(job, exc)


def _job_error(job: BulkJob, exc: FhirCallError) -> JobNext:
    """Wait and try again after a transient fault; fail the job (and its members) otherwise."""
    if exc.permanent:
        _job_fail(job, exc.code, exc.message)
        return JobNext(cohort=True)
    errors = job.consecutive_errors + 1
    wait = exc.retry_after if exc.retry_after is not None else min(300.0, 5.0 * 2**errors)
    if errors >= MAX_CONSECUTIVE_ERRORS:
        _job_fail(
            job,
            "gave_up_retrying",
            f"the hub gave up after {errors} failed tries in a row; the last error was: {exc}",
        )
        return JobNext(cohort=True)
    _job_update(
        job,
        consecutive_errors=errors,
        next_poll_at=timezone.now() + timedelta(seconds=wait),
        reason_message=exc.message,
    )
    return JobNext(run_again_in=wait)


def _job_update(job: BulkJob, **values: Any) -> None:
    values.setdefault("last_progress_at", timezone.now())
    BulkJob.objects.for_payer(job.payer_id).filter(pk=job.pk).update(**values)
    for name, value in values.items():
        setattr(job, name, value)


def _job_fail(job: BulkJob, code: str, message: str) -> None:
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
    statuses = (
        (S.CONSENTED, S.MATCHING)
        if job.kind == BulkJobKind.MEMBER_MATCH
        else (
            S.MATCHED,
            S.RETRIEVING,
        )
    )
    for member in _members(job, *statuses):
        _fail_member(member.exchange_request, code, message)
    if job.status_url:
        _forget_at_holder(job)


def _kick_off(job: BulkJob) -> JobNext:
    if job.kick_offs >= MAX_KICK_OFFS:
        _job_fail(
            job,
            "too_many_kick_offs",
            f"{job.cohort.former_payer.name} lost this request's output {job.kick_offs} times; "
            "retry the chunk later.",
        )
        return JobNext(cohort=True)
    if job.kind == BulkJobKind.MEMBER_MATCH:
        path, parameters = _match_request(job)
        if parameters is None:
            _job_done(job)
            return JobNext(cohort=True)
    else:
        path, parameters = _export_request(job)
        for member in _members(job, S.MATCHED):
            _move_member(
                member.exchange_request,
                S.RETRIEVING,
                f"Fetching your records from {job.cohort.former_payer.name} with "
                "other members of your plan.",
            )
    with _holder(job.cohort) as client:
        try:
            status_url = client.kick_off(path, parameters=parameters)
        except FhirPermanentError as exc:
            if job.kind == BulkJobKind.DATA_EXPORT and _type_filter_refused(job, exc):
                return JobNext(run_again_in=0)
            raise
    now = timezone.now()
    _job_update(
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


def _match_request(job: BulkJob) -> tuple[str, dict[str, Any] | None]:
    """Return the $bulk-member-match path and body of the chunk's members still to match."""
    bundles = []
    submitted = []
    for member in _members(job, S.CONSENTED, S.MATCHING):
        request = member.exchange_request
        try:
            bundle = member_bundle(member)
        except FhirPermanentError as exc:
            _fail_member(request, exc.code, exc.message)
            continue
        if request.status == S.CONSENTED:
            _move_member(
                request,
                S.MATCHING,
                f"Looking for you among {request.former_payer.name}'s members, with other "
                "members of your plan.",
            )
        bundles.append(bundle)
        member.submitted = json.dumps(bundle)
        submitted.append(member)
    if not bundles:
        return "", None
    CohortMember.objects.for_payer(job.payer_id).bulk_update(submitted, ["submitted"])
    return "Group/$bulk-member-match", match_parameters(bundles)


def _five_years_before(moment: datetime) -> str:
    return (moment.date() - timedelta(days=5 * 365 + 2)).isoformat()


def _export_request(job: BulkJob) -> tuple[str, dict[str, Any]]:
    """Return the Group export's path and Parameters (SPEC.md "Getting the data")."""
    davinci = job.cohort.path == CohortPath.DAVINCI_DATA_EXPORT
    operation = "$davinci-data-export" if davinci else "$export"
    parameter: list[dict[str, Any]] = []
    if davinci:
        parameter.append({"name": "exportType", "valueString": PDEX_PAYER_TO_PAYER})
    if job.parameters.get("_typeFilter"):
        # PDex §pdex-180: bound claims by date of service; the hub screens the 5-year
        # window itself whatever the holder does with it (a floor, not a cap: FHIR-56496).
        parameter.append({"name": "_typeFilter", "valueString": job.parameters["_typeFilter"]})
    if job.parameters.get("_since"):
        parameter.append({"name": "_since", "valueInstant": job.parameters["_since"]})
    return f"Group/{job.group_id}/{operation}", {
        "resourceType": "Parameters",
        "parameter": parameter,
    }


def _type_filter_refused(job: BulkJob, exc: FhirPermanentError) -> bool:
    """Drop ``_typeFilter`` once when the holder refuses it (§pdex-180b: it may not support it,
    but must say so) and note why; return whether the job should be kicked off again."""
    if not job.parameters.get("_typeFilter") or "_typefilter" not in exc.message.lower():
        return False
    parameters = {k: v for k, v in job.parameters.items() if k != "_typeFilter"}
    parameters["typeFilterRefused"] = exc.message
    _job_update(job, parameters=parameters)
    return True


def _poll(job: BulkJob) -> JobNext:
    now = timezone.now()
    if job.next_poll_at and job.next_poll_at > now:
        return JobNext(run_again_in=(job.next_poll_at - now).total_seconds())
    with _holder(job.cohort) as client:
        try:
            answer = client.poll(job.status_url)
        except FhirPermanentError as exc:
            if exc.code == "bulk_job_gone":
                return _kick_off_again(job, exc.message)
            raise
    if isinstance(answer, BulkPending):
        wait = answer.retry_after if answer.retry_after is not None else DEFAULT_POLL_SECONDS
        _job_update(
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


def _kick_off_again(job: BulkJob, why: str) -> JobNext:
    """Start the job over at the holder (its output expired or it forgot the job)."""
    _staging_forget(job)
    _job_update(
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


def _forget_at_holder(job: BulkJob) -> None:
    """DELETE the job at the holder (Bulk Data STU2 §Delete): its files are no longer needed."""
    try:
        with _holder(job.cohort) as client:
            client.delete(job.status_url)
    except FhirCallError as exc:
        logger.info("bulk job delete failed", extra={"job": job.pk, "code": exc.code})


def bulk_job_forget(*, job_id: int, payer_id: int) -> None:
    """DELETE a cancelled job at its holder, so it stops working on it and drops its files."""
    job = _job(job_id, payer_id)
    if job.status_url:
        _forget_at_holder(job)


def _job_done(job: BulkJob) -> None:
    _job_update(job, state=J.DONE, state_changed_at=timezone.now(), finished_at=timezone.now())


# --- collecting a match chunk ---


def _collect_match(job: BulkJob) -> JobNext:
    holder = job.cohort.former_payer.name
    members = _members(job, S.MATCHING)
    body = job.manifest
    if body.get("resourceType") == "Parameters":
        groups = groups_of_parameters(body, holder_name=holder)
    else:
        groups = []
        with _holder(job.cohort) as client:
            manifest = client.manifest(body)
            for output in manifest.output:
                if output.type != "Group":
                    continue
                # A chunk's Groups are small (one line per Group, its members' Patients).
                with tempfile.SpooledTemporaryFile(max_size=GROUP_FILE_SPOOL_BYTES) as spool:
                    client.download(
                        output.url,
                        requires_access_token=manifest.requires_access_token,
                        into=spool,
                    )
                    spool.seek(0)
                    lines = [line for line in spool if line.strip()]
                for line in lines:
                    try:
                        group = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        raise FhirPermanentError(
                            f"{holder}'s Group file of $bulk-member-match holds a line that is "
                            "not JSON.",
                            code="malformed_match_answer",
                        ) from None
                    groups.append(group)
            _holder_errors_record(job, client, manifest)
    report = correlate(
        groups, sent={local_patient_id(m.pk): m.pk for m in members}, holder_name=holder
    )
    by_id = {m.pk: m for m in members}
    matched_groups: dict[str, list[CohortMember]] = {}
    with transaction.atomic():
        for member_id, outcome in report.outcomes.items():
            member = by_id[member_id]
            member.match_outcome = outcome.outcome
            member.group_id = outcome.group_id
            request = member.exchange_request
            if outcome.outcome == MatchOutcome.MATCH:
                ExchangeRequest.objects.for_payer(job.payer_id).filter(pk=request.pk).update(
                    matched_patient_id=outcome.patient_id
                )
                if _move_member(request, S.MATCHED, f"{holder} found you."):
                    matched_groups.setdefault(outcome.group_id, []).append(member)
            elif outcome.outcome == MatchOutcome.NO_MATCH:
                _move_member(
                    request,
                    S.NO_MATCH,
                    f"{holder} found no member with these details.",
                    reason_code="no_match",
                    reason_message=f"{holder} found no member with this name, date of birth, gender "
                    "and member id from the old card. Check the roster's line against the card.",
                )
            else:
                # PDex §pdex-154c: the holder gives no reason for a consent constraint.
                _move_member(
                    request,
                    S.CONSENT_CONSTRAINED,
                    f"{holder} will not share these records under this consent.",
                    reason_code="consent_not_honoured",
                    reason_message=f"{holder} matched the member but will not share under this "
                    "consent; it gives no reason (PDex).",
                )
        CohortMember.objects.for_payer(job.payer_id).bulk_update(
            [by_id[i] for i in report.outcomes], ["match_outcome", "group_id"]
        )
        for member_id, why in report.failed.items():
            _fail_member(by_id[member_id].exchange_request, "match_answer_unusable", why)
        if report.remarks:
            _job_update(job, holder_errors=[*job.holder_errors, *report.remarks[:20]])
        export_jobs = [
            _export_job_create(job, group_id, members)
            for group_id, members in matched_groups.items()
        ]
        _job_done(job)
        if export_jobs:
            Cohort.objects.for_payer(job.payer_id).filter(
                pk=job.cohort_id, status=CohortStatus.MATCHING
            ).update(status=CohortStatus.EXPORTING, status_changed_at=timezone.now())
    _forget_at_holder(job)
    return JobNext(jobs=export_jobs, cohort=True)


def _export_job_create(match_job: BulkJob, group_id: str, members: list[CohortMember]) -> int:
    cohort = (
        Cohort.objects.for_payer(match_job.payer_id).select_for_update().get(pk=match_job.cohort_id)
    )
    last = (
        BulkJob.objects.for_payer(match_job.payer_id)
        .filter(cohort=cohort, kind=BulkJobKind.DATA_EXPORT)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    operation = (
        "$davinci-data-export" if cohort.path == CohortPath.DAVINCI_DATA_EXPORT else "$export"
    )
    job = BulkJob.objects.create(
        payer_id=match_job.payer_id,
        cohort=cohort,
        kind=BulkJobKind.DATA_EXPORT,
        sequence=(last or 0) + 1,
        group_id=group_id,
        operation=f"Group/{group_id}/{operation}",
        parameters={
            "_typeFilter": f"ExplanationOfBenefit?service-date=ge{_five_years_before(timezone.now())}"
        },
    )
    CohortMember.objects.for_payer(match_job.payer_id).filter(
        pk__in=[m.pk for m in members]
    ).update(export_job=job)
    return job.pk


def _holder_errors_record(
    job: BulkJob, client: BulkDataClient, manifest: BulkManifest
) -> list[str]:
    """Read the holder's error files (OperationOutcome NDJSON) and keep their words."""
    texts: list[str] = []
    for error_file in manifest.error:
        texts.extend(
            client.read_error_file(
                error_file.url, requires_access_token=manifest.requires_access_token
            ).texts
        )
    if texts:
        _job_update(job, holder_errors=texts[:50])
    return texts


# --- collecting an export ---


def _collect_export(job: BulkJob, storage: PayloadStorage) -> JobNext:
    cohort = job.cohort
    holder = cohort.former_payer.name
    members = _members(job, S.RETRIEVING)
    request_of_patient = {
        m.exchange_request.matched_patient_id: m.exchange_request_id for m in members
    }
    files = [dict(entry) for entry in job.files]
    pending = [index for index, entry in enumerate(files) if not entry["done"]]

    def fetch(index: int) -> FileSplit:
        entry = files[index]
        splitter = MemberSplitter(
            storage=storage,
            cohort_id=cohort.pk,
            job_id=job.pk,
            file_index=index,
            resource_type=entry["type"],
            request_of_patient=request_of_patient,
            holder_name=holder,
        )
        feeder = _SplittingTarget(splitter)
        try:
            with _holder(cohort, max_response_bytes=settings.BULK_FILE_MAX_BYTES) as client:
                client.download(
                    entry["url"],
                    requires_access_token=client.manifest(job.manifest).requires_access_token,
                    # A file-like object the client writes, seeks and truncates (not a file).
                    into=cast(IO[bytes], feeder),
                )
            feeder.finish()
            result = splitter.close()
        except BaseException:
            splitter.abort()
            raise
        finally:
            connections.close_all()
        storage.write_bytes(_split_record_name(cohort.pk, job.pk, index), _split_record(result))
        return result

    try:
        with ThreadPoolExecutor(max_workers=settings.BULK_DOWNLOADS_AT_ONCE) as pool:
            for index, result in zip(pending, pool.map(fetch, pending), strict=True):
                files[index].update(lines=result.lines, done=True)
                _job_update(job, files=files, consecutive_errors=0)
    except FhirPermanentError as exc:
        if exc.code == "bulk_file_expired":
            return _kick_off_again(job, exc.message)
        raise
    except SplitFailed as exc:
        _job_fail(job, "malformed_export", str(exc))
        return JobNext(cohort=True)
    return _export_finish(job, storage, members, files)


class _SplittingTarget(io.RawIOBase):
    """The file a download writes into, which is the splitter: bytes are cut into lines and
    routed as they arrive. The Bulk Data client seeks to 0 and truncates when the holder
    sends the file from its first byte again (Range ignored): so does the split."""

    def __init__(self, splitter: MemberSplitter) -> None:
        super().__init__()
        self._splitter = splitter
        self._pending = b""
        self._size = 0

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._size += len(chunk)
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._splitter.feed(line)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset not in (0, self._size):
            raise io.UnsupportedOperation("a split download only starts over or goes on")
        return offset

    def truncate(self, size: int | None = None) -> int:
        if size not in (None, 0) or self._size == 0:
            return self._size
        self._pending = b""
        self._size = 0
        self._splitter.restart()
        return 0

    def readinto(self, buffer: Any) -> int:
        return 0

    def finish(self) -> None:
        if self._pending.strip():
            self._splitter.feed(self._pending)
        self._pending = b""


def _split_record_name(cohort_id: int, job_id: int, index: int) -> str:
    return f"{CohortFiles(cohort_id).job_folder(job_id)}/split-{index:04d}.json"


def _split_record(result: FileSplit) -> bytes:
    return orjson.dumps(
        {
            "lines": result.lines,
            "shared": result.shared,
            "counts": {str(k): v for k, v in result.counts.items()},
            "cited": {str(k): sorted(v) for k, v in result.cited.items()},
            "broken": {str(k): v for k, v in result.broken.items()},
        }
    )


def _export_finish(
    job: BulkJob, storage: PayloadStorage, members: list[CohortMember], files: list[dict[str, Any]]
) -> JobNext:
    """Reconcile the files with the manifest, then hand every member to screening."""
    holder = job.cohort.former_payer.name
    for entry in files:
        if entry["count"] is not None and entry["count"] != entry["lines"]:
            _job_fail(
                job,
                "export_count_mismatch",
                f"{holder}'s manifest says its {entry['type']} file holds {entry['count']} "
                f"resources, but the hub read {entry['lines']} lines from it.",
            )
            return JobNext(cohort=True)
    counts: dict[int, dict[str, int]] = {}
    cited: dict[int, set[str]] = {}
    broken: dict[int, str] = {}
    for index in range(len(files)):
        record = orjson.loads(storage.read_bytes(_split_record_name(job.cohort_id, job.pk, index)))
        for key, value in record["counts"].items():
            member_counts = counts.setdefault(int(key), {})
            for resource_type, n in value.items():
                member_counts[resource_type] = member_counts.get(resource_type, 0) + n
        for key, value in record["cited"].items():
            cited.setdefault(int(key), set()).update(value)
        for key, value in record["broken"].items():
            broken.setdefault(int(key), value)
    with _holder(job.cohort) as client:
        refusals = _holder_errors_record(job, client, client.manifest(job.manifest))
    shared = shared_resources(storage, cohort_id=job.cohort_id, job_id=job.pk)
    handed: list[tuple[int, int]] = []
    for member in members:
        request = member.exchange_request
        refusal = _refusal_of(refusals, request.matched_patient_id)
        if refusal:
            _fail_member(
                request, "holder_refused_export", f"{holder} did not export this member: {refusal}"
            )
            continue
        if request.pk in broken:
            _fail_member(request, "malformed_export", broken[request.pk])
            continue
        member_counts = counts.get(request.pk, {})
        for resource_type, n in cited_page_write(
            storage,
            request_id=request.pk,
            job_id=job.pk,
            cited=cited.get(request.pk, set()),
            shared=shared,
        ).items():
            member_counts[resource_type] = member_counts.get(resource_type, 0) + n
        with transaction.atomic():
            ExchangeRequest.objects.for_payer(job.payer_id).filter(pk=request.pk).update(
                resource_counts=member_counts, awaits_bulk_job=False
            )
            if exchange_request_records_received(
                exchange_request=request, resource_counts=member_counts
            ):
                handed.append((request.pk, job.payer_id))
    _job_done(job)
    _forget_at_holder(job)
    return JobNext(requests=handed, cohort=True)


def _refusal_of(texts: list[str], patient_id: str) -> str:
    """Return what the holder's error files say of ``Patient/<patient_id>``, if anything."""
    needle = f"Patient/{patient_id}"
    for text in texts:
        if needle in text.split() or f"{needle}:" in text or f"{needle} " in text:
            return text
    return ""


def _staging_forget(job: BulkJob) -> None:
    """Delete what an export job staged, before it starts over (names are rewritten anyway;
    this drops pages of a file that the new export no longer has)."""
    if job.kind != BulkJobKind.DATA_EXPORT:
        return
    storage = PayloadStorage()
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


# --- 3. settle ---


def cohort_settle(*, cohort_id: int, payer_id: int, storage: PayloadStorage) -> JobNext:
    """Move the cohort on when its jobs are through; deliver its manifest when every member
    has ended. Returns when to look again while members are still on their way."""
    cohort = _cohort(cohort_id, payer_id)
    if cohort.status in (CohortStatus.COMPLETED, CohortStatus.CANCELLED, CohortStatus.PREPARING):
        return JobNext()
    active_jobs = BulkJob.objects.for_payer(payer_id).filter(
        cohort=cohort, state__in=ACTIVE_JOB_STATES
    )
    if cohort.status in (CohortStatus.MATCHING, CohortStatus.EXPORTING):
        if active_jobs.exists():
            return JobNext()
        Cohort.objects.for_payer(payer_id).filter(pk=cohort_id, status=cohort.status).update(
            status=CohortStatus.DELIVERING, status_changed_at=timezone.now()
        )
    unfinished = (
        ExchangeRequest.objects.for_payer(payer_id)
        .filter(cohort_member__cohort=cohort)
        .exclude(status__in=ENDED | {S.FAILED})
        .count()
    )
    if unfinished:
        return JobNext(run_again_in=SETTLE_EVERY_SECONDS)
    manifest = cohort_manifest(cohort)
    name = CohortFiles(cohort_id).manifest
    storage.write_bytes(name, json.dumps(manifest, indent=2).encode() + b"\n")
    try:
        delivered = deliver_files(
            payer=cohort.payer,
            remote_directory=cohort_remote_directory(
                payer=cohort.payer, former_payer_slug=cohort.former_payer.slug, cohort_id=cohort_id
            ),
            storage=storage,
            files=[(name, "cohort-manifest.json")],
        )
    except DeliveryFailed as exc:
        if exc.permanent:
            raise
        return JobNext(run_again_in=60.0)
    now = timezone.now()
    with transaction.atomic():
        if (
            Cohort.objects.for_payer(payer_id)
            .filter(pk=cohort_id, status=CohortStatus.DELIVERING)
            .update(
                status=CohortStatus.COMPLETED,
                status_changed_at=now,
                finished_at=now,
                delivered_at=now,
                manifest=manifest,
            )
        ):
            audit_record(
                action="cohort.deliver",
                obj=cohort,
                payer=payer_id,
                actor_label=ENGINE,
                changes={
                    "members": manifest["memberCount"],
                    "outcomes": manifest["outcomes"],
                    "files": [
                        {"path": f.remote_path, "size": f.size, "sha256": f.sha256}
                        for f in delivered
                    ],
                },
            )
    return JobNext()


def cohort_manifest(cohort: Cohort) -> dict[str, Any]:
    """Return the cohort manifest: every member's outcome, and where its files went."""
    rows = (
        CohortMember.objects.for_payer(cohort.payer_id)
        .filter(cohort=cohort)
        .select_related("exchange_request", "exchange_request__member")
        .order_by("line")
    )
    deliveries = {
        d.exchange_request_id: d
        for d in Delivery.objects.for_payer(cohort.payer_id).filter(
            exchange_request__cohort_member__cohort=cohort
        )
    }
    members = []
    outcomes: dict[str, int] = {}
    for row in rows.iterator(chunk_size=1000):
        request = row.exchange_request
        outcomes[request.status] = outcomes.get(request.status, 0) + 1
        entry: dict[str, Any] = {
            "line": row.line,
            "memberId": request.member.plan_member_id,
            "requestId": request.pk,
            "status": request.status,
            "matchOutcome": row.match_outcome or None,
        }
        if request.reason_code:
            entry["reason"] = {"code": request.reason_code, "message": request.reason_message}
        delivery = deliveries.get(request.pk)
        if delivery is not None and request.status == S.DELIVERED:
            entry["folder"] = delivery.remote_directory
            entry["files"] = [*delivery.manifest.get("files", []), {"name": "manifest.json"}]
        members.append(entry)
    return {
        "cohortId": cohort.pk,
        "name": cohort.name,
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "newPayer": {"name": cohort.payer.name, "npi": cohort.payer.npi},
        "formerPayer": {"name": cohort.former_payer.name, "npi": cohort.former_payer.npi},
        "path": cohort.path,
        "memberCount": len(members),
        "outcomes": dict(sorted(outcomes.items())),
        "members": members,
    }


# --- the job reaper ---


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
