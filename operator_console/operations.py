"""The operations view (issue 14, item 6): what the hub team watches daily, on one page.

Routed at /operator/operations/ (hub/urls.py) behind the console's own sign-in
(``admin.site.admin_view``): only hub operators reach it; a payer's person made staff by
mistake gets a 404, like any object of another payer. Each row links to the console's list
of the requests behind it. Showing a payer's failures, clock or files is a look at its data,
so the view records an ``operator.look`` for every payer it names.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from exchange.deadlines import DeadlinesOwed
from exchange.models import ExchangeStatus
from exchange.operations import (
    FAILED_WITHIN_DAYS,
    OWING_STATUSES,
    STUCK_STATUSES,
    FormerPayerTrouble,
    hub_operations,
)
from hub.audit import client_address
from hub.models import Payer
from operator_console.admin.looks import is_operator, operator
from operator_console.services import operator_look_record

PAGE = "operations view"


def _when(moment: datetime) -> str:
    # The admin's date filters read ISO 8601 with its offset.
    return moment.isoformat()


def _requests_url(**filters: str | int) -> str:
    return f"{reverse('admin:exchange_exchangerequest_changelist')}?{urlencode(filters)}"


def _request_url(request_id: int) -> str:
    return reverse("admin:exchange_exchangerequest_change", args=[request_id])


@dataclass(frozen=True)
class TroubleRow:
    former_payer: Payer
    trouble: FormerPayerTrouble
    requester: Payer | None
    failed_url: str
    stuck_url: str
    last_failure_url: str
    oldest_stuck_url: str


@dataclass(frozen=True)
class DeadlineRow:
    payer: Payer
    due_soon: int
    overdue: int
    due_soon_url: str
    overdue_url: str


def _trouble_rows(
    troubles: list[FormerPayerTrouble], payers: dict[int, Payer], now: datetime
) -> list[TroubleRow]:
    failed_since = _when(now - timedelta(days=FAILED_WITHIN_DAYS))
    not_moved_since = _when(now - timedelta(seconds=settings.EXCHANGE_STUCK_AFTER_SECONDS))
    return [
        TroubleRow(
            former_payer=payers[t.former_payer_id],
            trouble=t,
            requester=payers.get(t.last_failure.requester_id) if t.last_failure else None,
            failed_url=_requests_url(
                former_payer__id__exact=t.former_payer_id,
                status__exact=ExchangeStatus.FAILED,
                status_changed_at__gte=failed_since,
            ),
            stuck_url=_requests_url(
                former_payer__id__exact=t.former_payer_id,
                status__in=",".join(STUCK_STATUSES),
                last_progress_at__lt=not_moved_since,
                awaits_bulk_job__exact=0,
            ),
            last_failure_url=_request_url(t.last_failure.request_id) if t.last_failure else "",
            oldest_stuck_url=(
                _request_url(t.oldest_stuck_request_id) if t.oldest_stuck_request_id else ""
            ),
        )
        for t in troubles
    ]


def _deadline_rows(
    operations_now: datetime, deadlines: dict[int, DeadlinesOwed], payers: dict[int, Payer]
) -> list[DeadlineRow]:
    due_soon_until = _when(operations_now + timedelta(hours=settings.EXCHANGE_DUE_SOON_HOURS))
    now = _when(operations_now)
    owing = ",".join(OWING_STATUSES)
    return [
        DeadlineRow(
            payer=payers[payer_id],
            due_soon=owed.due_soon,
            overdue=owed.overdue,
            due_soon_url=_requests_url(
                payer__id__exact=payer_id,
                status__in=owing,
                due_by__gt=now,
                due_by__lte=due_soon_until,
            ),
            overdue_url=_requests_url(payer__id__exact=payer_id, status__in=owing, due_by__lte=now),
        )
        for payer_id, owed in deadlines.items()
    ]


@require_GET
def operations_view(request: HttpRequest) -> HttpResponse:
    """Show queue depths, requests failing or stuck by former payer, the rule's clock across
    payers, and the SFTP repository's uncollected files and space."""
    if not is_operator(request):
        raise Http404("No such page.")
    # Whole seconds, so the counts and the filtered lists they link to read the same moment.
    now = timezone.now().replace(microsecond=0)
    operations = hub_operations(now=now)
    payers = operations.payers
    operator_look_record(
        operator=operator(request),
        payers=list(payers.values()),
        looked_at=None,
        what=PAGE,
        client_address=client_address(request),
    )
    deadline_rows = _deadline_rows(now, operations.deadlines, payers)
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "operations": operations,
        "troubles": _trouble_rows(operations.troubles, payers, now),
        "deadlines": deadline_rows,
        "due_soon_total": sum(row.due_soon for row in deadline_rows),
        "overdue_total": sum(row.overdue for row in deadline_rows),
        "uncollected": [(payers[u.payer_id], u) for u in operations.uncollected],
        "uncollected_files": sum(u.files for u in operations.uncollected),
        "uncollected_bytes": sum(u.bytes for u in operations.uncollected),
        "due_soon_hours": settings.EXCHANGE_DUE_SOON_HOURS,
        "retention_days": settings.SFTP_REPOSITORY_RETENTION_DAYS,
    }
    return render(request, "admin/operator_console/operations.html", context)
