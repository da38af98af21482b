"""Make cohorts of a roster, cancel them, retry a chunk (STYLE.md #1: services write).

Each roster member gets what an opt-in a payer system posts gets (exchange/enrollment.py):
a Consent published as HRex, an ExchangeRequest with the rule's clock, a timeline event and
an audit event; the cohort ties them to one former payer. Written with bulk inserts, so a
roster of thousands takes seconds.
"""

from collections import defaultdict
from dataclasses import dataclass
from functools import partial

from django.db import transaction
from django.utils import timezone

from exchange.bulk.jobs import ACTIVE_JOB_STATES
from exchange.bulk.roster import Roster, RosterMember
from exchange.bulk.tasks import bulk_job_forget, bulk_job_run, cohort_advance
from exchange.enrollment import enrollment_requests_create, members_find_or_create
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirPermanentError
from exchange.models import (
    BulkJob,
    BulkJobKind,
    BulkJobState,
    Cohort,
    CohortMember,
    CohortStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.payloads.backends import payload_storage
from exchange.retrieval import records_retrieval_reset
from exchange.state_machine import IN_PROGRESS, Move, exchange_requests_transition
from hub.audit import audit_record
from hub.models import FhirEndpoint, Payer, PayerStatus, User
from hub.tenancy import get_for_payer_or_404

# Rows per INSERT (and per UPDATE of users) when a cohort's rows are written.
_BATCH_SIZE = 1000
# Cohort.name's max_length.
_COHORT_NAME_MAX = 200
# Roster lines named in a refusal; beyond them it says how many more.
_LINES_NAMED = 20


class CohortRefused(ValueError):
    """The roster cannot be asked of its former payers; the message names each payer at
    fault and the roster lines that name it."""


@dataclass(frozen=True)
class _FormerPayerGroup:
    """The roster's members to be asked of one former payer, and how to ask it."""

    former_payer: Payer
    members: list[RosterMember]
    endpoint: FhirEndpoint


def cohorts_create(
    *,
    new_payer: Payer,
    created_by: User | None,
    roster: Roster,
    name: str,
    roster_name: str,
    client_address: str | None = None,
    actor_label: str = "",
) -> list[Cohort]:
    """Open a cohort per former payer of ``roster``, each member with its consent and request.

    All of them, or nothing: a former payer the hub cannot ask in bulk refuses the whole
    roster (CohortRefused). Each cohort is handed to the engine once the transaction commits.
    ``created_by`` is the plan administrator who uploaded it, or None for a payer system
    (the payer-system API), which ``actor_label`` names in the audit log.
    """
    if created_by is not None and not (
        created_by.is_plan_admin and created_by.payer_id == new_payer.pk
    ):
        raise CohortRefused(f"Only a plan administrator of {new_payer.name} can upload its roster.")
    if new_payer.status == PayerStatus.SUSPENDED:
        raise CohortRefused(new_payer.exchange_suspended_sentence)
    name = name.strip()
    if not name:
        raise CohortRefused("Give the cohort a name.")
    if not roster.members:
        raise CohortRefused("The roster lists no members.")
    groups = _former_payer_groups(new_payer=new_payer, members=roster.members)
    cohort_names = {
        group.former_payer.pk: name if len(groups) == 1 else f"{name} — {group.former_payer.name}"
        for group in groups
    }
    longest = max(cohort_names.values(), key=len)
    if len(longest) > _COHORT_NAME_MAX:
        raise CohortRefused(f"The cohort name {longest!r} is too long; give a shorter name.")

    now = timezone.now()
    cohorts = []
    with transaction.atomic():
        users, created_ids = members_find_or_create(payer=new_payer, opt_ins=roster.members)
        for group in groups:
            cohort = Cohort.objects.create(
                payer=new_payer,
                former_payer=group.former_payer,
                name=cohort_names[group.former_payer.pk],
                created_by=created_by,
                status_changed_at=now,
                roster_name=roster_name[:255],
                roster_format=roster.format,
                member_count=len(group.members),
                chunk_size=group.endpoint.bulk_match_chunk_size,
            )
            _cohort_members_create(
                cohort=cohort,
                members=group.members,
                users=users,
                created_by=created_by,
                client_address=client_address,
                actor_label=actor_label,
            )
            audit_record(
                action="cohort.create",
                obj=cohort,
                payer=new_payer,
                actor=created_by,
                actor_label=actor_label,
                changes={
                    "former_payer": group.former_payer.slug,
                    "members": len(group.members),
                    "members_new_to_the_hub": sum(
                        users[member.member_id].pk in created_ids for member in group.members
                    ),
                    "roster_format": roster.format,
                    "chunk_size": cohort.chunk_size,
                },
                client_address=client_address,
            )
            transaction.on_commit(partial(cohort_advance.delay, cohort.pk, new_payer.pk))
            cohorts.append(cohort)
    return cohorts


def _former_payer_groups(
    *, new_payer: Payer, members: list[RosterMember]
) -> list[_FormerPayerGroup]:
    """Group ``members`` by former payer, in roster order; refuse every payer the hub cannot
    ask in bulk (PDex STU 2.2 §pdex-142: the bulk flow runs under SMART Backend Services)."""
    by_payer: dict[int, list[RosterMember]] = defaultdict(list)
    for member in members:
        by_payer[member.former_payer.pk].append(member)
    groups, refusals = [], []
    for payer_members in by_payer.values():
        former_payer = payer_members[0].former_payer
        lines = _lines_named(payer_members)
        if former_payer.pk == new_payer.pk:
            refusals.append(f"{former_payer.name} is your own plan; it is named on {lines}.")
            continue
        if former_payer.status != PayerStatus.PARTICIPATING:
            refusals.append(
                f"{former_payer.name} does not take part in the hub yet; it is named on {lines}."
            )
            continue
        try:
            endpoint = holder_endpoint_get(former_payer=former_payer)
        except FhirPermanentError as exc:
            refusals.append(f"{exc} It is named on {lines}.")
            continue
        if not endpoint.offers_backend_services:
            refusals.append(
                f"{former_payer.name} does not offer payer-to-payer access (SMART Backend "
                f"Services), which asking for many members at once needs; it is named on {lines}."
            )
        else:
            groups.append(_FormerPayerGroup(former_payer, payer_members, endpoint))
    if refusals:
        raise CohortRefused(" ".join(refusals))
    return groups


def _lines_named(members: list[RosterMember]) -> str:
    """Return "line 3", "lines 3, 7 and 9", or the first ones and how many more."""
    lines = [str(member.line) for member in members]
    if len(lines) == 1:
        return f"line {lines[0]}"
    if len(lines) > _LINES_NAMED:
        shown = ", ".join(lines[:_LINES_NAMED])
        return f"lines {shown} and {len(lines) - _LINES_NAMED:,} more"
    return f"lines {', '.join(lines[:-1])} and {lines[-1]}"


def _cohort_members_create(
    *,
    cohort: Cohort,
    members: list[RosterMember],
    users: dict[str, User],
    created_by: User | None,
    client_address: str | None,
    actor_label: str,
) -> None:
    """Write each member's consent, request, timeline event and audit event
    (exchange/enrollment.py), and its cohort row."""
    requests = enrollment_requests_create(
        new_payer=cohort.payer,
        opt_ins=members,
        users=users,
        audit_details=[{"cohort": cohort.pk, "line": member.line} for member in members],
        actor=created_by,
        actor_label=actor_label,
        client_address=client_address,
        asked_with=len(members) - 1,
    )
    CohortMember.objects.bulk_create(
        [
            CohortMember(
                payer=cohort.payer, cohort=cohort, exchange_request=exchange_request, line=m.line
            )
            for m, exchange_request in zip(members, requests, strict=True)
        ],
        batch_size=_BATCH_SIZE,
    )


class CohortActionRefused(ValueError):
    """The cohort is not in a state that allows this action; the message says why."""


def _members_move(
    requests: list[ExchangeRequest],
    *,
    to_status: str,
    message: str,
    actor: User,
    action: str,
    client_address: str | None,
) -> None:
    """Move the members' requests as ``actor`` did, all at once (a timeline and an audit
    event each), whatever state each is in."""
    by_status: dict[str, list[int]] = {}
    for request in requests:
        by_status.setdefault(request.status, []).append(request.pk)
    for from_status, request_ids in by_status.items():
        exchange_requests_transition(
            payer=requests[0].payer_id,
            moves=[Move(request_id, message) for request_id in request_ids],
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            action=action,
            client_address=client_address,
        )


def cohort_cancel(
    *, payer: Payer, cohort_id: int, actor: User, client_address: str | None = None
) -> Cohort:
    """Stop a cohort: every member still on its way ends ``cancelled``, every job still
    running is cancelled here and DELETEd at the holder (Bulk Data STU2 §Delete)."""
    cohort = get_for_payer_or_404(Cohort.objects.all(), payer, pk=cohort_id)
    if cohort.status in (CohortStatus.COMPLETED, CohortStatus.CANCELLED):
        raise CohortActionRefused(
            f"This cohort is already {cohort.get_status_display().lower()}; nothing to cancel."
        )
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            Cohort.objects.for_payer(payer)
            .filter(pk=cohort.pk, status=cohort.status)
            .update(status=CohortStatus.CANCELLED, status_changed_at=now, finished_at=now)
        )
        if not claimed:
            raise CohortActionRefused("The cohort changed while you were looking at it; reload.")
        jobs = BulkJob.objects.for_payer(payer).filter(cohort=cohort, state__in=ACTIVE_JOB_STATES)
        at_holder = [job_id for job_id, url in jobs.values_list("pk", "status_url") if url]
        jobs.update(
            state=BulkJobState.CANCELLED,
            state_changed_at=now,
            finished_at=now,
            reason_code="cancelled",
            reason_message=f"Cancelled by {actor.get_username()}.",
        )
        requests = list(
            ExchangeRequest.objects.for_payer(payer)
            .filter(cohort_member__cohort=cohort, status__in=IN_PROGRESS | {ExchangeStatus.FAILED})
            .select_for_update()
        )
        if requests:
            _members_move(
                requests,
                to_status=ExchangeStatus.CANCELLED,
                message=f"Cancelled with the whole cohort by the plan administrator "
                f"{actor.get_username()}.",
                actor=actor,
                action="exchange_request.cancel",
                client_address=client_address,
            )
        audit_record(
            action="cohort.cancel",
            obj=cohort,
            payer=payer,
            actor=actor,
            changes={"status": {"before": cohort.status, "after": CohortStatus.CANCELLED}},
            client_address=client_address,
        )
        for job_id in at_holder:
            transaction.on_commit(partial(bulk_job_forget.delay, job_id, payer.pk))
    cohort.refresh_from_db()
    return cohort


def cohort_chunk_retry(
    *,
    payer: Payer,
    cohort_id: int,
    job_id: int,
    actor: User,
    client_address: str | None = None,
) -> Cohort:
    """Run the chunk of job ``job_id`` (its match, or the export of its matched Group) again
    from its match: its failed members start over from their consent (a match or export
    job that failed takes them all with it)."""
    cohort = get_for_payer_or_404(Cohort.objects.all(), payer, pk=cohort_id)
    if cohort.status == CohortStatus.CANCELLED:
        raise CohortActionRefused("This cohort was cancelled; upload the roster again instead.")
    job = get_for_payer_or_404(BulkJob.objects.all(), payer, cohort=cohort, pk=job_id)
    match_job = job
    if job.kind == BulkJobKind.DATA_EXPORT:
        # An export serves the members one match chunk found: that chunk starts over.
        match_job = get_for_payer_or_404(
            BulkJob.objects.all(),
            payer,
            pk__in=CohortMember.objects.for_payer(payer)
            .filter(export_job=job)
            .values("match_job")[:1],
        )
    sequence = match_job.sequence
    if match_job.state in ACTIVE_JOB_STATES:
        raise CohortActionRefused(f"Chunk {sequence} is still running.")
    with transaction.atomic():
        failed = list(
            ExchangeRequest.objects.for_payer(payer)
            .filter(cohort_member__match_job=match_job, status=ExchangeStatus.FAILED)
            .select_for_update()
        )
        if not failed:
            raise CohortActionRefused(f"No member of chunk {sequence} failed; nothing to retry.")
        _members_move(
            failed,
            to_status=ExchangeStatus.CONSENTED,
            message=f"Retried with chunk {sequence} by the plan administrator "
            f"{actor.get_username()}.",
            actor=actor,
            action="exchange_request.retry",
            client_address=client_address,
        )
        for request in failed:
            records_retrieval_reset(exchange_request=request, storage=payload_storage())
        ids = [request.pk for request in failed]
        ExchangeRequest.objects.for_payer(payer).filter(pk__in=ids).update(
            awaits_bulk_job=True, matched_patient_id="", screened_out_counts={}, resume_count=0
        )
        CohortMember.objects.for_payer(payer).filter(exchange_request_id__in=ids).update(
            match_outcome="", group_id="", export_job=None
        )
        BulkJob.objects.for_payer(payer).filter(pk=match_job.pk).update(
            state=BulkJobState.WAITING,
            state_changed_at=timezone.now(),
            status_url="",
            kick_offs=0,
            consecutive_errors=0,
            polls=0,
            progress="",
            manifest={},
            files=[],
            holder_errors=[],
            reason_code="",
            reason_message="",
            finished_at=None,
        )
        Cohort.objects.for_payer(payer).filter(pk=cohort.pk).update(
            status=CohortStatus.MATCHING, status_changed_at=timezone.now(), finished_at=None
        )
        audit_record(
            action="cohort.chunk_retry",
            obj=cohort,
            payer=payer,
            actor=actor,
            changes={"chunk": sequence, "members": len(ids)},
            client_address=client_address,
        )
        transaction.on_commit(partial(bulk_job_run.delay, match_job.pk, payer.pk))
    cohort.refresh_from_db()
    return cohort
