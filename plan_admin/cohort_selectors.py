"""What the plan-admin portal reads of cohorts (STYLE.md #1: selectors read).

A cohort's members are each an ExchangeRequest of their own (exchange/models.py), so
where a member stands is its request's status, worded by plan_admin/labels.py as on
every other page. Every query here is scoped to the administrator's payer.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from exchange.models import (
    BulkJob,
    BulkJobKind,
    Cohort,
    CohortMember,
    CohortStatus,
    ExchangeStatus,
)
from exchange.state_machine import IN_PROGRESS
from hub.models import Payer
from hub.tenancy import get_for_payer_or_404
from plan_admin.labels import match_outcome_label, reason_label, status_label

S = ExchangeStatus

# The member list's status filter: every request status falls in exactly one group.
MEMBER_GROUPS: dict[str, tuple[str, frozenset[str]]] = {
    "delivered": ("Delivered", frozenset({S.DELIVERED})),
    "in_progress": ("In progress", IN_PROGRESS),
    "not_matched": ("Not matched", frozenset({S.NO_MATCH})),
    "consent_constrained": ("Consent constrained", frozenset({S.CONSENT_CONSTRAINED})),
    "failed": ("Failed", frozenset({S.FAILED, S.AUTHORIZATION_DENIED})),
    "stopped": ("Cancelled or consent withdrawn", frozenset({S.CANCELLED, S.REVOKED})),
}
# A cohort in one of these has no more work to show: its page stops asking for news.
SETTLED = frozenset({CohortStatus.COMPLETED, CohortStatus.CANCELLED})
# Until the former payer has answered the match, a member's request is in one of these.
_BEFORE_MATCH_ANSWER = (S.CONSENTED, S.MATCHING)
# Records are counted as they arrive (retrieving) and handed to screening after it.
_PAST_RETRIEVING = (S.SCREENING, S.PACKAGING, S.DELIVERING, S.DELIVERED)
_BEFORE_RETRIEVAL = (
    S.CONSENTED, S.AWAITING_AUTHORIZATION, S.AUTHORIZED, S.MATCHING, S.MATCHED,
    S.NO_MATCH, S.CONSENT_CONSTRAINED, S.AUTHORIZATION_DENIED,
)  # fmt: skip
# The columns the member list and its export read; ``submitted`` only on the page (PHI).
_MEMBER_COLUMNS = (
    "line", "match_outcome", "exchange_request__status",
    "exchange_request__reason_code", "exchange_request__due_by",
    "exchange_request__status_changed_at", "exchange_request__member__first_name",
    "exchange_request__member__last_name", "exchange_request__member__plan_member_id",
)  # fmt: skip
MEMBERS_CSV_HEADER = (
    "line", "request id", "member first name", "member last name", "new member id", "status",
    "status code", "match outcome", "match outcome code", "reason", "reason code", "due by",
    "status changed at",
)  # fmt: skip


def _group_filter(statuses: frozenset[str]) -> Q:
    return Q(exchange_request__status__in=sorted(statuses))


def cohorts_for_admin(*, payer: Payer) -> QuerySet[Cohort]:
    """Return the payer's cohorts newest first, each with how many members are delivered,
    in progress, or ended otherwise (one grouped query for a whole page)."""
    other_outcomes = sorted(
        set().union(*(statuses for group, (_, statuses) in MEMBER_GROUPS.items()
                      if group not in ("delivered", "in_progress")))
    )  # fmt: skip
    return (
        Cohort.objects.for_payer(payer)
        .select_related("former_payer")
        .annotate(
            members_listed=Count("members"),
            members_delivered=Count(
                "members", filter=Q(members__exchange_request__status=S.DELIVERED)
            ),
            members_in_progress=Count(
                "members", filter=Q(members__exchange_request__status__in=sorted(IN_PROGRESS))
            ),
            members_other_outcome=Count(
                "members", filter=Q(members__exchange_request__status__in=other_outcomes)
            ),
        )
        .order_by("-created_at", "-pk")
    )


def cohort_for_admin(*, payer: Payer, cohort_id: int) -> Cohort:
    """Return one of the payer's cohorts, or 404 (also for another payer's cohort)."""
    return get_for_payer_or_404(
        Cohort.objects.select_related("former_payer", "created_by"), payer, pk=cohort_id
    )


@dataclass(frozen=True)
class Meter:
    """One progress bar: how far ``value`` is towards ``total``, and the sentence saying it."""

    key: str
    label: str
    value: int
    total: int
    text: str

    @property
    def percent(self) -> int:
        return round(100 * self.value / self.total) if self.total else 0


@dataclass(frozen=True)
class CohortProgress:
    status: str
    members: int
    matched: int
    files_done: int
    files_total: int
    resources_screened: int
    resources_retrieved: int
    delivered: int
    # (group, label, members) for every group of MEMBER_GROUPS, in its order.
    outcomes: list[tuple[str, str, int]]

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    @property
    def meters(self) -> list[Meter]:
        n = self.members
        files = (
            f"{self.files_done:,} of {self.files_total:,} files"
            if self.files_total
            else "No export files listed yet"
        )
        return [
            Meter("matched", "Members matched", self.matched, n,
                  f"{self.matched:,} of {n:,} members have the former payer's match answer"),
            Meter("files", "Files downloaded", self.files_done, self.files_total, files),
            Meter("screened", "Resources screened", self.resources_screened,
                  self.resources_retrieved,
                  f"{self.resources_screened:,} of {self.resources_retrieved:,} resources "
                  "retrieved so far"),
            Meter("delivered", "Members delivered", self.delivered, n,
                  f"{self.delivered:,} of {n:,} members"),
        ]  # fmt: skip


def cohort_progress(cohort: Cohort) -> CohortProgress:
    """Return how far ``cohort`` has come, in three queries whatever its size.

    A member is *matched* once the former payer has answered for it: its match outcome is
    set (bulk match) or its request has left consented/matching (one at a time). Resources
    are counted from the requests' ``resource_counts``; those of requests past retrieving
    have been handed to screening.
    """
    members = CohortMember.objects.for_payer(cohort.payer_id).filter(cohort=cohort)
    counts = members.aggregate(
        total=Count("pk"),
        matched=Count(
            "pk",
            filter=~Q(match_outcome="") | ~Q(exchange_request__status__in=_BEFORE_MATCH_ANSWER),
        ),
        **{group: Count("pk", filter=_group_filter(statuses))
           for group, (_, statuses) in MEMBER_GROUPS.items()},
    )  # fmt: skip
    screened = retrieved = 0
    for status, resource_counts in (
        members.exclude(exchange_request__status__in=_BEFORE_RETRIEVAL)
        .values_list("exchange_request__status", "exchange_request__resource_counts")
        .iterator(chunk_size=2000)
    ):
        resources = _resource_total(resource_counts)
        retrieved += resources
        if status in _PAST_RETRIEVING:
            screened += resources
    files = [
        entry
        for job_files in BulkJob.objects.for_payer(cohort.payer_id)
        .filter(cohort=cohort, kind=BulkJobKind.DATA_EXPORT)
        .values_list("files", flat=True)
        for entry in (job_files if isinstance(job_files, list) else [])
        if isinstance(entry, dict)
    ]
    return CohortProgress(
        status=cohort.status,
        members=counts["total"] or cohort.member_count,
        matched=counts["matched"],
        files_done=sum(1 for entry in files if entry.get("done")),
        files_total=len(files),
        resources_screened=screened,
        resources_retrieved=retrieved,
        delivered=counts["delivered"],
        outcomes=[(group, label, counts[group]) for group, (label, _) in MEMBER_GROUPS.items()],
    )


def _resource_total(counts: object) -> int:
    if not isinstance(counts, dict):
        return 0
    return sum(value for value in counts.values() if isinstance(value, int))


@dataclass(frozen=True)
class JobRow:
    """A bulk job as its table shows it: its files counted."""

    job: BulkJob
    files_done: int
    files_total: int
    lines: int
    # The match chunk whose members the job serves (an export's is its Group's match).
    chunk: int


def cohort_jobs(*, payer: Payer, cohort: Cohort) -> list[JobRow]:
    """Return the cohort's bulk jobs, chunk by chunk, a chunk's match before its export."""
    chunk_of_export = dict(
        CohortMember.objects.for_payer(payer)
        .filter(cohort=cohort, export_job__isnull=False)
        .values_list("export_job_id", "match_job__sequence")
        .distinct()
    )
    rows = []
    for job in BulkJob.objects.for_payer(payer).filter(cohort=cohort).order_by("sequence", "-kind"):
        files = [entry for entry in job.files or [] if isinstance(entry, dict)]
        rows.append(
            JobRow(
                job=job,
                files_done=sum(1 for entry in files if entry.get("done")),
                files_total=len(files),
                lines=sum(entry["lines"] for entry in files if isinstance(entry.get("lines"), int)),
                chunk=chunk_of_export.get(job.pk, job.sequence)
                if job.kind == BulkJobKind.DATA_EXPORT
                else job.sequence,
            )
        )
    return rows


@dataclass(frozen=True)
class MemberFilters:
    group: str = ""
    member: str = ""


def cohort_members_filtered(
    *, payer: Payer, cohort: Cohort, filters: MemberFilters
) -> QuerySet[CohortMember]:
    """Return the cohort's members in roster order, filtered by status group and by words
    of the member's name or new member id (each word must match one of them)."""
    queryset = CohortMember.objects.for_payer(payer).filter(cohort=cohort)
    if filters.group in MEMBER_GROUPS:
        queryset = queryset.filter(_group_filter(MEMBER_GROUPS[filters.group][1]))
    for word in filters.member.split():
        queryset = queryset.filter(
            Q(exchange_request__member__first_name__icontains=word)
            | Q(exchange_request__member__last_name__icontains=word)
            | Q(exchange_request__member__plan_member_id__icontains=word)
        )
    return (
        queryset.select_related("exchange_request__member")
        .only("submitted", *_MEMBER_COLUMNS)
        .order_by("line", "pk")
    )


def cohort_members_csv_rows(*, queryset: QuerySet[CohortMember]) -> Iterator[tuple[object, ...]]:
    """Yield the CSV header, then one row per member, in chunks. What was sent to the former
    payer (``submitted``) is never written: the file leaves the tenant's pages."""
    yield MEMBERS_CSV_HEADER
    for (line, outcome, status, reason, due_by, changed, first, last, member_id,
         request_id) in queryset.values_list(*_MEMBER_COLUMNS, "exchange_request_id").iterator(
        chunk_size=2000
    ):  # fmt: skip
        yield (
            line, request_id, first, last, member_id, status_label(status), status,
            match_outcome_label(outcome), outcome, reason_label(reason), reason, due_by, changed,
        )  # fmt: skip


@dataclass(frozen=True)
class SentMember:
    """What the hub sent the former payer to find one member (its MemberBundle)."""

    name: str
    birth_date: str
    gender: str
    card_member_id: str
    coverage_start: str
    coverage_end: str


# Who the administrator may want to check against the roster: the former payer found no
# such member, or the request failed.
SHOWS_WHAT_WAS_SENT = frozenset({S.NO_MATCH, S.FAILED})


def member_sent(member: CohortMember) -> SentMember | None:
    """Return what was sent for ``member`` when it was not matched or failed, else None.

    ``submitted`` is the MemberBundle parameter of ``$bulk-member-match`` (PDex STU 2.2):
    parts MemberPatient (name, birthDate, gender) and CoverageToMatch (the old card's
    identifier, period).
    """
    if member.exchange_request.status not in SHOWS_WHAT_WAS_SENT or not member.submitted:
        return None
    try:
        bundle = json.loads(member.submitted)
    except ValueError:
        return None
    parts = {
        part.get("name"): part.get("resource") or {}
        for part in (bundle.get("part") if isinstance(bundle, dict) else None) or []
        if isinstance(part, dict)
    }
    patient, coverage = _dict(parts.get("MemberPatient")), _dict(parts.get("CoverageToMatch"))
    name = _first(patient.get("name"))
    given = " ".join(str(word) for word in name.get("given") or [])
    identifier = _first(coverage.get("identifier"))
    period = _dict(coverage.get("period"))
    return SentMember(
        name=" ".join(part for part in (given, str(name.get("family") or "")) if part),
        birth_date=str(patient.get("birthDate") or ""),
        gender=str(patient.get("gender") or ""),
        card_member_id=str(identifier.get("value") or ""),
        coverage_start=str(period.get("start") or ""),
        coverage_end=str(period.get("end") or ""),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(value: Any) -> dict[str, Any]:
    return _dict(value[0]) if isinstance(value, list) and value else {}
