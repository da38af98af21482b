"""The payer's exchange requests: list, filter, export, detail, retry and cancel."""

import csv
from collections.abc import Iterator
from datetime import datetime

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from exchange import services as lifecycle
from exchange.models import ExchangeStatus
from exchange.state_machine import ENDED
from hub.audit import client_address
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin import selectors
from plan_admin.forms import RequestFilterForm
from plan_admin.views import acting_admin

REQUESTS_PER_PAGE = 50


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def request_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    filter_form = RequestFilterForm(data=request.GET or None, payer=payer)
    requests = selectors.exchange_requests_filtered(payer=payer, filters=filter_form.filters())
    page = Paginator(requests, REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "plan_admin/request_list.html",
        {"payer": payer, "filter_form": filter_form, "page": page, "now": timezone.now()},
    )


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV Injection");
# member names come from each payer's identity provider, so they are quoted as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A write-only file for csv.writer: hands each line back to the streaming response."""

    def write(self, line: str) -> str:
        return line


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def request_export(request: HttpRequest, payer: Payer) -> StreamingHttpResponse:
    """Stream the filtered list as CSV, so 100,000 rows never sit in memory at once."""
    filters = RequestFilterForm(data=request.GET or None, payer=payer).filters()
    rows = selectors.exchange_requests_csv_rows(
        queryset=selectors.exchange_requests_filtered(payer=payer, filters=filters)
    )
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        for row in rows:
            yield writer.writerow([_csv_cell(value) for value in row])

    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return StreamingHttpResponse(
        lines(),
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="requests-{payer.slug}-{stamp}.csv"'
        },
    )


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def request_detail(request: HttpRequest, payer: Payer, request_id: int) -> HttpResponse:
    exchange_request = selectors.exchange_request_for_admin(payer=payer, request_id=request_id)
    delivery = selectors.exchange_request_delivery(payer=payer, exchange_request=exchange_request)
    return render(
        request,
        "plan_admin/request_detail.html",
        {
            "payer": payer,
            "exchange_request": exchange_request,
            "events": selectors.exchange_request_timeline(
                payer=payer, exchange_request=exchange_request
            ),
            "delivery": delivery,
            "files": (delivery.manifest.get("files") or []) if delivery else [],
            "can_retry": exchange_request.status == ExchangeStatus.FAILED,
            "can_cancel": exchange_request.status not in ENDED,
            "overdue": exchange_request.status not in ENDED
            and exchange_request.due_by < timezone.now(),
        },
    )


# The administrator's actions on one request: the service that does it, what to say after.
_REQUEST_ACTIONS = {
    "retry": (
        lifecycle.exchange_request_retry,
        "The request starts over; the engine picks it up now.",
    ),
    "cancel": (lifecycle.exchange_request_cancel, "The request is cancelled."),
}


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def request_action(
    request: HttpRequest, payer: Payer, request_id: int, action: str
) -> HttpResponseRedirect:
    """Retry or cancel one of the payer's requests; a refusal is shown on its page."""
    if action not in _REQUEST_ACTIONS:
        raise Http404("No such action.")
    service, done = _REQUEST_ACTIONS[action]
    try:
        service(
            payer=payer, request_id=request_id, actor=acting_admin(request),
            client_address=client_address(request),
        )  # fmt: skip
    except lifecycle.ExchangeRequestActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect("plan_admin:request-detail", payer_slug=payer.slug, request_id=request_id)
