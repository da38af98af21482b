"""The cohort engine: match in chunks, export each matched Group, split, hand over, settle.

1. ``cohort_prepare`` reads the holder's CapabilityStatement and records the path
   (``CohortPath``): ``$bulk-member-match`` then ``$davinci-data-export`` (PDex STU 2.2, the
   payer-to-payer bulk flow, §pdex-192), else then ``Group/{id}/$export`` (Bulk Data STU2),
   else one member at a time by the single-request steps. For a bulk path it cuts the
   cohort into match chunks of ``Cohort.chunk_size`` members, one BulkJob each.
2. ``bulk_job_step`` moves one BulkJob on by one step — kick off, poll once, or collect —
   and says when to run it again (``JobNext``); how a job is followed at the holder is
   exchange/bulk/jobs.py (status URL saved at kick-off, scheduled polls, faults):
   - a match chunk (exchange/bulk/match_jobs.py) puts every member in one outcome, and its
     matched Group becomes an export job;
   - an export job (exchange/bulk/export_jobs.py) downloads its files a few at once, each
     streamed through the splitter (exchange/bulk/split.py) into its members' staging, and
     hands each member to the single-request steps (screen, package, deliver:
     exchange/pipeline.py) like any request that was retrieved.
3. ``cohort_settle`` delivers the cohort manifest (exchange/bulk/cohort_manifest.py: every
   member's outcome and folder) once every member has ended.

Each member's own state is its ExchangeRequest's and moves only through the state machine,
so the member's page, the timeline, the audit log and withdrawal work as for one request;
a member withdrawn mid-way is simply skipped by the steps that follow.
"""

import json
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.bulk.cohort_manifest import cohort_manifest
from exchange.bulk.export_jobs import export_collect, export_kick_off
from exchange.bulk.jobs import (
    ACTIVE_JOB_STATES,
    J,
    JobNext,
    job_error,
    job_forget_at_holder,
    job_load,
    job_poll,
)
from exchange.bulk.match_jobs import match_collect, match_kick_off
from exchange.delivery import DeliveryFailed, cohort_remote_directory, deliver_files
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirCallError
from exchange.models import (
    BulkJob,
    BulkJobKind,
    Cohort,
    CohortMember,
    CohortPath,
    CohortStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.payloads.layout import CohortFiles
from exchange.payloads.storage import PayloadStorage
from exchange.pipeline import exchange_request_fail
from exchange.radar.services import holder_capabilities
from exchange.state_machine import ENDED
from hub.audit import ENGINE, audit_record

S = ExchangeStatus
# A settled cohort checks on its members this often while they are screened and delivered.
SETTLE_EVERY_SECONDS = 5.0
UNSETTLED = (
    CohortStatus.PREPARING,
    CohortStatus.MATCHING,
    CohortStatus.EXPORTING,
    CohortStatus.DELIVERING,
)


def _cohort(cohort_id: int, payer_id: int) -> Cohort:
    return (
        Cohort.objects.for_payer(payer_id).select_related("payer", "former_payer").get(pk=cohort_id)
    )


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
    # The holder's offers as the compatibility radar last found them (probed now when no
    # recent probe read them, exchange/radar/).
    endpoint = holder_endpoint_get(former_payer=cohort.former_payer)
    path, reason = _path_of(holder_capabilities(endpoint=endpoint), cohort.former_payer.name)
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


def bulk_job_step(*, job_id: int, payer_id: int, storage: PayloadStorage) -> JobNext:
    """Move the job on by one step: kick off, poll once, or collect its output."""
    job = job_load(job_id, payer_id)
    if job.state not in ACTIVE_JOB_STATES or job.cohort.status == CohortStatus.CANCELLED:
        return JobNext()
    match = job.kind == BulkJobKind.MEMBER_MATCH
    try:
        if job.state == J.WAITING:
            return match_kick_off(job) if match else export_kick_off(job)
        if job.state == J.RUNNING:
            return job_poll(job)
        return match_collect(job) if match else export_collect(job, storage)
    except FhirCallError as exc:
        return job_error(job, exc)


def bulk_job_forget(*, job_id: int, payer_id: int) -> None:
    """DELETE a cancelled job at its holder, so it stops working on it and drops its files."""
    job = job_load(job_id, payer_id)
    if job.status_url:
        job_forget_at_holder(job)


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


def cohort_check_claim(*, cohort_id: int, payer_id: int, in_seconds: float) -> bool:
    """Claim the cohort's next check for the caller's chain; return False when another chain
    already holds a check due later (then the caller schedules nothing)."""
    now = timezone.now()
    return bool(
        Cohort.objects.for_payer(payer_id)
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now), pk=cohort_id)
        .update(next_check_at=now + timedelta(seconds=in_seconds))
    )


def cohorts_resume_stuck(*, older_than_seconds: int, limit: int = 200) -> list[tuple[int, int]]:
    """Return (cohort id, payer id) of unsettled cohorts whose checks stopped (their chain
    was lost with a worker, or their first task never ran): the caller advances them."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        Cohort.objects.across_payers(reason="the job reaper looks at every payer's cohorts")
        .filter(
            Q(next_check_at__lt=cutoff)
            | Q(next_check_at__isnull=True, status_changed_at__lt=cutoff),
            status__in=UNSETTLED,
        )
        .values_list("pk", "payer_id")[:limit]
    )
