"""What the payer-system API reads (STYLE.md #1: selectors read), always of one payer:
another payer's object is a 404, as one that does not exist (STYLE.md #2)."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, QuerySet

from exchange.models import BulkJob, Cohort, Delivery, ExchangeRequest, OptInRecord
from hub.models import AuditEvent, Payer
from hub.tenancy import get_for_payer_or_404

_NPI = re.compile(r"\d{10}", re.ASCII)


def payer_by_reference(reference: str) -> Payer | None:
    """Return the payer named by its 10-digit NPI or its hub slug, whatever its status (the
    opt-in says when it does not take part in the hub yet)."""
    if _NPI.fullmatch(reference):
        return Payer.objects.filter(npi=reference).first()
    return Payer.objects.filter(slug=reference).first()


def opt_in_get(*, payer: Payer, opt_in_id: int) -> OptInRecord:
    return get_for_payer_or_404(OptInRecord.objects.select_related("member"), payer, pk=opt_in_id)


def opt_in_requests(*, payer: Payer, opt_in: OptInRecord) -> list[ExchangeRequest]:
    return list(
        ExchangeRequest.objects.for_payer(payer)
        .filter(opt_in_record=opt_in)
        .select_related("former_payer")
        .order_by("pk")
    )


def exchange_requests_of_payer(
    *,
    payer: Payer,
    status: str | None = None,
    former_payer: Payer | None = None,
    member_id: str | None = None,
    opt_in_id: int | None = None,
    cohort_id: int | None = None,
) -> QuerySet[ExchangeRequest]:
    """Return the payer's requests, filtered as asked."""
    requests = ExchangeRequest.objects.for_payer(payer).select_related("former_payer", "member")
    if status:
        requests = requests.filter(status=status)
    if former_payer is not None:
        requests = requests.filter(former_payer=former_payer)
    if member_id:
        requests = requests.filter(member__plan_member_id=member_id)
    if opt_in_id is not None:
        requests = requests.filter(opt_in_record_id=opt_in_id)
    if cohort_id is not None:
        requests = requests.filter(cohort_member__cohort_id=cohort_id)
    return requests


def exchange_request_get(*, payer: Payer, request_id: int) -> ExchangeRequest:
    return get_for_payer_or_404(
        ExchangeRequest.objects.select_related("former_payer", "member", "schedule"),
        payer,
        pk=request_id,
    )


@dataclass(frozen=True)
class DeliveredFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DeliveryView:
    """A delivery of a request, with the files as the hub recorded landing them."""

    id: int
    status: str
    mode: str
    remote_directory: str
    created_at: datetime
    delivered_at: datetime | None
    files: list[DeliveredFile]


def exchange_request_deliveries(
    *, payer: Payer, exchange_request: ExchangeRequest
) -> list[DeliveryView]:
    """Return the request's deliveries; each file's path, size and sha256 are those of the
    delivery's audit event (exchange/pipeline.py), written as the files landed."""
    deliveries = list(Delivery.objects.for_payer(payer).filter(exchange_request=exchange_request))
    if not deliveries:
        return []
    landed: dict[str, Any] = (
        AuditEvent.objects.for_payer(payer)
        .filter(
            action="exchange_request.deliver",
            object_type=ExchangeRequest._meta.label,
            object_id=str(exchange_request.pk),
        )
        .values_list("changes", flat=True)
        .order_by("-pk")
        .first()
    ) or {}
    files = [
        DeliveredFile(path=f["path"], size=f["size"], sha256=f["sha256"])
        for f in landed.get("files", [])
    ]
    return [
        DeliveryView(
            id=delivery.pk,
            status=delivery.status,
            mode=delivery.mode,
            remote_directory=delivery.remote_directory,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            files=files if delivery.delivered_at else [],
        )
        for delivery in deliveries
    ]


def cohorts_of_payer(*, payer: Payer) -> QuerySet[Cohort]:
    return Cohort.objects.for_payer(payer).select_related("former_payer")


def cohort_get(*, payer: Payer, cohort_id: int) -> Cohort:
    return get_for_payer_or_404(Cohort.objects.select_related("former_payer"), payer, pk=cohort_id)


def cohort_members_by_status(*, payer: Payer, cohort: Cohort) -> dict[str, int]:
    """Return how many of the cohort's members' requests are in each state (those in none
    are left out)."""
    counted = (
        ExchangeRequest.objects.for_payer(payer)
        .filter(cohort_member__cohort=cohort)
        .values_list("status")
        .annotate(members=Count("pk"))
        .order_by("status")
    )
    return dict(counted)


def cohort_jobs(*, payer: Payer, cohort: Cohort) -> list[BulkJob]:
    """Return the cohort's match and export jobs at its former payer, by chunk."""
    return list(BulkJob.objects.for_payer(payer).filter(cohort=cohort).order_by("sequence", "kind"))
