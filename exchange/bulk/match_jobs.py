"""A match chunk's job: ``Group/$bulk-member-match`` sent, its answer read back to each member.

The request and the correlation are exchange/bulk/matching.py's; here they meet the
database: each member moves to matched, no match or consent-constrained (or fails when the
answer does not say), and the chunk's matched Group becomes an export job.
"""

import json
import tempfile
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from exchange.bulk.export_jobs import export_parameters
from exchange.bulk.jobs import (
    JobNext,
    holder_client,
    holder_errors_record,
    job_done,
    job_forget_at_holder,
    job_kick_off,
    job_may_kick_off,
    job_members,
    job_update,
    job_waits_its_turn,
    member_fail,
)
from exchange.bulk.matching import (
    correlate,
    groups_of_parameters,
    local_patient_id,
    match_parameters,
    member_bundle,
)
from exchange.fhir.errors import FhirPermanentError
from exchange.models import (
    BulkJob,
    BulkJobKind,
    Cohort,
    CohortMember,
    CohortPath,
    CohortStatus,
    ExchangeRequest,
    ExchangeStatus,
    MatchOutcome,
)
from exchange.pipeline import engine_move_many

S = ExchangeStatus
# A chunk's Groups are small (a line per Group, its members' Patients): spooled in memory.
GROUP_FILE_SPOOL_BYTES = 8 * 1024 * 1024


def match_kick_off(job: BulkJob) -> JobNext:
    """Send the chunk's members still to match to ``Group/$bulk-member-match``."""
    if not job_may_kick_off(job):
        return JobNext(cohort=True)
    turn = job_waits_its_turn(job)
    if turn is not None:
        return turn
    path, parameters = _match_request(job)
    if parameters is None:
        job_done(job)
        return JobNext(cohort=True)
    return job_kick_off(job, path, parameters)


def _match_request(job: BulkJob) -> tuple[str, dict[str, Any] | None]:
    """Return the $bulk-member-match path and body of the chunk's members still to match."""
    bundles = []
    submitted = []
    for member in job_members(job, S.CONSENTED, S.MATCHING):
        try:
            bundle = member_bundle(member)
        except FhirPermanentError as exc:
            member_fail(member.exchange_request, exc.code, exc.message)
            continue
        bundles.append(bundle)
        member.submitted = json.dumps(bundle)
        submitted.append(member)
    if not bundles:
        return "", None
    with transaction.atomic():
        engine_move_many(
            [m.exchange_request for m in submitted if m.exchange_request.status == S.CONSENTED],
            S.MATCHING,
            lambda r: (
                f"Looking for you among {r.former_payer.name}'s members, with other "
                "members of your plan."
            ),
        )
        CohortMember.objects.for_payer(job.payer_id).bulk_update(submitted, ["submitted"])
    return "Group/$bulk-member-match", match_parameters(bundles)


def match_collect(job: BulkJob) -> JobNext:
    holder = job.cohort.former_payer.name
    members = job_members(job, S.MATCHING)
    body = job.manifest
    if body.get("resourceType") == "Parameters":
        groups = groups_of_parameters(body, holder_name=holder)
    else:
        groups = []
        with holder_client(job.cohort) as client:
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
                            "not valid JSON.",
                            code="malformed_match_answer",
                        ) from None
                    groups.append(group)
            holder_errors_record(job, client, manifest)
    report = correlate(
        groups, sent={local_patient_id(m.pk): m.pk for m in members}, holder_name=holder
    )
    by_id = {m.pk: m for m in members}
    matched_groups: dict[str, list[CohortMember]] = {}
    by_outcome: dict[str, list[CohortMember]] = {}
    for member_id, outcome in report.outcomes.items():
        member = by_id[member_id]
        member.match_outcome = outcome.outcome
        member.group_id = outcome.group_id
        if outcome.outcome == MatchOutcome.MATCH:
            member.exchange_request.matched_patient_id = outcome.patient_id
        by_outcome.setdefault(outcome.outcome, []).append(member)
    with transaction.atomic():
        ExchangeRequest.objects.for_payer(job.payer_id).bulk_update(
            [m.exchange_request for m in by_outcome.get(MatchOutcome.MATCH, [])],
            ["matched_patient_id"],
        )
        moved = engine_move_many(
            [m.exchange_request for m in by_outcome.get(MatchOutcome.MATCH, [])],
            S.MATCHED,
            lambda r: f"{holder} found you.",
        )
        moved_ids = {r.pk for r in moved}
        for member in by_outcome.get(MatchOutcome.MATCH, []):
            if member.exchange_request_id in moved_ids:
                matched_groups.setdefault(member.group_id, []).append(member)
        engine_move_many(
            [m.exchange_request for m in by_outcome.get(MatchOutcome.NO_MATCH, [])],
            S.NO_MATCH,
            lambda r: f"{holder} found no member with these details.",
            reason_code="no_match",
            reason_message=f"{holder} found no member with this name, date of birth, gender "
            "and member id from the old card. Check the roster's line against the card.",
        )
        # PDex §pdex-154c: the holder gives no reason for a consent constraint.
        engine_move_many(
            [m.exchange_request for m in by_outcome.get(MatchOutcome.CONSENT_CONSTRAINT, [])],
            S.CONSENT_CONSTRAINED,
            lambda r: f"{holder} will not share these records under this consent.",
            reason_code="consent_not_honoured",
            reason_message=f"{holder} matched the member but will not share under this "
            "consent; it gives no reason (PDex).",
        )
        # A chunk's members land in a few Groups: one UPDATE per Group.
        in_group: dict[tuple[str, str], list[int]] = {}
        for member_id, outcome in report.outcomes.items():
            in_group.setdefault((outcome.outcome, outcome.group_id), []).append(member_id)
        for (match_outcome, group_id), member_ids in in_group.items():
            CohortMember.objects.for_payer(job.payer_id).filter(pk__in=member_ids).update(
                match_outcome=match_outcome, group_id=group_id
            )
        for member_id, why in report.failed.items():
            member_fail(by_id[member_id].exchange_request, "match_answer_unusable", why)
        if report.remarks:
            job_update(job, holder_errors=[*job.holder_errors, *report.remarks[:20]])
        export_jobs = [
            _export_job_create(job, group_id, members)
            for group_id, members in matched_groups.items()
        ]
        job_done(job)
        if export_jobs:
            Cohort.objects.for_payer(job.payer_id).filter(
                pk=job.cohort_id, status=CohortStatus.MATCHING
            ).update(status=CohortStatus.EXPORTING, status_changed_at=timezone.now())
    job_forget_at_holder(job)
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
        parameters=export_parameters(),
    )
    CohortMember.objects.for_payer(match_job.payer_id).filter(
        pk__in=[m.pk for m in members]
    ).update(export_job=job)
    return job.pk
