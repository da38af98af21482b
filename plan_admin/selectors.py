"""What the plan-admin portal reads (STYLE.md #1: selectors read).

Every query is scoped to the administrator's payer, except one deliberate read across
tenants, limited to what the other side may see: the requests *to* this payer as a former
payer (status and dates only, never the requesting payer's member data). The directory,
the other such read, is ``directory.selectors``.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from exchange.models import (
    Delivery,
    DeliveryStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.state_machine import ENDED
from hub.models import Payer, SigningKey, SigningKeyStatus
from hub.tenancy import get_for_payer_or_404
from plan_admin.labels import reason_label, status_label

REQUEST_SORTS = [
    ("-opted_in_at", "Newest opt-in first"),
    ("opted_in_at", "Oldest opt-in first"),
    ("due_by", "Due soonest"),
    ("-status_changed_at", "Most recently changed"),
    ("status", "Status"),
]
# The columns a list page or an export needs; the encrypted card number is never loaded.
_LIST_COLUMNS = (
    "status", "status_changed_at", "opted_in_at", "due_by", "reason_code",
    "authorization_mode", "member__username", "member__first_name", "member__last_name",
    "former_payer__name",
)  # fmt: skip
CSV_HEADER = (
    "request id", "status", "status code", "status changed at", "opted in at", "due by",
    "reason", "reason code", "authorization mode", "member username", "member first name",
    "member last name", "former payer",
)  # fmt: skip
# The hub has asked the former payer once a request reaches one of these states:
# $member-match was sent, or the member was sent to sign in there (CMS-0057-F: the
# new payer must request the data no later than one week after the opt-in).
REQUESTED_AT_FORMER_PAYER = (ExchangeStatus.MATCHING, ExchangeStatus.AWAITING_AUTHORIZATION)
UNSUCCESSFUL_ENDS = (
    ExchangeStatus.FAILED,
    ExchangeStatus.NO_MATCH,
    ExchangeStatus.CONSENT_CONSTRAINED,
    ExchangeStatus.AUTHORIZATION_DENIED,
)
COMPLIANCE_WEEKS = 12


@dataclass(frozen=True)
class RequestFilters:
    status: str = ""
    former_payer_id: int | None = None
    opted_in_from: date | None = None
    opted_in_to: date | None = None
    overdue: bool = False
    member: str = ""
    sort: str = REQUEST_SORTS[0][0]


def member_search(term: str) -> Q:
    """Return the condition "the row's member is the one the administrator typed": part of
    their username, first or last name."""
    return (
        Q(member__username__icontains=term)
        | Q(member__first_name__icontains=term)
        | Q(member__last_name__icontains=term)
    )


def _overdue(now: datetime) -> Q:
    return Q(due_by__lt=now) & ~Q(status__in=ENDED)


def exchange_requests_filtered(
    *, payer: Payer, filters: RequestFilters
) -> QuerySet[ExchangeRequest]:
    """Return the payer's requests (as the new payer) matching ``filters``, sorted.

    Every filter leads with the payer, so the (payer, ...) indexes of ExchangeRequest serve it.
    """
    queryset = ExchangeRequest.objects.for_payer(payer)
    if filters.status:
        queryset = queryset.filter(status=filters.status)
    if filters.former_payer_id is not None:
        queryset = queryset.filter(former_payer_id=filters.former_payer_id)
    if filters.opted_in_from is not None:
        queryset = queryset.filter(opted_in_at__date__gte=filters.opted_in_from)
    if filters.opted_in_to is not None:
        queryset = queryset.filter(opted_in_at__date__lte=filters.opted_in_to)
    if filters.overdue:
        queryset = queryset.filter(_overdue(timezone.now()))
    if filters.member:
        queryset = queryset.filter(member_search(filters.member))
    sort = filters.sort if filters.sort in dict(REQUEST_SORTS) else REQUEST_SORTS[0][0]
    return (
        queryset.select_related("member", "former_payer").only(*_LIST_COLUMNS).order_by(sort, "-pk")
    )


def exchange_requests_csv_rows(
    *, queryset: QuerySet[ExchangeRequest]
) -> Iterator[tuple[object, ...]]:
    """Yield the CSV header, then one row per request, reading the database in chunks.

    Status and reason are written as the pages word them (plan_admin/labels.py), each
    followed by its stable code for systems that read the file.
    """
    yield CSV_HEADER
    for pk, status, changed, opted_in, due_by, reason, *rest in queryset.values_list(
        "pk", *_LIST_COLUMNS
    ).iterator(chunk_size=2000):
        yield (
            pk, status_label(status), status, changed, opted_in, due_by, reason_label(reason),
            reason, *rest,
        )  # fmt: skip


def exchange_request_for_admin(*, payer: Payer, request_id: int) -> ExchangeRequest:
    """Return one of the payer's requests, or 404 (also for another payer's request), with
    its cohort line if a roster made it."""
    return get_for_payer_or_404(
        ExchangeRequest.objects.select_related(
            "payer",
            "member",
            "former_payer",
            "consent",
            "opt_in_record",
            "cohort_member__cohort",
            "schedule",
        ),
        payer,
        pk=request_id,
    )


def exchange_request_timeline(
    *, payer: Payer, exchange_request: ExchangeRequest
) -> QuerySet[ExchangeEvent]:
    return (
        ExchangeEvent.objects.for_payer(payer)
        .filter(exchange_request=exchange_request)
        .order_by("created_at", "pk")
    )


def exchange_request_delivery(
    *, payer: Payer, exchange_request: ExchangeRequest
) -> Delivery | None:
    """Return the request's delivery with its attempts, if packaging got that far."""
    return (
        Delivery.objects.for_payer(payer)
        .filter(exchange_request=exchange_request)
        .prefetch_related("attempts")
        .first()
    )


def signing_keys_published(*, payer: Payer) -> QuerySet[SigningKey]:
    return (
        SigningKey.objects.for_payer(payer)
        .filter(status__in=[SigningKeyStatus.ACTIVE, SigningKeyStatus.PREVIOUS])
        .order_by("algorithm", "status", "-created_at")
    )


@dataclass(frozen=True)
class ComplianceSummary:
    since: datetime
    opened: int
    requested_on_time: int
    requested_late: int
    not_requested_past_due: int
    overdue_now: int
    delivered: int
    median_to_delivery: timedelta | None
    p90_to_delivery: timedelta | None
    outcomes: list[tuple[str, int]] = field(default_factory=list)
    failures_by_reason: list[tuple[str, int]] = field(default_factory=list)
    deliveries_per_week: list[tuple[str, int]] = field(default_factory=list)

    @property
    def judged(self) -> int:
        """Requests whose one-week deadline can be judged: asked already, or past due."""
        return self.requested_on_time + self.requested_late + self.not_requested_past_due

    @property
    def on_time_percent(self) -> float | None:
        return 100 * self.requested_on_time / self.judged if self.judged else None


def compliance_summary(*, payer: Payer, since: datetime) -> ComplianceSummary:
    """Return the CMS-0057-F view of the payer's requests opted in since ``since``."""
    now = timezone.now()
    requests = ExchangeRequest.objects.for_payer(payer).filter(opted_in_at__gte=since)
    # One grouped join rather than a subquery per request: 5x faster at 100,000 requests.
    first_asked = Min("events__created_at", filter=Q(events__status__in=REQUESTED_AT_FORMER_PAYER))
    counts = requests.annotate(asked_at=first_asked).aggregate(
        opened=Count("pk"),
        on_time=Count("pk", filter=Q(asked_at__lte=F("due_by"))),
        late=Count("pk", filter=Q(asked_at__gt=F("due_by"))),
        not_asked_past_due=Count("pk", filter=Q(asked_at__isnull=True, due_by__lt=now)),
        overdue=Count("pk", filter=_overdue(now)),
        delivered=Count("pk", filter=Q(status=ExchangeStatus.DELIVERED)),
    )
    # A delivered request ends there, so its status_changed_at is the delivery time.
    delivered = requests.filter(status=ExchangeStatus.DELIVERED)
    outcomes = requests.values("status").annotate(n=Count("pk")).order_by("-n", "status")
    failures = (
        requests.filter(status__in=UNSUCCESSFUL_ENDS)
        .values("reason_code")
        .annotate(n=Count("pk"))
        .order_by("-n", "reason_code")
    )
    return ComplianceSummary(
        since=since,
        opened=counts["opened"],
        requested_on_time=counts["on_time"],
        requested_late=counts["late"],
        not_requested_past_due=counts["not_asked_past_due"],
        overdue_now=counts["overdue"],
        delivered=counts["delivered"],
        median_to_delivery=_time_to_delivery_percentile(delivered, counts["delivered"], 0.5),
        p90_to_delivery=_time_to_delivery_percentile(delivered, counts["delivered"], 0.9),
        outcomes=[(status_label(row["status"]), row["n"]) for row in outcomes],
        failures_by_reason=[
            (reason_label(row["reason_code"]) or "No reason given", row["n"]) for row in failures
        ],
        deliveries_per_week=_deliveries_per_week(payer=payer, now=now),
    )


def _time_to_delivery_percentile(
    delivered: QuerySet[ExchangeRequest], count: int, fraction: float
) -> timedelta | None:
    """Return the nearest-rank percentile of opt-in → delivery among ``count`` rows.

    Nearest rank (the value at position ceil(p·n)) runs on PostgreSQL and on the demo's
    SQLite alike, and is always the time of a real request.
    """
    if not count:
        return None
    position = max(math.ceil(fraction * count), 1) - 1
    duration = ExpressionWrapper(
        F("status_changed_at") - F("opted_in_at"), output_field=DurationField()
    )
    value = (
        delivered.annotate(duration=duration)
        .order_by("duration")
        .values_list("duration", flat=True)[position]
    )
    return value if isinstance(value, timedelta) else None


def _deliveries_per_week(*, payer: Payer, now: datetime) -> list[tuple[str, int]]:
    """Return (week starting, deliveries) for the last COMPLIANCE_WEEKS weeks, empty weeks too."""
    this_week = timezone.localdate(now) - timedelta(days=timezone.localdate(now).weekday())
    first_week = this_week - timedelta(weeks=COMPLIANCE_WEEKS - 1)
    rows = (
        Delivery.objects.for_payer(payer)
        .filter(status=DeliveryStatus.DELIVERED, delivered_at__date__gte=first_week)
        .annotate(week=TruncWeek("delivered_at"))
        .values("week")
        .annotate(n=Count("pk"))
    )
    per_week = {
        row["week"].date() if isinstance(row["week"], datetime) else row["week"]: row["n"]
        for row in rows
    }
    weeks = [first_week + timedelta(weeks=i) for i in range(COMPLIANCE_WEEKS)]
    return [(week.isoformat(), per_week.get(week, 0)) for week in weeks]


@dataclass(frozen=True)
class FormerPayerSummary:
    total: int
    outcomes: list[tuple[str, int]]
    by_requesting_payer: list[tuple[str, int]]
    recent: list[dict[str, object]]


def former_payer_summary(*, payer: Payer, recent: int = 50) -> FormerPayerSummary:
    """Return counts and outcomes of the requests other payers made to ``payer`` as former payer.

    These rows belong to the requesting payers; only their status, dates and the
    requesting payer's name are read — no member, consent or card data.
    """
    requests = ExchangeRequest.objects.across_payers(
        reason="requests other payers made to this one as former payer: status, dates, requester"
    ).filter(former_payer=payer)
    outcomes = requests.values("status").annotate(n=Count("pk")).order_by("-n", "status")
    requesters = (
        requests.values("payer__name").annotate(n=Count("pk")).order_by("-n", "payer__name")
    )
    return FormerPayerSummary(
        total=requests.count(),
        outcomes=[(status_label(r["status"]), r["n"]) for r in outcomes],
        by_requesting_payer=[(r["payer__name"], r["n"]) for r in requesters],
        recent=[
            {**row, "status_label": status_label(str(row["status"]))}
            for row in requests.order_by("-opted_in_at").values(
                "payer__name", "status", "opted_in_at", "due_by", "status_changed_at"
            )[:recent]
        ],
    )


def deliveries_last_by_former_payer(*, payer: Payer) -> dict[int, datetime]:
    """Return, by former payer id, when ``payer`` last had a request delivered from it: the
    directory's proof that the exchange with that payer works."""
    rows = (
        ExchangeRequest.objects.for_payer(payer)
        .filter(status=ExchangeStatus.DELIVERED)
        .values("former_payer_id")
        .annotate(last=Max("status_changed_at"))
        .order_by()
    )
    return {row["former_payer_id"]: row["last"] for row in rows}
